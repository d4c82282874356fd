"""Built-in cookies plugin for retention: proves the "essential cookies only" promise.

Adds ``retention cookies check`` and ``retention cookies import``. Nothing heavy is
imported here (Playwright and tldextract load only when a check needs them), so
``retention --help`` works without the ``cookies`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retention_core import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def retention_register_commands(cli: click.Group) -> None:
    """Attach the ``cookies`` command group under ``retention``."""
    from .cli import cookies

    cli.add_command(cookies)
