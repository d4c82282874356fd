"""A run's two per-record halves split by partition and executed elsewhere (``--executor dask``).

:func:`~retention_core.scheduler.run` keeps everything that needs one process — the lock, the
clock, recovery, the safety limits over the *global* totals, push-down sources, erasure
requests — and hands this module (a :class:`~retention_core.scheduler.Distributor`) the two
halves that scale with the number of records:

* **survey**: one task per partition (:meth:`~retention_core.Backend.partitions`) lists it,
  decides every record and writes what the run keeps (due items with their stamps, records of
  subjects with erasure requests, records earlier runs left open) to a plan file in a shared
  work dir; it returns the partition's counters, which are added up here. The union of the
  partitions is the whole source (the partition contract), so recovery reads this survey as a
  complete listing, exactly as it reads a local scan.
* **delete**: after the limits, one task per partition with due items runs the scheduler's own
  per-batch code (:func:`~retention_core.scheduler.delete_due`: run lock checked, hold fence
  through the shared state store, holds re-read, intent, backend call, outcome) against its own
  hash-chained segment ``<trail>.segments/<run_id>/<n>.jsonl``. The main trail names every
  segment before dispatch (``segments-dispatched``) and, after, records one ``segment`` line per
  partition (file, lines, head, SHA-256, outcomes), so ``audit verify`` checks the whole tree.

A deletion task whose worker dies leaves intents without outcomes in its segment: the run closes
them there as ``unknown`` (the worker's deletions are not observed) and carries them in the state
store, so the next run settles them from its own complete listing — as it settles the carried
intents of a local crash. If the main process itself dies, the next run reads the dispatched
segments of the crashed run (:class:`~retention_core.journal.OpenIntents`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .audit import INTENT_FIELDS, AuditTrail, load_key, records
from .backend import Partition
from .errors import BackendError, ConfigError, LockedError, RetentionError
from .executors import Executor, LocalExecutor
from .journal import Journal, settlement
from .model import Action, Context, Decision, ErasureRequest, Hold, Outcome, Record, Source, Status
from .plugins import load_plugins
from .policy import load_policy
from .report import PROBLEM_SAMPLES, RunReport, SourceStats
from .runtime import Runtime, classify
from .scheduler import DESTRUCTIVE, KeepPredicate, delete_due, scan_into
from .spool import Spool

#: A run's segments and work files: ``<trail>.segments/<run_id>/`` next to the trail.
SEGMENTS_SUFFIX = ".segments"
#: What a dead deletion task's ``segment`` line counts besides outcomes: intents it left
#: without an outcome, and due items it never journalled.
UNKNOWN, NOT_ATTEMPTED = "unknown", "not-attempted"
#: Items per pickled chunk of a plan or outcomes file (bounded memory on both sides).
CHUNK = 1000


@dataclass(frozen=True)
class Setup:
    """What a worker needs to open the policy as the run did."""

    config: str
    run_id: str
    now: datetime
    #: Plugin modules loaded besides the entry points (tests: ``retention_core.testing.memory``).
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class SurveyJob:
    setup: Setup
    source: str
    partition: Partition
    keep: KeepPredicate
    plan: str


@dataclass
class Surveyed:
    """One partition's survey: its counters, how many items are due, and the holds and erasure
    requests its decisions were made under (its deletion task re-decides when they differ)."""

    partition: Partition
    plan: str
    stats: SourceStats
    due: int
    holds: tuple[Hold, ...]
    requests: dict[str, ErasureRequest]


@dataclass(frozen=True)
class DeleteJob:
    setup: Setup
    source: str
    surveyed: Surveyed
    segment: str
    outcomes: str
    places: dict[str, str | None]


@dataclass
class Deleted:
    """One partition's deletions: outcome counts, decisions changed by holds re-read, holds."""

    outcomes: dict[str, int]
    decisions: dict[str, int]
    protected: dict[str, int]


class PartitionRuntime(Runtime):
    """A runtime whose sources list one partition only (what a worker's task sees)."""

    partition: Partition

    def records(self, source: Source, on_problem: Any = None) -> Iterator[Record]:
        return classify(self.backend(source).scan_partition(source, self.partition), source, on_problem)


def _open(setup: Setup, partition: Partition) -> PartitionRuntime:
    extra = [importlib.import_module(name) for name in setup.plugins]
    rt = PartitionRuntime(load_policy(setup.config), load_plugins(extra=extra))
    rt.partition = partition
    return rt


# -- the tasks (run on the workers) -----------------------------------------------------------------
def survey_partition(job: SurveyJob) -> Surveyed:
    """List and decide one partition; write what the run keeps to ``job.plan``."""
    with _open(job.setup, job.partition) as rt:
        source = rt.policy.source(job.source)
        ctx = rt.context(job.setup.now)
        with _report(job.setup) as report:
            stats = report.sources[source.name] = SourceStats()
            scan_into(rt, [source], ctx, report, job.keep)
            due = write_chunks(Path(job.plan), ((i.record, i.decision) for i in report.items()),
                               count=lambda pair: pair[1].action in DESTRUCTIVE)
        return Surveyed(job.partition, job.plan, stats, due, ctx.holds, dict(ctx.requests))


def delete_partition(job: DeleteJob) -> Deleted:
    """Delete one partition's due items with the scheduler's per-batch code, into its segment.

    The task claims its segment first (created exclusively): a task Dask runs a second time —
    a retry after its worker was lost, on a cluster whose ``allowed-failures`` is not 0, or a
    worker thought dead that is still running — finds the claim and deletes nothing, so one
    partition's records are never deleted by two tasks, nor journalled twice."""
    surveyed = job.surveyed
    claim_segment(Path(job.segment), surveyed.partition.label)
    with _open(job.setup, surveyed.partition) as rt:
        source = rt.policy.source(job.source)
        with _report(job.setup) as report:
            stats = report.sources[source.name] = SourceStats()
            for record, decision in read_chunks(Path(surveyed.plan)):
                if decision.action in DESTRUCTIVE:
                    report.spool.add(record, decision)
                    stats.decisions[decision.action.value] += 1
            before = dict(stats.decisions)
            scanned_with = Context(job.setup.now, rt.policy.categories, rt.subjects, holds=surveyed.holds,
                                   requests=surveyed.requests)
            journal = Journal(AuditTrail(Path(job.segment), key=load_key()), job.setup.run_id, places=job.places)
            delete_due(rt, source, report, journal, job.setup.now, scanned_with)
            write_chunks(Path(job.outcomes), ((i.decision.action.value, Outcome(i.record, Status(i.outcome), i.error))
                                              for i in report.items() if i.outcome is not None))
        return Deleted(dict(stats.outcomes), {k: v - before[k] for k, v in stats.decisions.items()},
                       dict(stats.protected))


def claim_segment(segment: Path, label: str) -> None:
    """Create *segment* empty and exclusively; BackendError if a task already claimed it."""
    segment.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
    except FileExistsError:
        raise BackendError(f"{label}: its deletion task already ran once (segment {segment} exists); not "
                           "running it again — the run settles what the first attempt left open") from None


def _written(segment: Path) -> bool:
    """Whether a deletion task wrote anything in its segment (beyond claiming it)."""
    try:
        return segment.stat().st_size > 0
    except FileNotFoundError:
        return False


def _report(setup: Setup) -> RunReport:
    return RunReport(run_id=setup.run_id, dry_run=False, as_of=setup.now, started_at=setup.now, spool=Spool(),
                     itemized=True)


# -- the main process's side ---------------------------------------------------------------------------
class PartitionedRun:
    """A :class:`~retention_core.scheduler.Distributor`: give it as ``RunOptions.distributor``.

    Use as a context manager: the work dir (plan and outcome files, which name records) is
    removed at the end; the segments stay, next to the trail."""

    def __init__(self, rt: Runtime, executor: Executor, plugins: Sequence[str] = ()) -> None:
        if not isinstance(executor, LocalExecutor):
            require_shared_state(rt)
        self.rt = rt
        self.executor = executor
        self.plugins = tuple(plugins)
        self.surveyed: dict[str, list[Surveyed]] = {}
        self.segments = 0
        self.run_id: str | None = None
        self._work: Path | None = None

    def __enter__(self) -> PartitionedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)

    def close(self) -> None:
        """Remove the work dir and stop the executor (a LocalCluster it started)."""
        try:
            self.__exit__()
        finally:
            self.executor.close()

    def _dirs(self, run_id: str) -> tuple[Path, Path]:
        """(the run's segment dir, its work dir), both on the trail's (shared) storage."""
        trail = self.rt.policy.audit
        segments = trail.parent / (trail.name + SEGMENTS_SUFFIX) / run_id
        if self._work is None or self.run_id != run_id:
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)
            self._work = trail.parent / (trail.name + SEGMENTS_SUFFIX) / f"{run_id}.work"
            self.run_id = run_id
        self._work.mkdir(parents=True, exist_ok=True)
        return segments, self._work

    def _setup(self, rt: Runtime, report: RunReport) -> Setup:
        return Setup(str(Path(rt.policy.path).resolve()), report.run_id, report.as_of, self.plugins)

    def scan(self, rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
             keep: KeepPredicate) -> None:
        setup = self._setup(rt, report)
        self.surveyed, self.segments = {}, 0  # one run's partitions
        _, work = self._dirs(report.run_id)
        jobs: list[SurveyJob] = []
        for source in sources:
            try:
                parts = rt.backend(source).partitions(source)
            except ConfigError as exc:
                raise exc.located(file=exc.file or str(rt.policy.path)) from None
            jobs += [SurveyJob(setup, source.name, part, keep, str(work / f"plan-{len(jobs) + i}.pickle"))
                     for i, part in enumerate(parts)]
        results = self.executor.map(survey_partition, jobs)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, RetentionError):
                    raise result
                raise BackendError(f"source {job.source!r}, {job.partition.label}: the survey task failed "
                                   f"({type(result).__name__}: {result}); nothing was deleted")
            merge_stats(report.sources[job.source], result.stats)
            for record, decision in read_chunks(Path(result.plan)):
                report.spool.add(record, decision)
            self.surveyed.setdefault(job.source, []).append(result)
        report.spool.commit()

    def delete(self, rt: Runtime, source: Source, report: RunReport, journal: Journal, now: datetime,
               scanned_with: Context) -> None:
        todo = [s for s in self.surveyed.get(source.name, []) if s.due]
        if not todo:
            return
        segments, work = self._dirs(report.run_id)
        setup = self._setup(rt, report)
        jobs = []
        for surveyed in todo:
            self.segments += 1
            jobs.append(DeleteJob(setup, source.name, surveyed, str(segments / f"{self.segments}.jsonl"),
                                  str(work / f"outcomes-{self.segments}.pickle"), dict(journal.places)))
        base = rt.policy.audit.parent
        journal.event("segments-dispatched", source=source.name,
                      segments=[{"file": _rel(job.segment, base), "partition": job.surveyed.partition.label}
                                for job in jobs])
        stats = report.sources[source.name]
        results = self.executor.map(delete_partition, jobs)
        for job, result in zip(jobs, results, strict=True):
            label = job.surveyed.partition.label
            if isinstance(result, BaseException):
                counts = self._abandon(rt, report, job, f"{type(result).__name__}: {result}")
                report.warnings.append(
                    f"source {source.name!r}, {label}: the deletion task failed ({type(result).__name__}: "
                    f"{result}); {counts.get(UNKNOWN, 0)} deletion(s) left unknown are settled by the next run, "
                    f"{counts.get(NOT_ATTEMPTED, 0)} due record(s) not attempted are decided again by it")
            else:
                counts = dict(result.outcomes)
                for name, change in result.decisions.items():
                    stats.decisions[name] += change
                stats.protected.update(result.protected)
                for action, outcomes in _grouped(read_chunks(Path(job.outcomes))):
                    report.spool.record_pushed_batch(outcomes, Decision(Action(action), "due under the policy"))
            for status, count in counts.items():  # unknown, not attempted: not done, so failed in the counts
                stats.outcomes[Status.FAILED.value if status in (UNKNOWN, NOT_ATTEMPTED) else status] += count
            segment = Path(job.segment)
            if _written(segment):
                journal.trail.append([{"event": "segment", "run_id": report.run_id, "source": source.name,
                                       "partition": label, "segment": segment_ref(segment, base),
                                       "outcomes": {k: v for k, v in counts.items() if v}}])
            elif isinstance(result, BaseException):  # it died before its first intent: nothing of it deleted
                journal.trail.append([{"event": "segment-not-written", "run_id": report.run_id,
                                       "source": source.name, "partition": label,
                                       "file": _rel(job.segment, base), "outcomes": counts}])
        report.spool.commit()
        lost = next((r for r in results if isinstance(r, LockedError)), None)
        if lost is not None:  # a worker found the run's lock taken over: stop, as a local run does
            raise lost

    def _abandon(self, rt: Runtime, report: RunReport, job: DeleteJob, why: str) -> dict[str, int]:
        """Close what a dead deletion task left open in its segment: each intent without an
        outcome gets ``unknown`` there (nothing observed it) and is carried in the state store
        for the next run to settle from its listing. Returns the segment's outcome counts, with
        ``unknown`` (those intents) and ``not-attempted`` (due items it never journalled)."""
        segment = Path(job.segment)
        if not _written(segment):
            return {NOT_ATTEMPTED: job.surveyed.due}
        trail = AuditTrail(segment, key=load_key())
        trail.append([{"event": "segment-abandoned", "run_id": report.run_id, "source": job.source,
                       "reason": f"the deletion task failed: {why}"}])  # also cuts a torn last line
        open_intents: dict[tuple[Any, ...], dict[str, Any]] = {}
        counts: dict[str, int] = {}
        journalled = 0
        for entry in records(segment):
            key = (entry.get("location"), entry.get("location_hex"), entry.get("version"))
            if entry.get("event") == "intent":
                journalled += 1
                open_intents[key] = {k: entry.get(k) for k in ("event", "run_id", "action", "source",
                                                               *INTENT_FIELDS, "where")}
            elif entry.get("event") == "outcome" and key in open_intents:
                del open_intents[key]
                counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        carried = list(open_intents.values())
        Journal(trail, report.run_id).settle(
            [settlement(intent, report.run_id, "after its worker died", observed=False, present=False)
             for intent in carried])
        rt.state.add_unsettled(report.run_id, carried)
        if carried:
            counts[UNKNOWN] = len(carried)
        if job.surveyed.due > journalled:
            counts[NOT_ATTEMPTED] = job.surveyed.due - journalled
        return counts


def require_shared_state(rt: Runtime) -> None:
    """Refuse a state store other processes cannot share: holds, erasure requests, the run lock
    and the hold fence must be the same rows for every worker (PostgreSQL)."""
    if rt.state.engine.url.get_backend_name() == "sqlite":
        raise ConfigError(f"a distributed run needs a state store its workers share (PostgreSQL), not SQLite "
                          f"({rt.policy.state}); see docs/scaling.md", file=str(rt.policy.path), key="state")


def merge_stats(into: SourceStats, part: SourceStats) -> None:
    """Add one partition's counters to the source's."""
    into.scanned += part.scanned
    for name, count in part.decisions.items():
        into.decisions[name] += count
    for name, count in part.outcomes.items():
        into.outcomes[name] += count
    into.protected.update(part.protected)
    into.problems += part.problems
    into.problem_samples += part.problem_samples[:max(0, PROBLEM_SAMPLES - len(into.problem_samples))]
    into.problem_subjects |= part.problem_subjects
    into.unknown_subjects += part.unknown_subjects
    for name in part.unknown_subject_samples:
        if len(into.unknown_subject_samples) < 3 and name not in into.unknown_subject_samples:
            into.unknown_subject_samples.append(name)


def segment_ref(segment: Path, base: Path) -> dict[str, Any]:
    """A ``segment`` line's reference (interfaces B): file relative to the trail's directory,
    its line count and head hash, its SHA-256."""
    head = AuditTrail(segment).head()
    digest = hashlib.sha256()
    with segment.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"file": _rel(str(segment), base), "lines": head.seq, "head": head.hash, "sha256": digest.hexdigest()}


def _rel(path: str, base: Path) -> str:
    return str(Path(path).relative_to(base))


def write_chunks(path: Path, items: Iterable[Any], count: Any = None) -> int:
    """Pickle *items* to *path* in chunks; return how many *count* approved (all without it)."""
    counted = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        chunk: list[Any] = []
        for item in items:
            chunk.append(item)
            counted += 1 if count is None or count(item) else 0
            if len(chunk) >= CHUNK:
                pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
                chunk = []
        if chunk:
            pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return counted


def read_chunks(path: Path) -> Iterator[Any]:
    """The items :func:`write_chunks` wrote (files this run wrote itself, in its work dir)."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        while True:
            try:
                chunk = pickle.load(handle)  # noqa: S301 - our own work file, never input
            except EOFError:
                return
            yield from chunk


def _grouped(pairs: Iterable[tuple[str, Outcome]]) -> Iterator[tuple[str, list[Outcome]]]:
    """(action, outcomes) runs of at most CHUNK outcomes each."""
    action: str | None = None
    batch: list[Outcome] = []
    for name, outcome in pairs:
        if (name != action or len(batch) >= CHUNK) and batch:
            yield action, batch  # type: ignore[misc]
            batch = []
        action = name
        batch.append(outcome)
    if batch and action is not None:
        yield action, batch


__all__ = ["SEGMENTS_SUFFIX", "DeleteJob", "Deleted", "PartitionRuntime", "PartitionedRun", "Setup", "SurveyJob",
           "Surveyed", "claim_segment", "delete_partition", "merge_stats", "read_chunks", "require_shared_state", "segment_ref",
           "survey_partition", "write_chunks"]
