"""retention plugin: a directory of JSON-lines files as a retention source.

Registered through the ``retention`` entry-point group (see setup.cfg); the hook imports the
backend lazily so loading plugins stays cheap.
"""

from __future__ import annotations

from retention_core import BackendRegistry, hookimpl


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    from .backend import JsonlBackend

    register(JsonlBackend)
