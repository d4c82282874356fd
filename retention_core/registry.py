"""Typed registries handed to ``retention_register_*`` hooks.

The core applies its own rules here (unique names, valid classes) so every plugin gets the
same clear errors, and each registration remembers which plugin made it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .backend import Backend
from .errors import ConfigError, PluginError
from .model import Hold, Subject

if TYPE_CHECKING:
    from .options import Options

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    plugin: str


class _Registry(Generic[T]):
    kind = "entry"

    def __init__(self) -> None:
        self.entries: dict[str, Entry[T]] = {}
        self.unavailable_hints: dict[str, str] = {}
        self._plugin = "?"

    def _for_plugin(self, plugin: str) -> _Registry[T]:
        self._plugin = plugin
        return self

    def _add(self, name: str, value: T) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {self._plugin!r} registered a {self.kind} without a name")
        if name in self.entries:
            other = self.entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered by both plugin {other!r} and plugin {self._plugin!r}"
            )
        self.entries[name] = Entry(name, value, self._plugin)
        self.unavailable_hints.pop(name, None)

    def unavailable(self, name: str, hint: str) -> None:
        """Declare *name* known but not installed; using it fails with *hint*."""
        if name not in self.entries:
            self.unavailable_hints[name] = hint

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str, *, key: str = "") -> T:
        """The registered value, or a ConfigError that lists what exists."""
        if name in self.entries:
            return self.entries[name].value
        if name in self.unavailable_hints:
            raise ConfigError(f"{self.kind} {name!r} is not installed: {self.unavailable_hints[name]}",
                              key=key or None)
        known = ", ".join(self.names()) or "none"
        raise ConfigError(f"unknown {self.kind} {name!r} (known: {known})", key=key or None)

    def by_plugin(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for entry in self.entries.values():
            out.setdefault(entry.plugin, []).append(entry.name)
        return out


class BackendRegistry(_Registry[type[Backend]]):
    """``register(BackendClass)`` — the class's ``name`` is its config name."""

    kind = "backend"

    def __call__(self, backend: type[Backend]) -> None:
        if not (isinstance(backend, type) and issubclass(backend, Backend)):
            raise PluginError(f"plugin {self._plugin!r} registered {backend!r}, which is not a Backend subclass")
        self._add(backend.name, backend)


SubjectFactory = Callable[["Options"], Iterable[Subject]]
HoldProvider = Callable[[], Iterable[Hold]]
ReportWriter = Callable[[Any, Path], None]


class SubjectSourceRegistry(_Registry[SubjectFactory]):
    """``register(name, factory)`` — see ``retention_subject_sources``."""

    kind = "subject source"

    def __call__(self, name: str, factory: SubjectFactory) -> None:
        self._add(name, factory)


class HoldSourceRegistry(_Registry[HoldProvider]):
    """``register(name, provider)`` — see ``retention_hold_sources``."""

    kind = "hold source"

    def __call__(self, name: str, provider: HoldProvider) -> None:
        self._add(name, provider)


class ReportWriterRegistry(_Registry[ReportWriter]):
    """``register(suffix, writer)`` — see ``retention_report_writers``."""

    kind = "report format"

    def __call__(self, suffix: str, writer: ReportWriter) -> None:
        self._add(suffix.lower().lstrip("."), writer)
