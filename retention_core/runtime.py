"""Everything a command needs around a policy: plugins, state store, subjects, holds, backends.

The CLI, the scheduler and plugin commands (``retention holds sync``) share this so that
"which holds are active" or "which records belong to this source" has one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from .audit import AuditTrail, trail_for
from .backend import Backend
from .errors import ConfigError, PluginError, RetentionError
from .holdsources import HoldReader, read_holds
from .model import Context, ErasureRequest, Hold, Problem, Record, Source, Subject
from .options import Options
from .overlap import check_overlaps, spread_holds
from .plugins import Plugins, load_plugins
from .policy import Policy, load_policy
from .registry import HoldFactory, takes_options
from .state import StateStore
from .subjects import SubjectIndex

#: ``placed_by`` of the state-store row that records the release of a hold defined in the
#: policy file (parenthesised: no user name looks like it).
POLICY_FILE = "(policy file)"


class Runtime:
    """A loaded policy with its plugins and state store; open backends are closed by close()."""

    def __init__(self, policy: Policy, plugins: Plugins | None = None) -> None:
        self.policy = policy
        self.plugins = plugins or load_plugins()
        self._backends: dict[str, Backend] = {}
        self._hold_trail: AuditTrail | None = None  # opened when a hold source first changes
        self._config_holds = policy.holds
        self._policy_seen = _file_identity(policy.path)

    @classmethod
    def open(cls, config: str | Path, plugins: Plugins | None = None) -> Runtime:
        return cls(load_policy(config), plugins)

    @cached_property
    def state(self) -> StateStore:
        try:
            return StateStore(self.policy.state)
        except ConfigError as exc:
            raise exc.located(file=str(self.policy.path)) from None

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        for reader in self.__dict__.pop("hold_sources", {}).values():
            getattr(reader, "close", lambda: None)()
        if "state" in self.__dict__:
            self.state.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration checks ------------------------------------------------------------------
    def validate(self) -> list[str]:
        """Instantiate every backend and the subjects source; return backends' warnings."""
        self.subjects  # noqa: B018 - loads and validates
        self.hold_sources  # noqa: B018 - opens each hold source, validating its options
        self.check_overlaps()
        warnings = []
        for source in self.policy.sources:
            warnings += [f"{source.name}: {w}" for w in self.warnings(source)]
        return warnings

    def check_overlaps(self) -> None:
        """Refuse two sources that can list the same records unless the policy declares it."""
        check_overlaps(self.policy.sources, lambda source: self.backend(source).territory(source),
                       str(self.policy.path))

    def warnings(self, source: Source) -> list[str]:
        """The backend's warnings for *source*; its config errors placed in the policy file."""
        try:
            return self.backend(source).warnings(source)
        except ConfigError as exc:
            raise exc.located(file=exc.file or str(self.policy.path)) from None

    @cached_property
    def subjects(self) -> Mapping[str, Subject]:
        block = self.policy.subjects
        if block is None:
            return {}
        rest = {k: v for k, v in block.items() if k != "source"}
        factory = self.plugins.subject_sources().get(block["source"], key="subjects.source")
        try:
            options = Options(rest, base_dir=self.policy.base_dir, where="subjects")
            return SubjectIndex.build(factory(options))
        except ConfigError as exc:
            raise exc.located(file=exc.file or str(self.policy.path)) from None

    def backend(self, source: Source) -> Backend:
        """The backend instance for *source* (options validated), created once."""
        if source.name not in self._backends:
            where = f"sources[{source.index}]"
            try:
                cls = self.plugins.backends().get(source.backend, key=f"{where}.backend")
                self._backends[source.name] = cls(Options(source.options, base_dir=self.policy.base_dir,
                                                          where=f"{where}.options"))
            except ConfigError as exc:
                raise exc.located(file=str(self.policy.path)) from None
            except RetentionError:
                raise
            except Exception as exc:
                raise PluginError(f"backend {source.backend!r} failed to start for source {source.name!r}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return self._backends[source.name]

    # -- holds and context -------------------------------------------------------------------------
    @cached_property
    def hold_sources(self) -> dict[str, HoldReader]:
        """The policy's ``hold_sources:``, each opened (options validated), and every provider
        registered in the deprecated no-argument form, by the name their holds are attributed to."""
        registry = self.plugins.hold_sources()
        out: dict[str, HoldReader] = {}
        for i, entry in enumerate(self.policy.hold_sources):
            where = f"hold_sources[{i}]"
            factory = registry.get(entry["source"], key=f"{where}.source")
            rest = {k: v for k, v in entry.items() if k not in ("source", "name")}
            try:
                if not takes_options(factory):
                    if rest:
                        raise ConfigError(f"hold source {entry['source']!r} takes no options (its plugin registers "
                                          f"it in the deprecated form), found {sorted(rest)[0]!r}", key=where)
                    out[entry["name"]] = cast(HoldReader, factory)
                    continue
                make = cast(HoldFactory, factory)
                out[entry["name"]] = make(Options(rest, base_dir=self.policy.base_dir, where=where))
            except ConfigError as exc:
                raise exc.located(file=exc.file or str(self.policy.path)) from None
            except RetentionError:
                raise
            except Exception as exc:
                raise PluginError(f"hold source {entry['source']!r} failed to start for {where}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        configured = {entry["source"] for entry in self.policy.hold_sources}
        for name in registry.legacy():
            if name in out and name not in configured:  # its holds would be read under another's name
                i = next(i for i, e in enumerate(self.policy.hold_sources) if e["name"] == name)
                raise ConfigError(f"{name!r} is also the name of hold source {name!r} a plugin has read on every "
                                  "run: give this entry another name", file=str(self.policy.path),
                                  key=f"hold_sources[{i}].name")
            if name not in configured:
                out[name] = cast(HoldReader, registry.get(name))
        return out

    def holds(self, *, include_released: bool = False) -> tuple[Hold, ...]:
        """Config holds, state-store holds and every hold source's, merged; read afresh each call.

        A hold a source no longer lists stays in force (vanished) until released; a source that
        cannot be read raises, so the caller stops before deleting anything.
        """
        own = self.state.holds(include_released=True)
        # A policy-file hold released with `holds release` (its release row is placed_by
        # POLICY_FILE): released, with who, when and why, while the file still names it.
        # Once removed from the file it is still listed, released, as the file's.
        released = {h.id: replace(h, origin="config") for h in own if h.placed_by == POLICY_FILE and not h.active}
        found: list[Hold] = []
        for hold in self.config_holds():
            was = released.pop(hold.id, None)
            if was is not None and (was.kind, was.scope) != (hold.kind, hold.scope):
                # A new hold in the file under a released one's id would be taken for released.
                raise ConfigError(f"hold {hold.id!r} in the policy file reuses the id of a hold released on "
                                  f"{was.released_at:%Y-%m-%d} (kind {was.kind}, {was.scope.as_dict()}): hold ids "
                                  "are never reused; give the new hold a new id", file=str(self.policy.path),
                                  key="holds")
            found.append(was or hold)
        found += [released.get(h.id, h) for h in own if h.id in released or h.placed_by != POLICY_FILE or h.active]
        try:
            found += read_holds(self.hold_sources, self.state, self._journal_holds,
                                include_released=include_released, check=self._unusable_hold)
        except ConfigError as exc:
            raise exc.located(file=exc.file or str(self.policy.path)) from None
        return tuple(h for h in found if include_released or h.active)

    def config_holds(self) -> tuple[Hold, ...]:
        """The policy file's ``holds:``, read again when the file changes: a hold added to it
        while a run is going on protects every record not yet deleted, as one placed with the
        CLI does. A hold removed from it mid-run keeps protecting until the run ends; an edit
        that does not load stops the run (before its next batch)."""
        seen = _file_identity(self.policy.path)
        if seen != self._policy_seen:
            self._policy_seen = seen
            fresh = load_policy(self.policy.path).holds
            kept = {h.id for h in fresh}
            self._config_holds = fresh + tuple(h for h in self._config_holds if h.id not in kept)
        return self._config_holds

    def _unusable_hold(self, hold: Hold) -> str | None:
        """Why a hold from a source cannot be applied as written (it would silently cover nothing)."""
        scope = hold.scope
        if scope.category is not None and scope.category not in self.policy.categories:
            return f"unknown category {scope.category!r} (categories: {', '.join(self.policy.categories)})"
        if scope.source is not None and all(s.name != scope.source for s in self.policy.sources):
            return f"unknown source {scope.source!r} (sources: {', '.join(s.name for s in self.policy.sources)})"
        return None

    def _journal_holds(self, entries: list[dict[str, Any]]) -> None:
        """Journal what changed in the hold sources (new, released, vanished holds)."""
        if self._hold_trail is None:
            from .statecheck import check_state_is_the_trails

            check_state_is_the_trails(self, lacking=False)  # the lines name this store: it must be the trail's
            self._hold_trail = trail_for(self.policy.audit, self.state)
        store = self.state.store_id()
        self._hold_trail.append([{**entry, "state": store} for entry in entries])

    def requests(self) -> dict[str, ErasureRequest]:
        """Erasure requests by subject. Once requested, a subject's data stays due (owed) —
        unless the request was withdrawn: then the subject's data is under its rules again. The
        open request, if any, is the one named (in the trail's reasons), else the first done."""
        out: dict[str, ErasureRequest] = {}
        for request in self.state.requests():
            known = out.get(request.subject)
            if request.withdrawn_at is None and (known is None or (known.closed and not request.closed)):
                out[request.subject] = request
        return out

    def context(self, now: datetime, holds: tuple[Hold, ...] | None = None) -> Context:
        return Context(now=now, categories=self.policy.categories, subjects=self.subjects,
                       holds=spread_holds(self.holds() if holds is None else holds, self.policy.sources),
                       requests=self.requests())

    # -- records ---------------------------------------------------------------------------------
    def records(self, source: Source, on_problem: Callable[[Problem], None] | None = None) -> Iterator[Record]:
        """The source's records, classified: outside ``match`` dropped, subject/category filled.

        What the backend could not list as a record (:class:`~retention_core.model.Problem`)
        goes to *on_problem* (dropped when None), never into the stream.
        """
        return classify(self.backend(source).scan(source), source, on_problem)


def classify(records: Iterable[Record | Problem], source: Source,
             on_problem: Callable[[Problem], None] | None = None) -> Iterator[Record]:
    """Apply the source's ``match`` regex and ``category``; drop records it does not match.

    This runs once per record, so it builds the classified record with the constructor
    (``dataclasses.replace`` cost more than the scan's own stat call) and only when something
    changes. A :class:`Problem` gets its subject from ``match`` when its location names one.
    """
    pattern = source.match
    default = source.category
    if pattern is None:
        for record in records:
            if isinstance(record, Problem):
                if on_problem is not None:
                    on_problem(record)
                continue
            if record.category is None and default is not None:
                record = Record(record.source, record.location, record.created, record.size,
                                record.version, record.subject, default, record.stamp)
            yield record
        return
    fullmatch = pattern.fullmatch
    has_subject, has_category = "subject" in pattern.groupindex, "category" in pattern.groupindex
    for record in records:
        found = fullmatch(record.location)
        if isinstance(record, Problem):
            if on_problem is not None:
                if found is not None and has_subject and record.subject is None:
                    record = Problem(record.source, record.location, record.reason,
                                     found.group("subject"))
                on_problem(record)
            continue
        if found is None:
            continue
        subject, category = record.subject, record.category
        if subject is None:
            subject = found.group("subject") if has_subject else None
        if category is None:
            category = found.group("category") if has_category else None
            if category is None:
                category = default
        if subject is not record.subject or category is not record.category:
            record = Record(record.source, record.location, record.created, record.size,
                            record.version, subject, category, record.stamp)
        yield record


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is edited or replaced (device, inode, size, mtime); None if gone."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns
