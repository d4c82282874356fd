"""A test kit for storage-plugin authors: the conformance suite and a reference backend.

``InMemoryBackend`` needs nothing beyond the core. The pytest parts are opt-in (install
``retention[testing]``): ``BackendConformanceTests`` (every backend) and
``PushdownConformanceTests`` (backends with ``can_push_down``) are imported from
:mod:`retention_core.testing.conformance` and :mod:`retention_core.testing.pushdown` on first
use, and the fixtures live in the pytest plugin :mod:`retention_core.testing.fixtures`
(``pytest_plugins = [...]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .memory import InMemoryBackend

if TYPE_CHECKING:
    from .conformance import BackendConformanceTests
    from .pushdown import PushdownConformanceTests
    from .services import require_service

__all__ = ["BackendConformanceTests", "InMemoryBackend", "PushdownConformanceTests", "require_service"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the kit (or the memory backend) never imports pytest.
    if name == "BackendConformanceTests":
        from .conformance import BackendConformanceTests

        return BackendConformanceTests
    if name == "PushdownConformanceTests":
        from .pushdown import PushdownConformanceTests

        return PushdownConformanceTests
    if name == "require_service":
        from .services import require_service

        return require_service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
