"""Loading plugins: built-in and third-party alike, through the ``retention`` entry points.

Nothing happens at import time. :func:`load_plugins` is the one explicit, lazy step; it
returns a :class:`Plugins` facade with one typed method per hook so the core never calls
``pm.hook`` untyped.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar, cast

import pluggy

from . import __version__, defaults, hookspecs
from .errors import PluginError
from .model import Context, Outcome, Record
from .registry import (
    BackendRegistry,
    HoldSourceRegistry,
    Registry,
    ReportWriterRegistry,
    SubjectSourceRegistry,
)

GROUP = "retention"
DISABLE_ENV = "RETENTION_DISABLE_PLUGINS"

#: The hooks that fill a registry; each is called once per plugin with that plugin's register.
REGISTRATION_HOOKS = ("retention_register_backends", "retention_register_subject_sources",
                      "retention_register_hold_sources", "retention_register_report_writers")
#: New hook name → its deprecated old name, called after it with the same registry.
_OLD_NAMES = {new: old for old, new in hookspecs.RENAMED.items()}

R = TypeVar("R", bound=Registry[Any])


@dataclass(frozen=True)
class PluginInfo:
    """What ``retention plugins`` shows for one loaded plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    provides: dict[str, list[str]] = field(default_factory=dict)


class Plugins:
    """The loaded plugin manager and its registries."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, tuple[str, str]]) -> None:
        self.pm = pm
        self._origins = origins
        self._registries: dict[str, Registry[Any]] = {}
        self._refuse_wrappers()

    # -- registries, filled on first use -------------------------------------------------
    def _collect(self, hook_name: str, make: Callable[[], R]) -> R:
        """The registry *hook_name* fills, calling it (then its deprecated alias) once per plugin."""
        if hook_name not in self._registries:
            registry = make()
            self._call_each(hook_name, registry)
            if hook_name in _OLD_NAMES:
                self._call_each(_OLD_NAMES[hook_name], registry)
            self._registries[hook_name] = registry
        return cast(R, self._registries[hook_name])  # make() built it: R

    def _call_each(self, hook_name: str, registry: Registry[Any]) -> None:
        """Call *hook_name* through pluggy once per implementing plugin, in pluggy's order.

        Each call goes through a subset of the hook holding that plugin alone, so pluggy's
        tracing and monitoring see it, and each plugin gets its own ``register``: what it
        registers is attributed to it, and a duplicate name can name both plugins.
        """
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        for impl in reversed(impls):
            plugin = impl.plugin_name
            if hook_name in hookspecs.RENAMED:
                self._warn_renamed(impl, hook_name)
            others = [other.plugin for other in impls if other.plugin is not impl.plugin]
            try:
                self.pm.subset_hook_caller(hook_name, others)(register=registry.for_plugin(plugin))
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {plugin!r}{self._from(plugin)} failed in {hook_name}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def _warn_renamed(self, impl: pluggy.HookImpl, old: str) -> None:
        """A DeprecationWarning naming the plugin, located at its implementation."""
        code = getattr(impl.function, "__code__", None)
        warnings.warn_explicit(
            f"plugin {impl.plugin_name!r}{self._from(impl.plugin_name)} implements {old}, a deprecated "
            f"name: rename it {hookspecs.RENAMED[old]} (the old name goes in the next release)",
            DeprecationWarning, filename=code.co_filename if code else "<plugin>",
            lineno=code.co_firstlineno if code else 0, module=getattr(impl.function, "__module__", None))

    def _refuse_wrappers(self) -> None:
        """A wrapper around a registration hook would wrap one plugin's call with its own
        ``register``, not the others': refuse it when loading, naming the plugin."""
        for hook_name in (*REGISTRATION_HOOKS, *hookspecs.RENAMED):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    kind = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}{self._from(impl.plugin_name)}: {hook_name} is marked "
                        f"{kind}, but registration hooks cannot be wrappers (each plugin's is called on its "
                        "own, with its own register); use a plain @hookimpl")

    def backends(self) -> BackendRegistry:
        return self._collect("retention_register_backends", BackendRegistry)

    def subject_sources(self) -> SubjectSourceRegistry:
        return self._collect("retention_register_subject_sources", SubjectSourceRegistry)

    def hold_sources(self) -> HoldSourceRegistry:
        return self._collect("retention_register_hold_sources", HoldSourceRegistry)

    def report_writers(self) -> ReportWriterRegistry:
        return self._collect("retention_register_report_writers", ReportWriterRegistry)

    # -- plain hooks ------------------------------------------------------------------------
    def register_commands(self, cli: Any) -> None:
        self.pm.hook.retention_register_commands(cli=cli)

    def before_delete(self, batch: list[Record], context: Context) -> None:
        self.pm.hook.retention_before_delete(batch=batch, context=context)

    def after_delete(self, outcomes: list[Outcome], context: Context) -> None:
        self.pm.hook.retention_after_delete(outcomes=outcomes, context=context)

    # -- introspection ------------------------------------------------------------------------
    def _from(self, plugin: str) -> str:
        dist = self._origins.get(plugin)
        return f" (distribution {dist[0]} {dist[1]})" if dist else ""

    def info(self) -> list[PluginInfo]:
        provides: dict[str, dict[str, list[str]]] = {}
        for label, registry in (("backends", self.backends()), ("subject sources", self.subject_sources()),
                                ("hold sources", self.hold_sources()),
                                ("report formats", self.report_writers())):
            for owner, names in registry.by_plugin().items():
                provides.setdefault(owner, {})[label] = sorted(names)
        out = []
        for plugin_name, plugin in sorted(self.pm.list_name_plugin(), key=lambda np: str(np[0])):
            name = str(plugin_name)
            dist, version = self._origins.get(name, ("retention (core)", __version__))
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            out.append(PluginInfo(name, dist, version, hooks, provides.get(name, {})))
        return out


def disabled_names(env: str | None = None) -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "") if env is None else env
    return {name.strip() for name in raw.split(",") if name.strip()}


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    pm.add_hookspecs(hookspecs.Deprecated)
    return pm


def load_plugins(*, extra: Iterable[ModuleType | object] = (), entry_points: bool = True,
                 disabled: set[str] | None = None) -> Plugins:
    """Load the core defaults, every ``retention`` entry point, and *extra* plugins.

    ``RETENTION_DISABLE_PLUGINS=name,…`` blocks entry points by name. Raises
    :class:`PluginError` naming the plugin and its distribution if one fails to import or
    implements a hook that does not exist (``check_pending``).
    """
    pm = new_plugin_manager()
    blocked = disabled_names() if disabled is None else disabled
    origins: dict[str, tuple[str, str]] = {}
    pm.register(defaults, name="retention.defaults")
    if entry_points:
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in blocked or pm.get_plugin(ep.name) is not None:
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist else ("unknown", "?")
            origins[ep.name] = dist
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must name itself, not crash the CLI
                raise PluginError(f"plugin {ep.name!r} (distribution {dist[0]} {dist[1]}) failed to "
                                  f"load from {ep.value!r}: {type(exc).__name__}: {exc}") from exc
            _register(pm, plugin, ep.name, origins)
    for plugin in extra:
        _register(pm, plugin, None, origins)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = str(pm.get_name(exc.plugin) or "?")
        dist = origins.get(name, ("?", "?"))
        raise PluginError(f"plugin {name!r} (distribution {dist[0]} {dist[1]}): {exc}") from exc
    return Plugins(pm, origins)


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None,
              origins: dict[str, tuple[str, str]]) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        label = str(name or getattr(plugin, "__name__", repr(plugin)))
        dist = origins.get(label, ("?", "?"))
        raise PluginError(f"plugin {label!r} (distribution {dist[0]} {dist[1]}): {exc}") from exc
