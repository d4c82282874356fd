"""Built-in sql plugin for retention: the ``sql`` backend (SQLAlchemy Core).

Loaded through the ``retention`` entry point like any third-party plugin; the backend
module (and SQLAlchemy) is imported only when a policy uses the ``sql`` backend.
"""

from __future__ import annotations

from retention_core import Backend, BackendRegistry, hookimpl


def _load() -> type[Backend]:
    from .backend import SqlBackend

    return SqlBackend


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    register.deferred("sql", _load, hint="pip install 'SQLAlchemy>=2.0'")
