"""Built-in ``fs`` plugin: a local directory tree as a retention source.

Loaded through the ``retention`` entry point exactly like a third-party plugin.
"""

from __future__ import annotations

from retention_core import BackendRegistry, hookimpl


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    from .backend import FilesystemBackend

    register(FilesystemBackend)
