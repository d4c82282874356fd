"""The partitioned run in this process (memory backend, LocalExecutor): the same answers as the
plain run, the segments in the trail, and a dead deletion task settled by the next run.

No Dask here: these check the partitioned path itself, fast; test_dask.py runs it on a cluster."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from retention_core import audit
from retention_core.executors import LocalExecutor
from retention_core.model import Status
from retention_core.partitioned import PartitionedRun
from retention_core.plugins import load_plugins
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing import memory
from tests.support import memory_calls_policy, seed_calls

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
MEMORY = ("retention_core.testing.memory",)


def policy(folder: Path, store: str) -> Path:
    return memory_calls_policy(folder, store)


def seed(store: str) -> None:
    seed_calls(store, NOW)


def per_record(trail: Path) -> Counter[tuple[object, ...]]:
    """The trail's per-record lines, order and run aside (segments read through)."""
    out: Counter[tuple[object, ...]] = Counter()
    for entry in audit.records(trail):
        if entry.get("event") in ("intent", "outcome") and entry.get("location") is not None:
            out[(entry["event"], entry["source"], entry["location"], entry.get("action"), entry.get("outcome"),
                 entry.get("reason"))] += 1
    return out


def enforce(config: Path, distributed: bool):
    with Runtime.open(config, load_plugins(extra=[memory])) as rt:
        if not distributed:
            with run(rt, RunOptions(now=NOW, as_of_given=True)) as report:
                return report.status, dict(report.outcomes()), report.summary()
        with PartitionedRun(rt, LocalExecutor(), plugins=MEMORY) as spread:
            with run(rt, RunOptions(now=NOW, as_of_given=True, distributor=spread)) as report:
                return report.status, dict(report.outcomes()), report.summary()


def test_partitioned_run_gives_the_plain_runs_answers(tmp_path):
    stores = {kind: f"dist-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("plain", "parts")}
    results = {}
    for kind, store in stores.items():
        seed(store)
        results[kind] = enforce(policy(tmp_path / kind, store), kind == "parts")
    assert results["plain"] == results["parts"]
    assert results["parts"][1][Status.DELETED.value] == 4 * 4  # 30 (the cutoff itself), 40, 50, 60 days old
    assert sorted(memory.get_store(stores["plain"]).items) == sorted(memory.get_store(stores["parts"]).items)
    trails = {kind: tmp_path / kind / "audit.jsonl" for kind in stores}
    assert per_record(trails["plain"]) == per_record(trails["parts"])
    assert audit.verify(trails["parts"]).ok
    lines = list(audit.read(trails["parts"]))
    dispatched = [e for e in lines if e["event"] == "segments-dispatched"]
    segments = [e for e in lines if e["event"] == "segment"]
    assert len(dispatched) == 1 and len(dispatched[0]["segments"]) == 4 == len(segments)
    assert sum(e["outcomes"]["deleted"] for e in segments) == 16


def test_a_dead_deletion_task_is_settled_by_the_next_run(tmp_path, monkeypatch):
    store = f"dist-dead-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    from retention_core import partitioned, scheduler

    real = partitioned.delete_due
    calls = []

    def dies_in_the_second_partition(rt, source, report, journal, now, scanned_with):
        calls.append(1)
        if len(calls) == 2:  # journal the first batch's intent, delete, then "die" before the outcome
            def boom(*a, **k):
                raise SystemError("worker died")
            monkeypatch.setattr(journal, "outcome", boom)
        real(rt, source, report, journal, now, scanned_with)

    monkeypatch.setattr(partitioned, "delete_due", dies_in_the_second_partition)
    status, outcomes, _ = enforce(config, True)
    assert status == scheduler.RunStatus.FAILED_DELETIONS
    trail = tmp_path / "audit.jsonl"
    assert audit.verify(trail).ok
    monkeypatch.setattr(partitioned, "delete_due", real)
    status, outcomes, _ = enforce(config, True)
    assert status == "ok"
    rows = per_record(trail)
    # every intent has its outcome, and nothing due is left
    assert not [k for k in memory.get_store(store).items if int(k.rsplit("-", 1)[1]) >= 3]
    deleted = {loc for (ev, _, loc, _, out, _) in rows if ev == "outcome" and out == "deleted"}
    assert len(deleted) == 16
    intents = Counter(loc for (ev, _, loc, *_rest) in rows.elements() if ev == "intent")
    closing = Counter(loc for (ev, _, loc, _a, out, _r) in rows.elements() if ev == "outcome")
    assert set(intents) <= set(closing)


def test_a_dry_run_with_items_is_the_plain_dry_run(tmp_path):
    """Every decided record, with its decision, as the plain dry run has them (--report)."""
    store = f"dist-dry-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    items = {}
    with Runtime.open(config, load_plugins(extra=[memory])) as rt:
        for kind in ("plain", "parts"):
            with PartitionedRun(rt, LocalExecutor(), plugins=MEMORY) as spread:
                options = RunOptions(now=NOW, as_of_given=True, dry_run=True,
                                     distributor=spread if kind == "parts" else None)
                with run(rt, options) as report:
                    items[kind] = sorted((i.record.location, i.record.stamp, i.decision.action.value,
                                          i.decision.reason) for i in report.items())
    assert items["plain"] == items["parts"] and len(items["parts"]) == 28
    assert not (tmp_path / "audit.jsonl").exists()  # a dry run writes no trail, distributed or not


def test_a_partition_that_cannot_be_surveyed_stops_the_run_before_any_deletion(tmp_path, monkeypatch):
    store = f"dist-survey-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    real = memory.InMemoryBackend.scan_partition

    def broken(self, source, partition):
        if "carol" in partition.label:
            raise OSError("the disk behind carol/ went away")
        return real(self, source, partition)

    monkeypatch.setattr(memory.InMemoryBackend, "scan_partition", broken)
    from retention_core.errors import BackendError

    why = r"source 'calls', prefix carol/: the survey task failed .*nothing was deleted"
    with pytest.raises(BackendError, match=why):
        enforce(config, True)
    assert len(memory.get_store(store).items) == 28
    assert not [c for c in memory.get_store(store).calls if c[0] == "delete"]
    assert [e["status"] for e in audit.read(tmp_path / "audit.jsonl") if e["event"] == "run-end"] == ["failed"]


def test_a_deletion_task_dead_before_its_first_intent(tmp_path, monkeypatch):
    """Nothing of its partition was journalled or deleted: the run says so (failed-deletions,
    a segment-not-written line counting the due records not attempted); the next run deletes them."""
    store = f"dist-early-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    from retention_core import partitioned

    real = partitioned.delete_due

    def dies_at_once_for_bob(rt, source, report, journal, now, scanned_with):
        if "bob/" in rt.partition.label:
            raise MemoryError("worker out of memory")
        real(rt, source, report, journal, now, scanned_with)

    monkeypatch.setattr(partitioned, "delete_due", dies_at_once_for_bob)
    status, outcomes, _ = enforce(config, True)
    assert status == "failed-deletions" and outcomes["failed"] == 4 and outcomes["deleted"] == 12
    [line] = [e for e in audit.read(tmp_path / "audit.jsonl") if e["event"] == "segment-not-written"]
    assert line["partition"] == "prefix bob/" and line["outcomes"] == {"not-attempted": 4}
    assert audit.verify(tmp_path / "audit.jsonl").ok
    monkeypatch.setattr(partitioned, "delete_due", real)
    assert enforce(config, True)[:2] == ("ok", {**outcomes, "failed": 0, "deleted": 4})
    assert not [k for k in memory.get_store(store).items if int(k.rsplit("-", 1)[1]) >= 3]


def test_an_erasure_request_is_done_by_a_partitioned_run_as_by_a_plain_one(tmp_path):
    """The outcomes of the requested subject's records come back from the deletion tasks to the
    run's spool, so the request is proven done (or not) exactly as in a plain run."""
    done = {}
    for kind in ("plain", "parts"):
        store = f"dist-req-{kind}-{uuid.uuid4().hex[:8]}"
        seed(store)
        config = policy(tmp_path / kind, store)
        with Runtime.open(config, load_plugins(extra=[memory])) as rt:
            rt.state.add_request("bob", "acme", NOW - timedelta(days=2))
        status, outcomes, _ = enforce(config, kind == "parts")
        with Runtime.open(config, load_plugins(extra=[memory])) as rt:
            [request] = rt.state.requests()
        done[kind] = (status, outcomes, request.done_at is not None, sorted(memory.get_store(store).items))
    assert done["plain"] == done["parts"]
    assert done["parts"][2], "every record of bob is gone: the request is done"
    assert not [k for k in done["parts"][3] if k.startswith("bob/")]


class RetryingExecutor(LocalExecutor):
    """Runs every task a second time after it finished, as Dask does when it believes the worker
    of a finished task died (a cluster with ``allowed-failures`` above 0), and reports the second."""

    def map(self, fn, jobs):
        first = super().map(fn, jobs)
        second = super().map(fn, jobs)
        return [b if isinstance(a, BaseException) or fn.__name__ == "delete_partition" else a
                for a, b in zip(first, second, strict=True)]


def test_a_deletion_task_run_twice_deletes_and_journals_nothing_the_second_time(tmp_path):
    store = f"dist-retry-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    with Runtime.open(config, load_plugins(extra=[memory])) as rt:
        with PartitionedRun(rt, RetryingExecutor(), plugins=MEMORY) as spread:
            with run(rt, RunOptions(now=NOW, as_of_given=True, distributor=spread)) as report:
                outcomes = dict(report.outcomes())
                warnings = list(report.warnings)
    trail = tmp_path / "audit.jsonl"
    assert audit.verify(trail).ok
    journalled = per_record(trail)
    intents = [k for k in journalled if k[0] == "intent"]
    assert len(intents) == 16 and all(journalled[k] == 1 for k in intents)  # each record journalled once
    assert outcomes.get(Status.DELETED.value) == 16 and not outcomes.get(Status.ALREADY_GONE.value)
    assert len(memory.get_store(store).items) == 4 * 3
    assert any("already ran once" in w for w in warnings)
