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

import fcntl
import hashlib
import hmac
import importlib
import logging
import os
import pickle
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from . import logs
from .audit import INTENT_FIELDS, SEGMENTS_SUFFIX, AuditTrail, load_key, records, segment_ref
from .backend import Partition
from .errors import BackendError, ConfigError, LockedError, RetentionError
from .executors import Executor, LocalExecutor
from .journal import Journal, settlement
from .model import Action, Context, Decision, ErasureRequest, Hold, Outcome, Record, Source, Status
from .plugins import load_plugins
from .policy import load_policy
from .report import PROBLEM_SAMPLES, RunReport, SourceStats
from .runtime import Runtime, classify
from .scheduler import DESTRUCTIVE, KeepPredicate, checkpoint, delete_due, scan_into
from .spool import Spool

#: What a dead deletion task's ``segment`` line counts besides outcomes: intents it left
#: without an outcome, and due items it never journalled.
UNKNOWN, NOT_ATTEMPTED = "unknown", "not-attempted"
#: A run's work dir: ``<trail>.segments/<run_id>.work/``, with its owner lock file in it.
WORK_SUFFIX, OWNER = ".work", ".owner"
#: A work dir without an owner lock is left alone this long (its run may have just made it).
STALE_UNOWNED = 300
#: Items per pickled chunk of a plan or outcomes file (bounded memory on both sides).
CHUNK = 1000


@dataclass(frozen=True)
class Setup:
    """What a worker needs to open the policy as the run did."""

    config: str
    run_id: str
    now: datetime
    #: The run's work-file key (:func:`new_secret`): travels in the job, never on disk.
    secret: bytes = field(repr=False)
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
            due = write_chunks(Path(job.plan), ((i.record, i.decision) for i in report.items()), job.setup.secret,
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
            for record, decision in read_chunks(Path(surveyed.plan), job.setup.secret):
                if decision.action in DESTRUCTIVE:
                    report.spool.add(record, decision)
                    stats.decisions[decision.action.value] += 1
            before = dict(stats.decisions)
            scanned_with = Context(job.setup.now, rt.policy.categories, rt.subjects, holds=surveyed.holds,
                                   requests=surveyed.requests)
            journal = Journal(AuditTrail(Path(job.segment), key=load_key()), job.setup.run_id, places=job.places)
            delete_due(rt, source, report, journal, job.setup.now, scanned_with)
            write_chunks(Path(job.outcomes), ((i.decision.action.value, Outcome(i.record, Status(i.outcome), i.error))
                                              for i in report.items() if i.outcome is not None), job.setup.secret)
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
        self._secret: bytes | None = None
        self._owner: int | None = None  # the work dir's held ``.owner`` lock (fd)

    def __enter__(self) -> PartitionedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_work()

    def _drop_work(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        if self._owner is not None:
            os.close(self._owner)
        self._work = self._owner = self._secret = None

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
            self._drop_work()
            work = trail.parent / (trail.name + SEGMENTS_SUFFIX) / f"{run_id}{WORK_SUFFIX}"
            work.parent.mkdir(parents=True, exist_ok=True)
            try:
                work.mkdir(mode=0o700)
            except FileExistsError:
                raise BackendError(f"work dir {work} already exists (a run's work dir is made once, by that "
                                   "run); nothing was deleted") from None
            self._owner = _hold(work / OWNER)
            self._work, self.run_id, self._secret = work, run_id, new_secret()
        return segments, self._work

    def _setup(self, rt: Runtime, report: RunReport) -> Setup:
        if self._secret is None:
            raise RuntimeError("a partitioned run's work dir is made before its jobs")
        return Setup(str(Path(rt.policy.path).resolve()), report.run_id, report.as_of, self._secret, self.plugins)

    def scan(self, rt: Runtime, sources: Sequence[Source], ctx: Context, report: RunReport,
             keep: KeepPredicate) -> None:
        self.surveyed, self.segments = {}, 0  # one run's partitions
        if rt.state.holds_lock(report.run_id):  # an enforcing run: no other enforcing run is running
            remove_stale_work(rt.policy.audit, report.run_id)
        _, work = self._dirs(report.run_id)
        setup = self._setup(rt, report)
        jobs: list[SurveyJob] = []
        for source in sources:
            try:
                parts = rt.backend(source).partitions(source)
            except ConfigError as exc:
                raise exc.located(file=exc.file or str(rt.policy.path)) from None
            jobs += [SurveyJob(setup, source.name, part, keep, str(work / f"plan-{len(jobs) + i}.work"))
                     for i, part in enumerate(parts)]
        results = self.executor.map(survey_partition, jobs)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, RetentionError):
                    raise result
                raise BackendError(f"source {job.source!r}, {job.partition.label}: the survey task failed "
                                   f"({type(result).__name__}: {result}); nothing was deleted")
            merge_stats(report.sources[job.source], result.stats)
            for record, decision in read_chunks(Path(job.plan), setup.secret):
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
                                  str(work / f"outcomes-{self.segments}.work"), dict(journal.places)))
        base = rt.policy.audit.parent
        journal.event("segments-dispatched", source=source.name,
                      segments=[{"file": _rel(job.segment, base), "partition": job.surveyed.partition.label}
                                for job in jobs])
        stats = report.sources[source.name]
        results = self.executor.map(delete_partition, jobs)
        checkpoint("after-partitions")  # the workers journalled in their segments; the main trail not yet
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
                try:
                    done = read_chunks(Path(job.outcomes), setup.secret)
                except BackendError as exc:  # the segment holds the evidence; only the report's items lack them
                    report.warnings.append(f"source {source.name!r}, {label}: {exc}; its outcomes are counted "
                                           "and journalled in its segment, but not listed in this report")
                else:
                    for action, outcomes in _grouped(done):
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


def _hold(owner: Path) -> int:
    """Create *owner* and lock it for as long as this process lives (an flock: the kernel
    drops it when the process dies, so a work dir whose owner lock can be taken is a dead run's)."""
    fd = os.open(owner, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0), 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_stale_work(trail: Path, run_id: str) -> list[Path]:
    """Remove the work dirs (plans and outcomes: records' keys and subjects) that runs which are
    not running left next to *trail* — a main process killed mid-run; logged. Called by an
    enforcing run under the state store's lock. A work dir whose owner lock is held (a dry run
    in progress) stays, as does one without an owner lock younger than :data:`STALE_UNOWNED`
    seconds (just made). Segments are evidence and are never touched."""
    removed: list[Path] = []
    folder = trail.parent / (trail.name + SEGMENTS_SUFFIX)
    try:
        candidates = sorted(folder.glob(f"*{WORK_SUFFIX}"))
    except OSError:
        return removed
    for work in candidates:
        if work.name == f"{run_id}{WORK_SUFFIX}" or work.is_symlink() or not work.is_dir():
            continue
        try:
            fd = os.open(work / OWNER, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            fd = None
            if time.time() - work.stat().st_mtime < STALE_UNOWNED:
                continue
        except OSError:
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its run is running
            shutil.rmtree(work)
        except OSError as exc:
            logs.event("stale-work", f"could not remove the work dir {work} a crashed run left: {exc}",
                       level=logging.WARNING, path=str(work), error=str(exc))
            continue
        finally:
            if fd is not None:
                os.close(fd)
        removed.append(work)
        logs.event("stale-work-removed", f"removed the work dir {work} a run that is not running left (its plans "
                   "name records; its segments stay)", level=logging.WARNING, path=str(work))
    return removed


def require_shared_state(rt: Runtime) -> None:
    """Refuse a state store other processes cannot share: holds, erasure requests, the run lock
    and the hold fence must be the same rows for every worker (PostgreSQL)."""
    if rt.state.dialect == "sqlite":
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


def _rel(path: str, base: Path) -> str:
    return str(Path(path).relative_to(base))


#: Work files: a header, then frames ``length (8 bytes) ‖ HMAC-SHA256 (32) ‖ payload``; the
#: last frame's payload is the chunk count. Each MAC covers the file's name, the frame's index
#: and kind and its payload, so a frame changed, dropped, reordered, moved from another work
#: file or a truncated file is refused before anything of it is unpickled.
WORK_MAGIC = b"retention-work/1\n"
_CHUNK_FRAME, _END_FRAME = b"C", b"E"
_MAC_SIZE = hashlib.sha256().digest_size
#: No frame we write comes near this; a larger length is a forged one (refused before reading it).
MAX_FRAME = 1 << 30


def new_secret() -> bytes:
    """A run's work-file key: made by the main process, handed to its tasks inside their jobs,
    never written to disk."""
    return secrets.token_bytes(32)


def _mac(secret: bytes, path: Path, index: int, kind: bytes, payload: bytes) -> bytes:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    name = path.name.encode()
    mac.update(len(name).to_bytes(4, "big") + name + index.to_bytes(8, "big") + kind)
    mac.update(payload)
    return mac.digest()


def _create_private(path: Path) -> BinaryIO:
    """*path* created exclusively, readable and writable by this user only (it names records)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise BackendError(f"work file {path} already exists (a work file is written once, by this run); "
                           "nothing was deleted") from None
    return os.fdopen(fd, "wb")


def write_chunks(path: Path, items: Iterable[Any], secret: bytes, count: Any = None) -> int:
    """Pickle *items* to *path* (created exclusively, 0600) in authenticated chunks; return how
    many *count* approved (all without it)."""
    counted = index = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with _create_private(path) as handle:
        handle.write(WORK_MAGIC)

        def frame(kind: bytes, payload: bytes) -> None:
            nonlocal index
            handle.write(len(payload).to_bytes(8, "big") + _mac(secret, path, index, kind, payload) + payload)
            index += 1

        chunk: list[Any] = []
        for item in items:
            chunk.append(item)
            counted += 1 if count is None or count(item) else 0
            if len(chunk) >= CHUNK:
                frame(_CHUNK_FRAME, pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
                chunk = []
        if chunk:
            frame(_CHUNK_FRAME, pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
        frame(_END_FRAME, index.to_bytes(8, "big"))
    return counted


def read_chunks(path: Path, secret: bytes) -> Iterator[Any]:
    """The items :func:`write_chunks` wrote to *path* with *secret*.

    The whole file is authenticated first (a one-line BackendError naming it if any frame is
    wrong, missing or extra, before this returns), then read again through the same open file
    — each frame checked once more before it is unpickled — so nothing but what this run's
    tasks wrote is ever unpickled, and nothing of a bad file is acted on."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise BackendError(f"work file {path} is missing; nothing was deleted from it") from None
    try:
        for _ in _frames(handle, path, secret):
            pass
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return _items(handle, path, secret)


def _items(handle: BinaryIO, path: Path, secret: bytes) -> Iterator[Any]:
    with handle:
        for payload in _frames(handle, path, secret):
            yield from pickle.loads(payload)  # noqa: S301 - authenticated above: this run's own chunk


def _frames(handle: BinaryIO, path: Path, secret: bytes) -> Iterator[bytes]:
    """The chunk payloads of *handle*, each authenticated; BackendError at the first bad frame."""
    def bad(why: str) -> BackendError:
        return BackendError(f"work file {path} is not what this run wrote ({why}): refused unread; "
                            "nothing was deleted from it")

    if handle.read(len(WORK_MAGIC)) != WORK_MAGIC:
        raise bad("no work-file header")
    index = 0
    while True:
        head = handle.read(8 + _MAC_SIZE)
        if len(head) < 8 + _MAC_SIZE:
            raise bad(f"it ends before its last frame, at frame {index}")
        size = int.from_bytes(head[:8], "big")
        if size > MAX_FRAME:
            raise bad(f"frame {index} is {size} bytes long")
        payload = handle.read(size)
        if len(payload) < size:
            raise bad(f"frame {index} is cut short")
        if hmac.compare_digest(head[8:], _mac(secret, path, index, _CHUNK_FRAME, payload)):
            yield payload
        elif hmac.compare_digest(head[8:], _mac(secret, path, index, _END_FRAME, payload)):
            if int.from_bytes(payload, "big") != index:
                raise bad(f"its last frame counts {int.from_bytes(payload, 'big')} chunks, not {index}")
            if handle.read(1):
                raise bad("bytes after its last frame")
            return
        else:
            raise bad(f"frame {index} fails its authentication")
        index += 1


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
           "Surveyed", "claim_segment", "delete_partition", "merge_stats", "new_secret", "read_chunks",
           "remove_stale_work", "require_shared_state", "survey_partition", "write_chunks"]
