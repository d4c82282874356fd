"""Typed registries handed to ``retention_register_*`` hooks.

The core applies its own rules here (unique names, valid classes) so every plugin gets the
same clear errors, and each registration remembers which plugin made it: the loader hands
each plugin its own ``register`` (:meth:`for_plugin`), a view sharing the registry's entries.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

from .backend import Backend
from .errors import ConfigError, PluginError
from .model import Hold, Subject

if TYPE_CHECKING:
    from .options import Options

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registration: its name, what was registered, and the plugin that registered it."""

    name: str
    value: T
    plugin: str


class Registry(Generic[T]):
    """What every typed registry shares: named entries, each remembering its plugin."""

    kind = "entry"

    def __init__(self) -> None:
        self.entries: dict[str, Entry[T]] = {}
        self.unavailable_hints: dict[str, str] = {}
        self._plugin = "?"

    def for_plugin(self, plugin: str) -> Self:
        """The ``register`` handed to *plugin*'s hook: what it registers lands in this registry,
        attributed to *plugin* — also if the plugin keeps it and registers later."""
        view = copy.copy(self)  # shallow: the view shares entries and hints with this registry
        view._plugin = plugin
        return view

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


class BackendRegistry(Registry[type[Backend]]):
    """``register(BackendClass)`` — the class's ``name`` is its config name — or
    ``register.deferred(name, load)``, whose *load* returns the class when a policy first uses it."""

    kind = "backend"

    def __init__(self) -> None:
        super().__init__()
        self._loaders: dict[str, tuple[Callable[[], type[Backend]], str | None]] = {}

    def __call__(self, backend: type[Backend]) -> None:
        if not _is_backend(backend):
            raise PluginError(f"plugin {self._plugin!r} registered {backend!r}, which is not a Backend subclass")
        self._add(backend.name, backend)

    def deferred(self, name: str, load: Callable[[], type[Backend]], *, hint: str | None = None) -> None:
        """Register backend *name* now and import it later: *load* runs on the first :meth:`get`
        of *name*. A backend that needs a heavy library (SQLAlchemy, boto3) registers this way,
        so a run that does not use it never imports it. An ImportError from *load* makes the
        backend unavailable, with *hint* (how to install what is missing)."""
        if not callable(load):
            raise PluginError(f"plugin {self._plugin!r} registered backend {name!r} with loader {load!r}, "
                              "which is not callable")
        self._add(name, cast("type[Backend]", Backend))  # a placeholder until loaded
        self._loaders[name] = (load, hint)

    def get(self, name: str, *, key: str = "") -> type[Backend]:
        if name in self._loaders:
            self._load(name, *self._loaders.pop(name))
        return super().get(name, key=key)

    def _load(self, name: str, load: Callable[[], type[Backend]], hint: str | None) -> None:
        entry = self.entries.pop(name)
        try:
            backend = load()
        except ImportError as exc:  # a library the backend needs is not installed
            missing = f"{exc.name or exc} is missing"
            self.unavailable(name, f"{missing}: {hint}" if hint else missing)
            return
        if not _is_backend(backend) or backend.name != name:
            raise PluginError(f"plugin {entry.plugin!r} registered backend {name!r}, but its loader returned "
                              f"{backend!r}: expected a Backend subclass named {name!r}")
        self.entries[name] = Entry(name, backend, entry.plugin)


def _is_backend(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Backend)


SubjectFactory = Callable[["Options"], Iterable[Subject]]
#: Reads a hold source's holds; called each time holds are read.
HoldReader = Callable[[], Iterable[Hold]]
#: Builds a :data:`HoldReader` from a ``hold_sources:`` entry's options, validating them.
HoldFactory = Callable[["Options"], HoldReader]
#: Deprecated: a reader registered directly, taking no options, always read.
HoldProvider = HoldReader
ReportWriter = Callable[[Any, Path], None]


class SubjectSourceRegistry(Registry[SubjectFactory]):
    """``register(name, factory)`` — see ``retention_register_subject_sources``."""

    kind = "subject source"

    def __call__(self, name: str, factory: SubjectFactory) -> None:
        self._add(name, factory)


class HoldSourceRegistry(Registry[HoldFactory | HoldProvider]):
    """``register(name, factory)`` — see ``retention_register_hold_sources``.

    A callable taking no argument is the deprecated form (a provider read on every run whether
    or not the policy names it); it still works, with a DeprecationWarning naming the plugin.
    """

    kind = "hold source"

    def __call__(self, name: str, factory: HoldFactory | HoldProvider) -> None:
        if not callable(factory):
            raise PluginError(f"plugin {self._plugin!r} registered hold source {name!r} as {factory!r}, "
                              "which is not callable")
        self._add(name, factory)
        if not takes_options(factory):
            warnings.warn(f"plugin {self._plugin!r} registers hold source {name!r} as a provider without "
                          "arguments, a deprecated form: register a factory taking Options and returning a "
                          "reader, and name it in the policy's hold_sources:", DeprecationWarning, stacklevel=2)

    def legacy(self) -> list[str]:
        """The names registered in the deprecated no-argument form, read on every run."""
        return [name for name, entry in self.entries.items() if not takes_options(entry.value)]


def takes_options(factory: Callable[..., Any]) -> bool:
    """Whether *factory* accepts one positional argument (the Options): the current form.
    One that cannot be inspected is taken for the old form, which is what it used to be."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL or (p.kind in positional) for p in parameters)


class ReportWriterRegistry(Registry[ReportWriter]):
    """``register(suffix, writer)`` — see ``retention_register_report_writers``."""

    kind = "report format"

    def __call__(self, suffix: str, writer: ReportWriter) -> None:
        self._add(suffix.lower().lstrip("."), writer)
