"""A test kit for storage-plugin authors: the conformance suite and a reference backend.

``InMemoryBackend`` needs nothing beyond the core. The pytest parts are opt-in (install
``retention[testing]``): ``BackendConformanceTests`` is imported from
:mod:`retention_core.testing.conformance` on first use, and the fixtures live in the pytest
plugin :mod:`retention_core.testing.fixtures` (``pytest_plugins = [...]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .memory import InMemoryBackend

if TYPE_CHECKING:
    from .conformance import BackendConformanceTests
    from .services import require_service

__all__ = ["BackendConformanceTests", "InMemoryBackend", "require_service"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the kit (or the memory backend) never imports pytest.
    if name == "BackendConformanceTests":
        from .conformance import BackendConformanceTests

        return BackendConformanceTests
    if name == "require_service":
        from .services import require_service

        return require_service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
