"""Built-in sql plugin for retention: the ``sql`` backend (SQLAlchemy Core).

Loaded through the ``retention`` entry point like any third-party plugin; the backend
module (and SQLAlchemy) is imported only when backends are first needed.
"""

from __future__ import annotations

from retention_core import BackendRegistry, hookimpl


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    try:
        from .backend import SqlBackend
    except ImportError as exc:  # SQLAlchemy itself missing: say how to get it
        register.unavailable("sql", f"SQLAlchemy is missing ({exc.name}): pip install 'SQLAlchemy>=2.0'")
        return
    register(SqlBackend)
