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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .audit import AuditTrail
from .audit import read as read_trail
from .backend import Backend, PushdownPlan
from .engine import cutoffs, decide
from .errors import ConfigError, LockedError, RetentionError
from .model import Action, Context, Decision, Outcome, Record, Source, Status
from .report import RunReport, SourceStats
from .runtime import Runtime
from .spool import Item, Spool
from .state import actor
from .text import exact_hex, from_entry, printable

Progress = Callable[[str, int], None]
DESTRUCTIVE = (Action.DELETE, Action.ANONYMIZE)


@dataclass(frozen=True)
class RunOptions:
    """How to run. ``as_of_given``: ``now`` was chosen by the user, not read from the clock."""

    now: datetime
    dry_run: bool = False
    sources: tuple[str, ...] = ()
    progress: Progress | None = None
    as_of_given: bool = False


class ClockError(RetentionError):
    """The system clock is behind the last enforcing run's: refuse rather than guess."""

    exit_code = 3


#: Test hook for crash-recovery tests: ``RETENTION_TEST_KILL_AT=after-intent:2`` SIGKILLs the
#: process the 2nd time the run passes that journal point. Points: after-intent, mid-batch,
#: after-backend, after-outcome. Unset (always, outside those tests) it does nothing.
KILL_ENV = "RETENTION_TEST_KILL_AT"
_passes: dict[str, int] = {}


def _checkpoint(point: str) -> None:
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name == point:
        _passes[point] = _passes.get(point, 0) + 1
        if _passes[point] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run(rt: Runtime, options: RunOptions) -> RunReport:
    """Execute (or, with ``dry_run``, only plan) one run over the policy's sources."""
    started = datetime.now(timezone.utc)
    sources = [rt.policy.source(n) for n in options.sources] if options.sources else list(rt.policy.sources)
    report = RunReport(run_id=new_run_id(started), dry_run=options.dry_run, as_of=options.now,
                       started_at=started, spool=Spool())
    try:
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
            _scan(rt, sources, ctx, report, options.progress)
        else:
            with rt.state.lock(report.run_id):
                _check_clock(rt, options)  # under the lock, so a rival's run in progress is not compared
                _enforce(rt, sources, ctx, report, options)
        report.erasure_requests = rt.state.requests()
        report.finished_at = datetime.now(timezone.utc)
        return report
    except BaseException:
        report.close()
        raise


def _check_clock(rt: Runtime, options: RunOptions) -> None:
    """Refuse a clock behind the last finished enforcing run's, unless now was given (--as-of)."""
    if options.as_of_given:
        return
    last = rt.state.last_run_time()
    if last is not None and options.now < last:
        raise ClockError(f"the clock says {options.now:%Y-%m-%d %H:%M:%S} UTC but an earlier run ran as of "
                         f"{last:%Y-%m-%d %H:%M:%S} UTC: the clock went back; fix it, or pass --as-of explicitly")


def _check(backend: Backend, source: Source, rt: Runtime) -> None:
    try:
        backend.check(source)
    except ConfigError as exc:
        raise exc.located(file=exc.file or str(rt.policy.path), prefix=None if exc.key else
                          f"sources[{source.index}]") from None


def _scan(rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
          progress: Progress | None) -> None:
    add = report.spool.add
    for source in sources:
        stats = report.sources[source.name]
        # The per-record loop: counters are local and folded into stats once per source
        # (attribute and enum-value lookups per record showed up in the profile).
        tally = dict.fromkeys(Action, 0)
        scanned = stats.scanned
        try:
            for record in rt.records(source):
                decision = decide(record, ctx)
                add(record, decision)
                tally[decision.action] += 1
                scanned += 1
                if progress is not None and scanned % 1000 == 0:
                    progress(source.name, scanned)
        finally:
            stats.scanned = scanned
            for action, count in tally.items():
                stats.decisions[action.value] += count
        if progress is not None:
            progress(source.name, stats.scanned)
    report.spool.commit()


def _limits(rt: Runtime, report: RunReport) -> str | None:
    limits = rt.policy.limits
    for name, stats in report.sources.items():
        planned = stats.decisions["delete"] + stats.decisions["anonymize"]
        if limits.max_deletions is not None and planned > limits.max_deletions:
            return (f"source {name!r} plans {planned} deletions, over limits.max_deletions "
                    f"= {limits.max_deletions}")
        if limits.max_fraction is not None and stats.scanned and planned / stats.scanned > limits.max_fraction:
            return (f"source {name!r} plans {planned} of {stats.scanned} records "
                    f"({planned / stats.scanned:.1%}), over limits.max_fraction = {limits.max_fraction:g}")
    return None


def _enforce(rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
             options: RunOptions) -> None:
    trail = AuditTrail(rt.policy.audit)
    rt.state.start_run(report.run_id, options.now, dry_run=False)
    trail.append([{"event": "run-start", "run_id": report.run_id, "as_of": options.now.isoformat(),
                   "sources": [s.name for s in sources], "tool": f"retention {_version()}", "by": actor()}])
    status = "failed"
    try:
        _scan(rt, sources, ctx, report, options.progress)
        if not options.sources:
            _recover(rt, report, trail)
        tripped = _limits(rt, report)
        if tripped:
            report.limit_tripped = f"{tripped}; nothing was deleted"
            status = report.status = "limit-tripped"
            return
        for source in sources:
            backend = rt.backend(source)
            if backend.can_push_down and source.match is None and source.category is not None:
                _push_down(rt, backend, source, report, trail, options.now)
                if report.limit_tripped:
                    status = report.status = "limit-tripped"
                    return
            else:
                _batches(rt, backend, source, report, trail, options.now)
        if not options.sources:
            _settle_requests(rt, report, options.now)
        status = "ok" if report.failed == 0 else "failed-deletions"
        report.status = status
    finally:
        head = trail.append([{"event": "run-end", "run_id": report.run_id, "status": status,
                              "summary": report.summary(), "outcomes": report.outcomes()}])
        rt.state.finish_run(report.run_id, status, head.seq, head.hash)


def _entry(event: str, run_id: str, record: Record, decision: Decision, outcome: Outcome | None = None
           ) -> dict[str, Any]:
    # Enum members go in as they are: they are str subclasses and encode as their values
    # (.value per record showed in the profile).
    return {"event": event, "run_id": run_id, "action": decision.action, "source": record.source,
            "location": printable(record.location), "location_hex": exact_hex(record.location),
            "version": record.version, "subject": record.subject, "category": record.category,
            "reason": decision.reason, "holds": list(decision.holds),
            "outcome": outcome.status if outcome else None,
            "error": outcome.error if outcome else None}


def _batches(rt: Runtime, backend: Backend, source: Source, report: RunReport, trail: AuditTrail,
             now: datetime) -> None:
    stats = report.sources[source.name]
    for batch in report.spool.due(source.name, max(1, backend.batch_size)):
        _still_ours(rt, report.run_id)
        ctx = rt.context(now)  # holds re-read: one placed mid-run protects the rest
        todo: dict[Action, list[Item]] = {Action.DELETE: [], Action.ANONYMIZE: []}
        for item in batch:
            decision = decide(item.record, ctx)
            if decision.action in DESTRUCTIVE:
                todo[decision.action].append(Item(item.idx, item.record, decision, None, None))
            else:
                report.spool.redecide(item.idx, decision)
                stats.decisions[item.decision.action.value] -= 1
                stats.decisions[decision.action.value] += 1
        for action, items in todo.items():
            if items:
                _execute(rt, backend, action, items, report, trail, ctx, stats)


def _execute(rt: Runtime, backend: Backend, action: Action, items: list[Item], report: RunReport,
             trail: AuditTrail, ctx: Context, stats: SourceStats) -> None:
    trail.append(_entry("intent", report.run_id, i.record, i.decision) for i in items)
    _checkpoint("after-intent")
    records = [i.record for i in items]
    rt.plugins.before_delete(records, ctx)
    by_key = {i.record.key: i for i in items}
    got: dict[tuple[str, str, str | None], Outcome] = {}
    error = "backend reported no outcome for this record"
    try:
        if action is Action.ANONYMIZE:
            if not backend.can_anonymize:
                raise RetentionError(f"backend {backend.name!r} cannot anonymize (category action: anonymize)")
            stream: Iterable[Outcome] = backend.anonymize(records)
        else:
            stream = backend.delete(records)
        for outcome in stream:
            if outcome.record.key in by_key:
                got.setdefault(outcome.record.key, outcome)
                _checkpoint("mid-batch")
    except Exception as exc:  # the rest of the batch gets `failed`, never silence
        error = f"{type(exc).__name__}: {exc}"
    outcomes = [got.get(i.record.key) or Outcome(i.record, Status.FAILED, error) for i in items]
    _checkpoint("after-backend")
    trail.append(_entry("outcome", report.run_id, o.record, by_key[o.record.key].decision, o) for o in outcomes)
    _checkpoint("after-outcome")
    rt.state.add_unsettled(report.run_id, [_entry("intent", report.run_id, o.record, by_key[o.record.key].decision)
                                           for o in outcomes if o.status is Status.FAILED])
    report.spool.set_outcomes((by_key[o.record.key].idx, o) for o in outcomes)
    for outcome in outcomes:
        stats.outcomes[outcome.status.value] += 1
    rt.plugins.after_delete(outcomes, ctx)


def _push_down(rt: Runtime, backend: Backend, source: Source, report: RunReport, trail: AuditTrail,
               now: datetime) -> None:
    """Set-based batches. Each batch is yielded before its transaction commits, journalled as
    intent, committed when the generator resumes, then journalled as outcome — so a crash
    leaves intents a later run can settle, never a deletion missing from the trail."""
    stats = report.sources[source.name]
    plan = PushdownPlan(cutoffs=cutoffs(source, rt.context(now)),
                        refresh=lambda: cutoffs(source, rt.context(now)))
    decision = Decision(plan.cutoffs.action, "set-based: due under the policy (holds re-read per batch)")

    def settle(batch: list[Outcome]) -> None:
        trail.append(_entry("outcome", report.run_id, o.record, decision, o) for o in batch)
        _checkpoint("after-outcome")
        rt.state.add_unsettled(report.run_id, [_entry("intent", report.run_id, o.record, decision)
                                               for o in batch if o.status is Status.FAILED])
        report.spool.record_pushed_batch(batch, decision)
        for o in batch:
            stats.outcomes[o.status.value] += 1
        rt.plugins.after_delete(batch, rt.context(now))

    # Rows that became due after the scan are deleted too; the safety limits still bound the total.
    allowed = _allowance(rt, stats.scanned)
    done = 0
    while True:
        restart = False
        pending: list[Outcome] | None = None
        stream = backend.push_down(source, plan)
        try:
            for batch in stream:
                if pending is not None:  # resuming the generator committed the previous batch
                    settle(pending)
                    pending = None
                if allowed is not None and done + len(batch) > allowed:
                    stream.close()  # the batch in hand is rolled back, never journalled
                    report.limit_tripped = (f"source {source.name!r} reached its limit of {allowed} deletions "
                                            "during set-based batches (more became due since the scan); "
                                            f"stopped after {done} deletions")
                    break
                _still_ours(rt, report.run_id)
                trail.append(_entry("intent", report.run_id, o.record, decision) for o in batch)
                _checkpoint("after-intent")
                # Holds are read once more just before the commit: one placed while the previous
                # batch was being settled must protect this one too.
                # (Only holds can change mid-run: the cutoffs are fixed by `now`.)
                fresh = plan.refresh()
                if fresh.held or any(o.record.subject in fresh.held_subjects for o in batch):
                    stream.close()  # rolled back; walk again with the new holds
                    trail.append({**_entry("outcome", report.run_id, o.record, decision, None),
                                  "outcome": "not-executed",
                                  "error": "a hold placed since the batch was selected; rolled back"} for o in batch)
                    restart = True
                    break
                done += len(batch)
                pending = batch
            if pending is not None:
                settle(pending)
        finally:
            stream.close()
        if not restart:
            break
    report.spool.commit()


def _still_ours(rt: Runtime, run_id: str) -> None:
    """Stop before the next batch if this run's lock was taken over (it looked dead: a paused VM)."""
    if not rt.state.holds_lock(run_id):
        raise LockedError(f"run {run_id} lost the state store's lock (another run took it over as stale); "
                          "stopped before the next batch")


def _allowance(rt: Runtime, scanned: int) -> int | None:
    """The most deletions the safety limits allow one source of *scanned* records."""
    limits = rt.policy.limits
    bounds = [limits.max_deletions] if limits.max_deletions is not None else []
    if limits.max_fraction is not None:
        bounds.append(int(limits.max_fraction * scanned))
    return min(bounds) if bounds else None


def _recover(rt: Runtime, report: RunReport, trail: AuditTrail) -> None:
    """Settle what earlier runs left open: intents of runs that died before journalling the
    outcome, and deletions reported ``failed`` that storage may have carried out anyway.

    This run's scan is the evidence: a record that was meant to be deleted and is no longer
    in storage was deleted (journalled now, so no deletion is missing from the trail); one
    still present was not, and this run decides it afresh.
    """
    crashed = set(rt.state.crashed_runs(report.run_id))
    dangling: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    if crashed and rt.policy.audit.exists():
        for entry in read_trail(rt.policy.audit):
            if entry.get("run_id") not in crashed or entry.get("location") is None:
                continue
            if entry.get("event") == "intent":
                dangling[_trail_key(entry)] = entry
            elif entry.get("event") == "outcome":
                dangling.pop(_trail_key(entry), None)
    failed = rt.state.unsettled()
    settled = [_settle(report, intent, "after a crash") for intent in dangling.values()]
    # A failure whose record is still there is already journalled; only a vanished one needs a line.
    settled += [_settle(report, intent, "after a failed delete") for _, intent in failed
                if not report.spool.contains(*_trail_key(intent))]
    trail.append(settled)
    rt.state.drop_unsettled([row_id for row_id, _ in failed])
    for run_id in crashed:
        rt.state.finish_run(run_id, "crashed")


def _trail_key(entry: dict[str, Any]) -> tuple[str, str, str | None]:
    return (entry["source"], from_entry(entry["location"], entry.get("location_hex")), entry.get("version"))


def _settle(report: RunReport, intent: dict[str, Any], why: str) -> dict[str, Any]:
    """The outcome line that closes *intent*, judged by whether this run's scan saw the record."""
    present = report.spool.contains(*_trail_key(intent))
    if intent["action"] == Action.ANONYMIZE.value:
        outcome = "unknown" if present else Status.ALREADY_GONE.value
    else:
        outcome = "not-executed" if present else Status.DELETED.value
    return {**{k: intent.get(k) for k in ("action", "source", "location", "location_hex", "version",
                                          "subject", "category", "reason", "holds")},
            "event": "outcome", "run_id": intent["run_id"], "outcome": outcome,
            "error": f"settled by run {report.run_id} {why}: record "
                     + ("still present" if present else "absent from storage")}


def _settle_requests(rt: Runtime, report: RunReport, now: datetime) -> None:
    for request in rt.state.requests():
        owed, held = report.spool.subject_status(request.subject)
        if owed == 0:
            rt.state.mark_requests(request.subject, report.run_id, datetime.now(timezone.utc), held)


def _version() -> str:
    from .plugins import _own_version

    return _own_version()


__all__ = ["RunOptions", "new_run_id", "run"]
