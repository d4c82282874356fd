"""Every hook a retention plugin can implement, documented hook by hook.

Plugins implement these with ``@retention_core.hookimpl``. Argument names must match the
spec (pluggy passes them by name); a plugin may accept any subset of them. Hooks are
called in LIFO registration order unless noted; built-in plugins are registered exactly
like third-party ones, through the ``retention`` entry-point group.

The ``retention_register_*`` hooks are called through pluggy once per plugin, each call with
a ``register`` that remembers that plugin, so a name two plugins register is an error naming
both. They may not be wrappers (``wrapper=True`` / ``hookwrapper=True``): loading refuses them.
Old names of renamed hooks are in :class:`Deprecated` and :data:`RENAMED`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .model import Context, Outcome, Record
    from .registry import (
        BackendRegistry,
        HoldSourceRegistry,
        ReportWriterRegistry,
        SubjectSourceRegistry,
    )

hookspec = pluggy.HookspecMarker("retention")


# -------------------------------------------------------------------------
# Registration hooks: called once per plugin, the first time the core needs what they register.
# -------------------------------------------------------------------------


@hookspec
def retention_register_backends(register: BackendRegistry) -> None:
    """Register storage backends.

    :param register: call ``register(BackendClass)`` for each
        :class:`~retention_core.Backend` subclass (its ``name`` is the config name), or
        ``register.unavailable(name, hint)`` when an optional dependency is missing so
        users get an install hint instead of "unknown backend". A backend whose module
        imports a heavy library registers with ``register.deferred(name, load, hint=...)``:
        ``load()`` imports and returns the class the first time a policy uses *name*, so
        runs that never use it do not pay for the import (an ImportError from it makes the
        backend unavailable with *hint*).

    Called once per plugin when the backends are first needed. Registering a name another
    plugin already registered is a :class:`~retention_core.PluginError` naming both.
    """


@hookspec
def retention_register_commands(cli: click.Group) -> None:
    """Attach click commands or groups under ``retention``.

    :param cli: the ``retention`` click group; call ``cli.add_command(...)``.

    Called once when the command line starts, after plugins are loaded.
    """


@hookspec
def retention_register_subject_sources(register: SubjectSourceRegistry) -> None:
    """Register providers of subjects (who the data belongs to, service end, minor flag).

    :param register: call ``register(name, factory)``; ``factory(options)`` receives an
        :class:`~retention_core.Options` of the ``subjects:`` config block (without
        ``source``), must validate it eagerly, and returns an iterable of
        :class:`~retention_core.Subject`.

    The built-in ``csv`` and ``sql`` sources are registered through this same hook.
    """


@hookspec
def retention_register_hold_sources(register: HoldSourceRegistry) -> None:
    """Register kinds of hold source (an external legal-hold system) a policy can name.

    :param register: call ``register(name, factory)``; ``factory(options)`` receives an
        :class:`~retention_core.Options` of a ``hold_sources:`` entry (without ``source`` and
        ``name``), must validate it eagerly, and returns a reader: ``reader()`` returns an
        iterable of :class:`~retention_core.Hold` (one with ``released_at`` set is released
        by the source) and is called each time holds are read — at the start of a run and
        again before every batch — so it must be cheap or cache. A reader may have ``close()``.

    Their holds are merged with the state store's and the config's; any covering hold
    blocks deletion. A hold a reader stops returning stays in force (vanished) until it is
    returned released or a person releases it. A reader that raises stops the run before
    anything is deleted. Deprecated: ``register(name, provider)`` with a ``provider()``
    taking no argument, read on every run whether or not the policy names it.
    The built-in ``csv`` and ``sql`` hold sources are registered through this same hook.
    """


@hookspec
def retention_register_report_writers(register: ReportWriterRegistry) -> None:
    """Register report formats for ``retention run --report PATH``.

    :param register: call ``register(suffix, writer)``; ``writer(report, path)`` writes
        the finished :class:`~retention_core.report.RunReport` to *path*.

    The format is chosen by the path's suffix (``.json``, ``.csv``, ...).
    """


# -------------------------------------------------------------------------
# Observation hooks: called during an enforcing run (never in dry-run).
# -------------------------------------------------------------------------


@hookspec
def retention_before_delete(batch: list[Record], context: Context) -> None:
    """Observe a batch just before it is deleted (after its intent is journalled).

    :param batch: the records about to be deleted or anonymized.
    :param context: the run's context (``now``, holds, subjects, requests).

    Holds were decided before this hook, and nothing it returns is used: a hook cannot
    un-hold or skip records. An exception here aborts the run before the batch is touched.
    Not called for push-down batches, whose records are known only once deleted.
    """


@hookspec
def retention_after_delete(outcomes: list[Outcome], context: Context) -> None:
    """Observe the outcomes of a batch (notify a SIEM, open a ticket on failures).

    :param outcomes: one :class:`~retention_core.Outcome` per record of the batch.
    :param context: the run's context.

    Called after the outcomes are journalled, for ordinary and push-down batches alike.
    """


# -------------------------------------------------------------------------
# Deprecated names: still called for one release, each call warning with a
# DeprecationWarning that names the plugin; removed in the release after 0.1.
# -------------------------------------------------------------------------

#: Old hook name → its new name. The loader calls an old-named implementation right after the
#: new-named ones, with the same registry.
RENAMED: dict[str, str] = {
    "retention_subject_sources": "retention_register_subject_sources",
    "retention_hold_sources": "retention_register_hold_sources",
    "retention_report_writers": "retention_register_report_writers",
}


class Deprecated:
    """The specs of the old names in :data:`RENAMED`, so implementations of them still load."""

    @staticmethod
    @hookspec
    def retention_subject_sources(register: SubjectSourceRegistry) -> None:
        """Deprecated name of :func:`retention_register_subject_sources`."""

    @staticmethod
    @hookspec
    def retention_hold_sources(register: HoldSourceRegistry) -> None:
        """Deprecated name of :func:`retention_register_hold_sources`."""

    @staticmethod
    @hookspec
    def retention_report_writers(register: ReportWriterRegistry) -> None:
        """Deprecated name of :func:`retention_register_report_writers`."""
