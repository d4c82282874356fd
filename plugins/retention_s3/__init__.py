"""Built-in s3 plugin for retention: the ``s3`` backend and ``retention holds sync``.

boto3 is optional (``pip install 'retention[s3]'``): without it the backend is registered
as unavailable with that hint, and nothing here imports boto3 at load time.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import click

from retention_core import hookimpl

if TYPE_CHECKING:
    from retention_core import Backend, BackendRegistry

INSTALL_HINT = "pip install 'retention[s3]'"


def boto3_available() -> bool:
    return importlib.util.find_spec("boto3") is not None


def _load() -> type[Backend]:
    from .backend import S3Backend

    return S3Backend


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    if not boto3_available():
        register.unavailable("s3", INSTALL_HINT)
        return
    register.deferred("s3", _load, hint=INSTALL_HINT)


@hookimpl
def retention_register_commands(cli: click.Group) -> None:
    """``retention holds sync``, under the core's ``holds`` group."""
    holds = cli.commands.get("holds")
    if isinstance(holds, click.Group):
        from .commands import sync

        holds.add_command(sync)
