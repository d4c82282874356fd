"""One run: scan → decide → (limits) → batches → journal intent → delete → journal outcome.

Dry-run is structural: :func:`run` with ``dry_run=True`` returns before the enforcing half
is reached, so no code path can call ``Backend.delete``. Enforcing takes the state store's
lock, re-reads holds before every batch, and journals intent before each backend call and
the outcome after it.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from .audit import (
    STREAMED_FIELDS,
    AuditTrail,
    evidence_dir,
    evidence_ref,
    load_key,
    parse_copy_text,
    records,
    segment_ref,
    trail_for,
)
from .backend import Backend, Cutoffs, PushdownPlan, StreamedBatch, Survey
from .engine import Decider, covering_holds, cutoffs, plain_cutoff, protected_by
from .errors import ClockError, ConfigError, LockedError, RetentionError
from .fence import in_flight
from .journal import Journal, JournalBatch, OpenIntents, settlement, trail_key
from .model import Action, Context, Decision, Limits, Outcome, Record, RecordKey, RunStatus, Source, Status
from .report import RunReport, SourceStats
from .runtime import Runtime
from .spool import Item, Spool
from .state import actor
from .statecheck import check_state_is_the_trails
from .text import printable

Progress = Callable[[str, int], None]
#: Called once per deletion batch: (source, records in the batch, records due in the source).
Deleting = Callable[[str, int, int], None]
DESTRUCTIVE = (Action.DELETE, Action.ANONYMIZE)
#: Which scanned records a run keeps in its spool (the rest are only counted): (record, action).
KeepPredicate = Callable[[Record, Action], bool]


class Distributor(Protocol):
    """Runs the scan half and the per-record deletion half somewhere else (other processes, a
    cluster: :mod:`retention_core.partitioned`), filling the same report the local path fills.

    Everything around the two halves — the lock, the clock, recovery, the safety limits over the
    global totals, push-down sources, erasure requests — stays here, in one process."""

    def scan(self, rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
             keep: KeepPredicate) -> None: ...

    def delete(self, rt: Runtime, source: Source, report: RunReport, journal: Journal, now: datetime,
               scanned_with: Context) -> None: ...
KEEP = Action.KEEP
SKIP = Action.SKIP


@dataclass(frozen=True)
class RunOptions:
    """How to run. ``as_of_given``: ``now`` was chosen by the user, not read from the clock.

    ``itemize``: keep every decided record for the report's item list. Without it (the CLI's
    default when no ``--report`` is asked for) the run keeps only the records it reads back —
    those to delete, those of subjects with erasure requests, those an earlier run left
    unsettled — and counts the rest, and push-down sources may be counted in storage
    (:meth:`Backend.survey`) instead of scanned.
    """

    now: datetime
    dry_run: bool = False
    sources: tuple[str, ...] = ()
    progress: Progress | None = None
    as_of_given: bool = False
    #: Enforce although an earlier run recorded a later time (its clock was ahead); journalled.
    trust_clock: bool = False
    itemize: bool = True
    #: One-off, journalled overrides of the safety limits: every source may delete up to this
    #: many records (in place of its limits), and these sources have no limit, for this run only.
    max_delete: int | None = None
    allow_over_limit: tuple[str, ...] = ()
    deleting: Deleting | None = None
    #: Called with what the run knew when an error stopped it (before it is re-raised), so its
    #: reports can still be written.
    on_failure: Callable[[RunReport, Exception], None] | None = None
    #: Scan and delete per partition elsewhere (``--executor dask``); None: in this process.
    distributor: Distributor | None = None


#: Test hook for crash-recovery tests: ``RETENTION_TEST_KILL_AT=after-intent:2`` SIGKILLs the
#: process the 2nd time the run passes that journal point. Points: after-intent, mid-batch,
#: after-backend, after-outcome. Unset (always, outside those tests) it does nothing.
KILL_ENV = "RETENTION_TEST_KILL_AT"
#: Read once: the mid-batch point is passed once per record.
_KILL_AT = os.environ.get(KILL_ENV)
_passes: dict[str, int] = {}


def checkpoint(point: str) -> None:
    """A kill point for crash tests: SIGKILL this process the Nth time *point* is passed when
    ``RETENTION_TEST_KILL_AT=point[:N]`` is set (a no-op otherwise)."""
    if not _KILL_AT:
        return
    name, _, count = _KILL_AT.partition(":")
    if name == point:
        _passes[point] = _passes.get(point, 0) + 1
        if _passes[point] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run(rt: Runtime, options: RunOptions) -> RunReport:
    """Execute (or, with ``dry_run``, only plan) one run over the policy's sources.

    Use the result as ``with run(rt, options) as report:``: the run's spool (its decided
    records, on disk) lives until the block ends; an error inside the run removes it at once.
    """
    started = datetime.now(timezone.utc)
    sources = [rt.policy.source(n) for n in options.sources] if options.sources else list(rt.policy.sources)
    report = RunReport(run_id=new_run_id(started), dry_run=options.dry_run, as_of=options.now,
                       started_at=started, spool=Spool(), itemized=options.itemize)
    try:
        rt.check_overlaps()  # before anything, dry run included: the dry run predicts the real one
        check_state_is_the_trails(rt)
        for name in options.allow_over_limit:
            rt.policy.source(name)  # an unknown name is a config error, not a silent no-op
        ctx = rt.context(options.now)
        report.holds = list(rt.holds(include_released=True))
        for source in sources:
            backend = rt.backend(source)
            stats = report.sources.setdefault(source.name, SourceStats())
            stats.warnings += rt.warnings(source)
            if not options.dry_run:
                _check(backend, source, rt)
        if options.dry_run:
            _check_clock(rt, options)
            if options.distributor is not None:
                options.distributor.scan(rt, sources, ctx, report, _Keep(options.itemize))
            else:
                _scan(rt, sources, ctx, report, options.progress, _Keep(options.itemize))
            _trip(report, _over_limits(rt, report, options))  # exactly as the enforcing run would
        else:
            with rt.state.lock(report.run_id):
                # under the lock, so a rival's run in progress is not compared
                overridden = _check_clock(rt, options)
                _enforce(rt, sources, ctx, report, options, overridden)
        report.erasure_requests = rt.state.requests()
        # Holds as they stand at the end: one that appeared mid-run (CLI, policy file, hold
        # source) protected records, and the summary names it.
        report.holds = list(rt.holds(include_released=True))
        report.finished_at = datetime.now(timezone.utc)
        return report
    except BaseException as exc:
        if options.on_failure is not None and isinstance(exc, Exception):
            report.status = RunStatus.FAILED
            report.finished_at = datetime.now(timezone.utc)
            options.on_failure(report, exc)
        report.close()
        raise


def _check_clock(rt: Runtime, options: RunOptions) -> datetime | None:
    """Refuse a clock behind the last finished enforcing run's, unless now was given (--as-of)
    or the operator vouches for the clock (``trust_clock``: then the last run's time is
    returned, for the trail to record the override)."""
    if options.as_of_given:
        return None
    last = rt.state.last_run_time()
    if last is None or options.now >= last:
        return None
    if options.trust_clock and not options.dry_run:
        return last
    raise ClockError(f"the clock says {options.now:%Y-%m-%d %H:%M:%S} UTC but an earlier run ran as of "
                     f"{last:%Y-%m-%d %H:%M:%S} UTC: the clock went back; fix it (or pass --as-of for a dry "
                     "run); if the clock is right and that run's was ahead, enforce with --trust-clock "
                     "(journalled)")


def _check(backend: Backend, source: Source, rt: Runtime) -> None:
    try:
        backend.check(source)
    except ConfigError as exc:
        raise exc.located(file=exc.file or str(rt.policy.path), prefix=None if exc.key else
                          f"sources[{source.index}]") from None


@dataclass(frozen=True)
class _Keep:
    """Which scanned records the spool keeps: all (``everything``, for the report's items),
    or only those the enforcing half reads back; the rest are only counted."""

    everything: bool
    destructive: bool = False
    subjects: frozenset[str] = frozenset()
    keys: frozenset[RecordKey] = frozenset()

    @property
    def nothing(self) -> bool:
        """Keeps no record whatever its action (a dry run without a report)."""
        return not (self.everything or self.destructive or self.subjects or self.keys)

    def __call__(self, record: Record, action: Action) -> bool:
        return (self.everything or (self.destructive and action in DESTRUCTIVE)
                or (record.subject is not None and record.subject in self.subjects)
                or (bool(self.keys) and (record.source, record.location, record.version) in self.keys))


def _scan(rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
          progress: Progress | None, keep: _Keep) -> None:
    add = report.spool.add
    decide = Decider(ctx).decide  # the run's memo for the scan's context
    everything = keep.everything
    nothing = keep.nothing  # then the keep-predicate is not even asked, per record
    for source in sources:
        stats = report.sources[source.name]
        # The per-record loop: counters are local and folded into stats once per source.
        tally = dict.fromkeys(Action, 0)
        protected = stats.protected
        scanned = stats.scanned
        # Plain records (no subject, the source's category) are decided by one comparison and
        # only counted, unless the spool keeps them (see docs/performance.md).
        plain = plain_cutoff(source, ctx)
        cutoff, due_action = plain if plain else (None, Action.KEEP)
        category = source.category
        try:
            if cutoff is not None and nothing and source.match is None and rt.backend(source).can_tally:
                # Every record is plain and none is kept: counted in the backend, no Record each.
                counted = rt.backend(source).tally(source, cutoff, stats.note_problem)
                tally[due_action] += counted.due
                tally[KEEP] += counted.total - counted.due
                scanned += counted.total
            else:
                for record in rt.records(source, stats.note_problem):
                    if cutoff is not None and record.subject is None and record.category == category:
                        action = due_action if record.created <= cutoff else KEEP
                        if nothing or not (everything or keep(record, action)):
                            tally[action] += 1
                            scanned += 1
                            if progress is not None and scanned % 1000 == 0:
                                progress(source.name, scanned)
                            continue
                    try:
                        decision = decide(record)
                    except (ArithmeticError, ValueError) as exc:  # one record never stops the run
                        decision = Decision(Action.SKIP, f"cannot be decided: {type(exc).__name__}: {exc}")
                    if not nothing and (everything or keep(record, decision.action)):
                        add(record, decision)
                    if decision.action is SKIP:
                        stats.note_skip(record, decision)
                    tally[decision.action] += 1
                    for hold_id in decision.holds:
                        protected[hold_id] += 1
                    scanned += 1
                    if progress is not None and scanned % 1000 == 0:
                        progress(source.name, scanned)
        except ConfigError as exc:  # raised by a backend when listing starts: place it in the policy file
            raise exc.located(file=exc.file or str(rt.policy.path)) from None
        finally:
            # Problems count as skipped items: never deleted, reported with their reasons.
            stats.scanned = scanned + stats.problems
            tally[Action.SKIP] += stats.problems
            for action, count in tally.items():
                stats.decisions[action.value] += count
        if progress is not None:
            progress(source.name, stats.scanned)
    report.spool.commit()


def _limits_for(rt: Runtime, name: str, options: RunOptions) -> Limits:
    """A source's safety limits for this run, the one-off overrides applied."""
    if name in options.allow_over_limit:
        return Limits()
    if options.max_delete is not None:
        return Limits(max_deletions=options.max_delete)
    return rt.policy.limits_for(rt.policy.source(name))


def _over_limits(rt: Runtime, report: RunReport, options: RunOptions) -> dict[str, str]:
    return over_limits(rt, {name: (stats.decisions["delete"] + stats.decisions["anonymize"], stats.scanned)
                            for name, stats in report.sources.items()}, options)


def over_limits(rt: Runtime, counts: Mapping[str, tuple[int, int]], options: RunOptions) -> dict[str, str]:
    """Every source whose (planned deletions, scanned items) in *counts* trip its safety limits,
    with why and how to raise them — the one verdict of run, run --dry-run and plan."""
    tripped = {}
    for name, (planned, scanned) in counts.items():
        if why := _limits_for(rt, name, options).over(planned, scanned):
            if "max_fraction" in why and rt.policy.default_fraction(rt.policy.source(name)):
                why += " (the default max_fraction of a policy without `limits:`)"
            tripped[name] = (f"{why}: nothing was deleted there (raise its `limits:` in the policy, or for this "
                             f"run only: --allow-over-limit {name} or --max-delete N)")
    return tripped


def _trip(report: RunReport, tripped: dict[str, str]) -> None:
    """Record tripped sources: each deletes nothing, is named, and the run exits 3."""
    for name, why in tripped.items():
        report.tripped[name] = why
    if report.tripped:
        report.limit_tripped = "; ".join(f"source {name!r} {why}" for name, why in report.tripped.items())
        report.status = RunStatus.LIMIT_TRIPPED


def _enforce(rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
             options: RunOptions, clock_overridden: datetime | None = None) -> None:
    journal = Journal(trail_for(rt.policy.audit, rt.state), report.run_id,
                      places={s.name: rt.backend(s).fingerprint(s) for s in sources})
    rt.state.start_run(report.run_id, options.now, dry_run=False)
    journal.event("run-start", as_of=options.now.isoformat(), sources=[s.name for s in sources],
                  tool=f"retention {_version()}", by=actor(), state=rt.state.store_id())
    if clock_overridden is not None:
        journal.event("clock-override", as_of=options.now.isoformat(),
                      last_run_as_of=clock_overridden.isoformat(), by=actor())
        report.warnings.append(f"clock override: enforced as of {options.now:%Y-%m-%d %H:%M:%S} UTC although an "
                               f"earlier run ran as of {clock_overridden:%Y-%m-%d %H:%M:%S} UTC (--trust-clock)")
    if options.max_delete is not None or options.allow_over_limit:
        journal.event("limit-override", max_delete=options.max_delete, allow_over_limit=list(options.allow_over_limit),
                      by=actor())
    status = RunStatus.FAILED
    try:
        left_open = (OpenIntents.read(rt.policy.audit, rt.state.crashed_runs(report.run_id), rt.state.unsettled())
                     if not options.sources else OpenIntents())
        surveyed = {s.name: found for s in sources
                    if (found := _survey(rt, s, ctx, options, left_open)) is not None}  # name -> (survey, cutoffs)
        keep = _Keep(options.itemize, destructive=True, subjects=frozenset(ctx.requests),
                     keys=frozenset(left_open.keys))
        report.surveyed = set(surveyed)
        listed = [s for s in sources if s.name not in surveyed]
        if options.distributor is not None:
            options.distributor.scan(rt, listed, ctx, report, keep)
        else:
            _scan(rt, listed, ctx, report, options.progress, keep)
        for name, (survey, plan) in surveyed.items():
            _count_surveyed(report.sources[name], survey, plan, rt.policy.source(name), ctx)
        if not options.sources:
            _recover(rt, report, journal, left_open)
        # A source over its limits deletes nothing; the others go on (an owed erasure elsewhere
        # must not wait for someone to edit the YAML).
        _trip(report, _over_limits(rt, report, options))
        for source in sources:
            if source.name in report.tripped:
                continue
            backend = rt.backend(source)
            if _pushes_down(backend, source):
                allowed = _limits_for(rt, source.name, options).allowance(report.sources[source.name].scanned)
                _push_down(rt, backend, source, report, journal, options.now, allowed,
                           itemize=source.name not in surveyed, deleting=options.deleting)
            elif options.distributor is not None:
                options.distributor.delete(rt, source, report, journal, options.now, ctx)
            else:
                _batches(rt, backend, source, report, journal, options.now, ctx, options.deleting)
        if not options.sources:
            _settle_requests(rt, report, options.now)
        status = (RunStatus.LIMIT_TRIPPED if report.tripped else
                  RunStatus.OK if report.failed == 0 else RunStatus.FAILED_DELETIONS)
        report.status = status
    finally:
        head = journal.event("run-end", status=status, summary=report.summary(), outcomes=report.outcomes())
        rt.state.finish_run(report.run_id, status, head.seq, head.hash)


def _pushes_down(backend: Backend, source: Source) -> bool:
    return backend.can_push_down and source.match is None and source.category is not None


def _survey(rt: Runtime, source: Source, ctx: Context, options: RunOptions,
            left_open: OpenIntents) -> tuple[Survey, Cutoffs] | None:
    """Count a push-down source in storage instead of scanning it, when nothing needs its
    records one by one: no report items, nothing left open in it by an earlier run, and no
    erasure request (proving one done needs the scan: its held records counted, and rows the
    backend cannot list — a NULL ``created`` — reported as listing problems)."""
    backend = rt.backend(source)
    if options.itemize or ctx.requests or not _pushes_down(backend, source) or source.name in left_open.sources:
        return None
    plan = cutoffs(source, ctx)
    try:
        return backend.survey(source, plan), plan
    except NotImplementedError:
        return None


def _count_surveyed(stats: SourceStats, survey: Survey, plan: Cutoffs, source: Source, ctx: Context) -> None:
    """A surveyed source's counters: records neither due nor held count as keep."""
    stats.scanned += survey.total
    stats.decisions[plan.action.value] += survey.due
    stats.protected.update(protected_by(source, ctx, survey))
    stats.decisions[Action.HOLD.value] += survey.held
    stats.decisions[Action.KEEP.value] += survey.total - survey.due - survey.held
    if survey.problems:  # rows storage holds but cannot be read as records (a NULL created …)
        stats.problems += survey.problems
        stats.problem_subjects.add(None)
        stats.problem_samples.append(f"{survey.problems} row(s) counted in storage that cannot be listed as "
                                     "records (run with --report to name them)")
        stats.decisions[Action.SKIP.value] += survey.problems
        stats.scanned += survey.problems  # as a scan counts them


def _batches(rt: Runtime, backend: Backend, source: Source, report: RunReport, journal: Journal,
             now: datetime, scanned_with: Context, deleting: Deleting | None = None) -> None:
    stats = report.sources[source.name]
    planned = stats.decisions["delete"] + stats.decisions["anonymize"]
    for batch in report.spool.due(source.name, max(1, backend.batch_size)):
        _still_ours(rt, report.run_id)
        # The hold fence: registered before holds are read, left once the outcome is journalled,
        # so a hold placed at any moment either is seen here or waits for this batch to finish.
        with in_flight(rt.state, report.run_id, source.name) as batch_id:
            ctx = rt.context(now)
            # decide() is pure, and within a run only holds and erasure requests can change:
            # while they have not, the scan's decisions stand.
            unchanged = ctx.holds == scanned_with.holds and ctx.requests == scanned_with.requests
            todo: dict[Action, list[Item]] = {Action.DELETE: [], Action.ANONYMIZE: []}
            decide = Decider(ctx).decide
            for item in batch:
                decision = item.decision if unchanged else decide(item.record)
                if decision.action in DESTRUCTIVE:
                    todo[decision.action].append(item if decision is item.decision else
                                                 Item(item.idx, item.record, decision, None, None))
                else:
                    report.spool.redecide(item.idx, decision)
                    stats.decisions[item.decision.action.value] -= 1
                    stats.decisions[decision.action.value] += 1
                    stats.protected.update(decision.holds)
            for action, items in todo.items():
                if items:
                    _execute(rt, backend, action, items, report, journal, ctx, stats, batch_id)
            if deleting is not None:
                deleting(source.name, len(todo[Action.DELETE]) + len(todo[Action.ANONYMIZE]), planned)


def _execute(rt: Runtime, backend: Backend, action: Action, items: list[Item], report: RunReport,
             journal: Journal, ctx: Context, stats: SourceStats, batch_id: str) -> None:
    batch = journal.intent(items[0].record.source, action, ((i.record, i.decision) for i in items), batch_id)
    checkpoint("after-intent")
    records = [i.record for i in items]
    # RecordKey is a NamedTuple: plain tuples of its fields are equal to it and hash alike, and
    # cost a third of the property's call per record (profile of a 100k-file batch run).
    keys = [(r.source, r.location, r.version) for r in records]
    try:
        rt.plugins.before_delete(records, ctx)
    except BaseException as exc:  # nothing was deleted: close the intent, never leave it dangling
        journal.rolled_back(batch, f"not executed: the before_delete hook failed ({type(exc).__name__}: {exc})")
        raise
    wanted = set(keys)
    got: dict[tuple[str, str, str | None], Outcome] = {}
    error = "backend reported no outcome for this record"
    try:
        if action is Action.ANONYMIZE:
            if not backend.can_anonymize:
                raise RetentionError(f"backend {backend.name!r} cannot anonymize (category action: anonymize)")
            stream: Iterable[Outcome] = backend.anonymize(records)
        else:
            stream = backend.delete(records)
        trouble = rt.state.lock_trouble
        why = trouble(report.run_id)
        if why is not None:
            raise LockedError(f"run {report.run_id} {why}; stopped before the batch")
        for outcome in stream:
            done_record = outcome.record
            key = (done_record.source, done_record.location, done_record.version)
            if key in wanted and key not in got:
                got[key] = outcome
                if _KILL_AT:
                    checkpoint("mid-batch")
            # Before the backend deletes the next one: a process stopped for long enough to look
            # dead does not go on (the rest of the batch is failed, and settled by a later run).
            why = trouble(report.run_id)
            if why is not None:
                raise LockedError(f"run {report.run_id} {why}; stopped in the middle of a batch")
    except Exception as exc:  # the rest of the batch gets `failed`, never silence
        error = f"{type(exc).__name__}: {exc}"
    done = [(got.get(key) or Outcome(item.record, Status.FAILED, error), item) for key, item in zip(keys, items,
                                                                                                   strict=True)]
    checkpoint("after-backend")
    journal.outcome(batch, ((o.status, o.error) for o, _ in done))
    checkpoint("after-outcome")
    rt.state.add_unsettled(report.run_id, [journal.unsettled(o.record, i.decision)
                                           for o, i in done if o.status is Status.FAILED])
    # Without items, outcomes are read back only for subjects with erasure requests.
    requested = ctx.requests
    report.spool.set_outcomes((i.idx, o) for o, i in done
                              if report.itemized or (o.record.subject is not None and o.record.subject in requested))
    counts = stats.outcomes
    for outcome, _ in done:
        counts[outcome.status] += 1
    rt.plugins.after_delete([o for o, _ in done], ctx)


def _push_down(rt: Runtime, backend: Backend, source: Source, report: RunReport, journal: Journal,
               now: datetime, allowed: int | None, *, itemize: bool, deleting: Deleting | None = None) -> None:
    """Set-based batches. Each batch is yielded before its transaction commits, journalled as
    intent, committed when the generator resumes, then journalled as outcome — so a crash
    leaves intents a later run can settle, never a deletion missing from the trail.

    ``itemize`` False (the source was surveyed, not scanned): the spool keeps only failures,
    the one thing read back (for erasure requests still owed)."""
    stats = report.sources[source.name]
    # What the backend last read (it refreshes at the start of every batch): a batch selected
    # under cutoffs that differ from the fresh ones just before its commit is rolled back.
    given = [cutoffs(source, rt.context(now))]

    def refresh() -> Cutoffs:
        given[0] = cutoffs(source, rt.context(now))
        return given[0]

    # Surveyed (no per-record report wanted) and deleting: the backend may stream each batch's
    # rows as bytes into an evidence file next to the trail instead of handing them to Python.
    streamable = not itemize and given[0].action is Action.DELETE
    trail_dir = rt.policy.audit.parent
    plan = PushdownPlan(cutoffs=given[0], refresh=refresh,
                        evidence=evidence_dir(rt.policy.audit, report.run_id) / f"source-{source.index}"
                        if streamable else None)
    decision = Decision(plan.cutoffs.action, "set-based: due under the policy (holds re-read per batch)")
    hooked = _after_delete_hooked(rt)

    def settle(batch: list[Outcome] | StreamedBatch, journalled: JournalBatch) -> None:
        if isinstance(batch, StreamedBatch):
            # One transaction: every row committed, so every row deleted (failures: none).
            journal.streamed_outcome(journalled, Status.DELETED)
            checkpoint("after-outcome")
            stats.outcomes[Status.DELETED] += batch.rows
            if hooked:  # the rows are read back from the file only for a plugin that observes them
                rt.plugins.after_delete(streamed_outcomes(batch.path, source), rt.context(now))
            if deleting is not None:
                deleting(source.name, batch.rows, stats.decisions["delete"] + stats.decisions["anonymize"])
            return
        journal.outcome(journalled, ((o.status, o.error) for o in batch))
        checkpoint("after-outcome")
        failed = [o for o in batch if o.status is Status.FAILED]
        rt.state.add_unsettled(report.run_id, [journal.unsettled(o.record, decision) for o in failed])
        report.spool.record_pushed_batch(batch if itemize else failed, decision)
        for status, count in Counter(o.status for o in batch).items():
            stats.outcomes[status] += count
        rt.plugins.after_delete(batch, rt.context(now))
        if deleting is not None:
            deleting(source.name, len(batch), stats.decisions["delete"] + stats.decisions["anonymize"])

    def intent(batch: list[Outcome] | StreamedBatch, batch_id: str) -> JournalBatch:
        if isinstance(batch, StreamedBatch):  # the file is durable already: the intent names it
            return journal.streamed_intent(source.name, decision.action,
                                           evidence_ref(trail_dir, batch.path, batch.rows, batch.sha256), batch_id,
                                           category=source.category, reason=decision.reason)
        return journal.intent(source.name, decision.action, ((o.record, decision) for o in batch), batch_id)

    # Rows that became due after the scan are deleted too; the safety limits (*allowed*) still
    # bound the total.
    done = 0
    while True:
        restart = False
        pending: tuple[list[Outcome] | StreamedBatch, JournalBatch] | None = None
        stream = backend.push_down(source, plan)
        # The hold fence: each batch is registered before the generator selects and deletes it
        # (plan.refresh() reads holds inside), and left only after its commit is journalled —
        # which happens when the generator is resumed for the next batch, so two overlap.
        fences = _Fences(rt, report.run_id, source.name)
        try:
            while True:
                why = rt.state.lock_trouble(report.run_id) if pending is not None else None
                if why is not None:  # stopped long enough to look dead: never commit what waits
                    stream.close()
                    journal.rolled_back(pending[1], f"rolled back: the run {why}")  # type: ignore[index]
                    raise LockedError(f"run {report.run_id} {why}; stopped before committing a batch")
                batch_id = fences.enter()
                batch = next(stream, None)  # commits the pending batch, then selects this one
                if _KILL_AT and (pending is not None or batch is not None):
                    # Storage committed the pending batch (no outcome line yet) and selected this one
                    # (a streamed batch's evidence file is written; no intent names it yet).
                    checkpoint("after-backend")
                if pending is not None:
                    settle(*pending)
                    fences.leave(pending[1].batch_id)  # committed and journalled: no longer in flight
                    pending = None
                if batch is None:
                    break
                size = batch.rows if isinstance(batch, StreamedBatch) else len(batch)
                if allowed is not None and done + size > allowed:
                    stream.close()  # the batch in hand is rolled back, never journalled
                    _trip(report, {source.name: f"reached its limit of {allowed} deletions during set-based "
                                                "batches (more became due since the scan); stopped after "
                                                f"{done} deletions"})
                    break
                _still_ours(rt, report.run_id)
                journalled = intent(batch, batch_id)
                checkpoint("after-intent")
                # Holds and erasure requests are read once more just before the commit (the fence
                # makes a hold placed from now on wait for it; this catches one placed, or an
                # erasure request withdrawn, while the batch was being selected).
                try:
                    fresh = cutoffs(source, rt.context(now))
                except BaseException as exc:  # a hold source unreadable: roll back, close the intent
                    stream.close()
                    journal.rolled_back(journalled, f"rolled back: holds could not be read "
                                                    f"({type(exc).__name__}: {exc})")
                    raise
                if fresh != given[0]:
                    stream.close()  # rolled back; walk again with what holds and requests say now
                    journal.rolled_back(journalled, "holds or erasure requests changed since the batch was "
                                                    "selected; rolled back")
                    restart = True
                    break
                done += size
                pending = batch, journalled
        finally:
            stream.close()
            fences.leave_all()
        if not restart:
            break
    report.spool.commit()
    _held_midway(rt, source, stats, decision.action, done, plan.cutoffs, given[0], now, report)


def _held_midway(rt: Runtime, source: Source, stats: SourceStats, action: Action, done: int, first: Cutoffs,
                 last: Cutoffs, now: datetime, report: RunReport) -> None:
    """Holds that came during a source's set-based batches kept due records from them: the run
    says so. A hold covering the whole source keeps all that was left: those count as held,
    protected by it; one covering subjects keeps an uncounted part (decided again next run)."""
    planned = stats.decisions[action.value]
    came = last.held_subjects - first.held_subjects
    if done >= planned or not (last.held and not first.held or came):
        return
    kept = planned - done
    if last.held:
        holders = covering_holds(Record(source.name, "", now, category=source.category), rt.context(now).holds)
        stats.decisions[action.value] -= kept
        stats.decisions[Action.HOLD.value] += kept
        stats.protected.update({hold: kept for hold in holders})
        report.warnings.append(f"source {source.name!r}: a hold placed during the run ({', '.join(holders)}) covers "
                               f"the whole source: {kept} of its {planned} due records were kept, not deleted")
        return
    subjects = ", ".join(sorted(printable(s) for s in came)[:5]) + (" …" if len(came) > 5 else "")
    report.warnings.append(f"source {source.name!r}: {kept} of its {planned} due records were not deleted: holds "
                           f"placed during the run now cover subject(s) {subjects}; what they cover was kept, the "
                           "rest is decided again next run")


def _after_delete_hooked(rt: Runtime) -> bool:
    """Whether any plugin observes deletions (a streamed batch is then read back from its file)."""
    hook = getattr(getattr(rt.plugins, "pm", None), "hook", None)
    caller = getattr(hook, "retention_after_delete", None)
    return caller is None or bool(caller.get_hookimpls())


def streamed_outcomes(path: os.PathLike[str], source: Source) -> list[Outcome]:
    """A streamed batch's outcomes, read back from its evidence file for the ``after_delete``
    hook. The file holds what the trail journals (location, subject), not ``created``: the
    records carry the Unix epoch there (docs/user-guide.md says so)."""
    out = []
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    with open(path, "rb") as handle:
        for raw in handle:
            location, subject = parse_copy_text(raw[:-1], len(STREAMED_FIELDS))
            out.append(Outcome(Record(source.name, location or "", epoch, None, None, subject, source.category),
                               Status.DELETED))
    return out


class _Fences:
    """The push-down batches of one source registered in the hold fence.

    A set-based batch is committed only when the generator is resumed for the next one, so two
    registrations overlap; each is left as soon as its own batch is committed and journalled,
    so ``holds place`` waits for (and names) only what was really in flight."""

    def __init__(self, rt: Runtime, run_id: str, source: str) -> None:
        self.rt, self.run_id, self.source = rt, run_id, source
        self.open: dict[str, AbstractContextManager[str]] = {}

    def enter(self) -> str:
        fence = in_flight(self.rt.state, self.run_id, self.source)
        batch_id = fence.__enter__()
        self.open[batch_id] = fence
        return batch_id

    def leave(self, batch_id: str) -> None:
        fence = self.open.pop(batch_id, None)
        if fence is not None:
            fence.__exit__(None, None, None)

    def leave_all(self) -> None:
        for batch_id in list(self.open):
            self.leave(batch_id)


def _still_ours(rt: Runtime, run_id: str) -> None:
    """Stop before the next batch if this run's lock was taken over (it looked dead: a paused VM),
    or could have been (:meth:`StateStore.lock_trouble`)."""
    trouble = rt.state.lock_trouble(run_id)
    if trouble is not None:
        raise LockedError(f"run {run_id} {trouble}; stopped before deleting more")
    if not rt.state.holds_lock(run_id):
        raise LockedError(f"run {run_id} lost the state store's lock (another run took it over as stale); "
                          "stopped before the next batch")


def _recover(rt: Runtime, report: RunReport, journal: Journal, left_open: OpenIntents) -> None:
    """Settle what earlier runs left open (:class:`~retention_core.journal.OpenIntents`).

    This run's scan is the evidence, but only where it is evidence: a record meant to be
    deleted and absent from a source that this run listed *completely* (scanned record by
    record, no listing problem, the location still inside the source's ``match``) was deleted,
    and is journalled so now; one still present was not, and this run decides it afresh.
    Anything else — a source not listed, not mounted, partly unreadable, reconfigured — is
    journalled ``unknown`` and carried to the next run: an absence not observed is never
    journalled as a deletion.
    """
    _name_orphan_segments(rt, report, journal, left_open)
    settled: list[dict[str, Any]] = []
    carried: list[dict[str, Any]] = []
    places = journal.places  # what this run lists, as its intents record it (recovery runs over every source)
    for key, intent in left_open.dangling.items():
        observed = _observed(rt, report, key, intent, places)
        settled.append(settlement(intent, report.run_id, "after a crash", observed=observed,
                                  present=observed and _still_there(rt, report, key)))
        if not observed:
            carried.append(intent)
    # A failure whose record is still there is already journalled; only a vanished one needs a line.
    # (An intent both dangling and failed — its outcome line was lost with the machine — is settled once.)
    kept: set[int] = set()
    for row_id, intent in left_open.failed:
        key = trail_key(intent)
        if key in left_open.dangling:
            continue
        if not _observed(rt, report, key, intent, places):
            kept.add(row_id)  # still unknown: the next run tries again (journalled once, when it failed)
        elif not _still_there(rt, report, key):
            settled.append(settlement(intent, report.run_id, "after a failed delete", observed=True, present=False))
    journal.settle(settled)
    for intent, why in left_open.unreadable:
        journal.unreadable(intent, why)
        report.warnings.append(f"run {intent.get('run_id')} crashed with a batch of source {intent.get('source')!r} "
                               f"open whose evidence cannot be believed ({why}); its records cannot be named, so "
                               "none is settled or inferred deleted: journalled unknown (audit verify names the file)")
    rt.state.drop_unsettled([row_id for row_id, _ in left_open.failed if row_id not in kept])
    rt.state.add_unsettled(report.run_id, carried)
    for run_id in left_open.crashed:
        rt.state.finish_run(run_id, RunStatus.CRASHED)


def _observed(rt: Runtime, report: RunReport, key: RecordKey, intent: dict[str, Any],
              places: dict[str, str | None]) -> bool:
    """Whether this run's scan is evidence about *key*: its source was listed completely,
    record by record (not surveyed), in the same storage the intent was made in (an empty
    mount point or another root is not), and the location is still inside the source's ``match``."""
    stats = report.sources.get(key.source)
    if stats is None or stats.problems or key.source in report.surveyed:
        return False
    if intent.get("where") is not None and intent["where"] != places.get(key.source):
        return False
    source = next((s for s in rt.policy.sources if s.name == key.source), None)
    if source is None or (source.match is not None and source.match.fullmatch(key.location) is None):
        return False
    # A listing taken before the intent (an inventory report) cannot tell whether it was executed.
    listed = rt.backend(source).listed_at(source)
    return listed is None or _journalled_before(intent, listed)


def _name_orphan_segments(rt: Runtime, report: RunReport, journal: Journal, left_open: OpenIntents) -> None:
    """Segments a crashed distributed run dispatched and never recorded: each is closed (a
    ``segment-recovered`` line, which also cuts a torn last line) and named in the main trail by a
    ``segment`` line with its head and SHA-256, so the deletions its workers journalled there are
    read by ``audit find`` and certificates and checked by ``audit verify``; its open intents are
    settled below like any other."""
    base = rt.policy.audit.parent
    for run_id, source, partition, rel in left_open.orphans:
        segment = base / rel
        if not segment.is_file() or segment.stat().st_size == 0:
            continue  # claimed, never written: nothing of it happened
        AuditTrail(segment, key=load_key()).append([{"event": "segment-recovered", "run_id": run_id,
                                                     "recovered_by": report.run_id}])
        counts: dict[str, int] = {}
        for entry in records(segment):
            if entry.get("event") == "outcome" and entry.get("outcome"):
                counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        journal.trail.append([{"event": "segment", "run_id": run_id, "source": source, "partition": partition,
                               "segment": segment_ref(segment, base), "outcomes": counts,
                               "recovered_by": report.run_id}])
        report.warnings.append(f"run {run_id} crashed before naming its segment {rel} ({partition}); named now, "
                               f"with the outcomes its workers journalled there")


def _still_there(rt: Runtime, report: RunReport, key: RecordKey) -> bool:
    """Whether the record is still in storage: listed by this run's scan, or — absent from the
    listing — found where the backend can look it up (a SQL row that left the source's
    ``where:`` filter, or an object an S3 Inventory report left out, is not listed, yet not
    deleted)."""
    if report.spool.contains(*key):
        return True
    source = rt.policy.source(key.source)
    return rt.backend(source).present(source, key.location, key.version) is True


def _journalled_before(intent: dict[str, Any], listed: datetime) -> bool:
    """Whether *intent*'s line was written before *listed* (False when its time is unreadable)."""
    try:
        return datetime.fromisoformat(str(intent.get("time"))) < listed
    except ValueError:
        return False


def _settle_requests(rt: Runtime, report: RunReport, now: datetime) -> None:
    """Done means proven: a request is done (or held) only when every source was listed
    completely for its subject and nothing of it is owed; otherwise it stays open, with a warning."""
    for request in rt.state.requests():
        if request.closed:  # done, or withdrawn: nothing owed
            continue
        hiding = [name for name, stats in report.sources.items() if stats.may_hide(request.subject)]
        stale = [f"{name} (listed from a report of {listed:%Y-%m-%d %H:%M} UTC)" for name in report.sources
                 if (listed := rt.backend(rt.policy.source(name)).listed_at(rt.policy.source(name))) is not None
                 and listed < request.received_at]
        if stale:
            report.warnings.append(
                f"erasure request {request.id} for {printable(request.subject)} stays open: "
                f"{', '.join(stale)} predates the request, so records of the subject may be missing from it; "
                "a report taken after the request, or a live listing, can prove it done")
            continue
        if hiding:
            report.warnings.append(
                f"erasure request {request.id} for {printable(request.subject)} stays open: "
                f"{', '.join(hiding)} could not be listed completely (see its listing problems)")
            continue
        owed, held, kept = report.spool.subject_status(request.subject)
        if kept:
            report.warnings.append(
                f"erasure request {request.id} for {printable(request.subject)} stays open: {kept} of its records "
                "were kept or skipped by the policy (an unknown category, or a subject the subjects source no "
                "longer lists); `retention explain` says why for each")
        elif owed == 0:
            # On the run's clock, which also judged it overdue: done after its due date is "late".
            rt.state.mark_requests(request.subject, report.run_id, now, held)


def scan_into(rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
              keep: KeepPredicate) -> None:
    """The scan half as a run does it, for one share of the work (a partition's runtime lists
    only that partition): decide, count into *report*, spool what *keep* keeps."""
    if not isinstance(keep, _Keep):
        raise TypeError(f"scan_into takes the keep predicate the run handed to its distributor, not {keep!r}")
    _scan(rt, sources, ctx, report, None, keep)


def delete_due(rt: Runtime, source: Source, report: RunReport, journal: Journal, now: datetime,
               scanned_with: Context) -> None:
    """The deletion half as a run does it for *source*'s due items in *report*'s spool: per
    batch the lock check, the hold fence, holds re-read, intent, backend call, outcome."""
    _batches(rt, rt.backend(source), source, report, journal, now, scanned_with)


def _version() -> str:
    from . import __version__

    return __version__


__all__ = ["Distributor", "KeepPredicate", "RunOptions", "delete_due", "new_run_id", "over_limits", "run",
           "scan_into"]
