"""A partitioned run's work files (plans and outcomes) are authenticated before anything of
them is unpickled, and the work dirs a killed run left are removed by the next enforcing run.

Adversarial finding F00: anyone able to write next to the trail replaced ``plan-N.pickle``
with a pickle that ran ``os.system`` in the run's process (or rewrote what was deleted).
F10: a killed run's plans (records' keys and subjects) stayed on disk for good."""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import stat
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import audit
from retention_core.errors import BackendError
from retention_core.executors import LocalExecutor
from retention_core.partitioned import (
    OWNER,
    SEGMENTS_SUFFIX,
    WORK_SUFFIX,
    PartitionedRun,
    Setup,
    delete_partition,
    new_secret,
    read_chunks,
    remove_stale_work,
    survey_partition,
    write_chunks,
)
from retention_core.plugins import load_plugins
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing import memory
from tests.support import memory_calls_policy, seed_calls

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
MEMORY = ("retention_core.testing.memory",)


class Payload:
    """A pickle that runs code when loaded: it writes *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def evil(marker: Path) -> bytes:
    return pickle.dumps([Payload(marker)])


# -- the file format ---------------------------------------------------------------------------------
def test_work_files_round_trip_private_and_exclusive(tmp_path: Path) -> None:
    secret, path = new_secret(), tmp_path / "plan-0.work"
    assert write_chunks(path, range(2500), secret, count=lambda i: i % 2 == 0) == 1250
    assert list(read_chunks(path, secret)) == list(range(2500))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(BackendError, match="plan-0.work already exists"):
        write_chunks(path, [1], secret)
    empty = tmp_path / "outcomes-1.work"
    write_chunks(empty, [], secret)
    assert list(read_chunks(empty, secret)) == []


@pytest.mark.parametrize("attack", ["plain-pickle", "wrong-secret", "flipped-byte", "truncated", "no-end-frame",
                                    "chunks-reordered", "from-another-file", "extra-bytes", "huge-length"])
def test_a_work_file_not_written_by_this_run_is_refused_unread(tmp_path: Path, attack: str) -> None:
    secret, path, marker = new_secret(), tmp_path / "plan-0.work", tmp_path / "PWNED"
    write_chunks(path, range(2500), secret)  # 3 chunks and the end frame
    data = path.read_bytes()
    frames = _frames(data)
    if attack == "plain-pickle":
        path.write_bytes(evil(marker))
    elif attack == "wrong-secret":
        path.unlink()
        write_chunks(path, [Payload(marker)], new_secret())
    elif attack == "flipped-byte":
        path.write_bytes(data[:-20] + bytes([data[-20] ^ 1]) + data[-19:])
    elif attack == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif attack == "no-end-frame":
        path.write_bytes(b"".join(frames[:-1]))
    elif attack == "chunks-reordered":
        path.write_bytes(frames[0] + frames[2] + frames[1] + frames[3] + frames[4])
    elif attack == "from-another-file":  # the same run's other work file, under this name
        other = tmp_path / "plan-1.work"
        write_chunks(other, [Payload(marker)], secret)
        os.replace(other, path)
    elif attack == "extra-bytes":
        path.write_bytes(data + evil(marker))
    elif attack == "huge-length":
        path.write_bytes(frames[0] + (1 << 62).to_bytes(8, "big") + b"\0" * 64)
    with pytest.raises(BackendError, match=r"work file .*plan-0\.work .*nothing was deleted") as caught:
        for _ in read_chunks(path, secret):
            pass
    assert "\n" not in str(caught.value)
    assert not marker.exists(), "nothing of the file was unpickled"


def _frames(data: bytes) -> list[bytes]:
    """[header, frame, frame, …] of a work file."""
    from retention_core.partitioned import WORK_MAGIC

    out, at = [data[: len(WORK_MAGIC)]], len(WORK_MAGIC)
    while at < len(data):
        size = int.from_bytes(data[at: at + 8], "big")
        out.append(data[at: at + 8 + 32 + size])
        at += 8 + 32 + size
    return out


def test_the_secret_is_not_in_a_jobs_repr() -> None:
    secret = new_secret()
    assert secret.hex() not in repr(Setup("p.yaml", "r", NOW, secret)) and str(secret) not in repr(
        Setup("p.yaml", "r", NOW, secret))


# -- in a run ----------------------------------------------------------------------------------------
def policy(folder: Path, store: str) -> Path:
    return memory_calls_policy(folder, store)


def seed(store: str) -> None:
    seed_calls(store, NOW)


class SwappingExecutor(LocalExecutor):
    """Replaces every plan file with a code-running pickle after the survey (*when* ``survey``:
    before the main process reads them; ``delete``: before the deletion tasks read them)."""

    def __init__(self, when: str, marker: Path) -> None:
        self.when, self.marker = when, marker

    def map(self, fn, jobs):  # type: ignore[no-untyped-def]
        if fn is delete_partition and self.when == "delete":
            self._swap([job.surveyed.plan for job in jobs])
        out = super().map(fn, jobs)
        if fn is survey_partition and self.when == "survey":
            self._swap([job.plan for job in jobs])
        return out

    def _swap(self, plans: list[str]) -> None:
        for plan in plans:
            Path(plan).write_bytes(evil(self.marker))


def enforce(config: Path, executor: LocalExecutor) -> Any:
    with Runtime.open(config, load_plugins(extra=[memory])) as rt:
        with PartitionedRun(rt, executor, plugins=MEMORY) as spread:
            with run(rt, RunOptions(now=NOW, as_of_given=True, distributor=spread)) as report:
                return report.status, list(report.warnings)


def test_a_plan_swapped_before_the_main_process_reads_it_stops_the_run(tmp_path: Path) -> None:
    store, marker = f"wf-survey-{uuid.uuid4().hex[:8]}", tmp_path / "PWNED"
    seed(store)
    with pytest.raises(BackendError, match=r"work file .*plan-0\.work is not what this run wrote"):
        enforce(policy(tmp_path, store), SwappingExecutor("survey", marker))
    assert not marker.exists()
    assert len(memory.get_store(store).items) == 28
    assert not [c for c in memory.get_store(store).calls if c[0] == "delete"]


def test_a_plan_swapped_before_its_deletion_task_reads_it_deletes_nothing(tmp_path: Path) -> None:
    store, marker = f"wf-delete-{uuid.uuid4().hex[:8]}", tmp_path / "PWNED"
    seed(store)
    status, warnings = enforce(policy(tmp_path, store), SwappingExecutor("delete", marker))
    assert not marker.exists()
    assert len(memory.get_store(store).items) == 28
    assert not [c for c in memory.get_store(store).calls if c[0] == "delete"]
    assert status == "failed-deletions"
    assert any("is not what this run wrote" in w and "plan-" in w for w in warnings), warnings
    lines = list(audit.records(tmp_path / "audit.jsonl"))
    assert len([e for e in lines if e.get("event") == "segment-not-written"]) == 4  # one per partition
    assert not [e for e in lines if e.get("event") == "intent"]


# -- work dirs a killed run left ---------------------------------------------------------------------
def _leftover(trail: Path, run_id: str, *, owner: bool = True, age: float = 0) -> Path:
    work = trail.parent / (trail.name + SEGMENTS_SUFFIX) / f"{run_id}{WORK_SUFFIX}"
    work.mkdir(parents=True)
    (work / "plan-0.work").write_bytes(b"keys and subjects")
    if owner:
        (work / OWNER).write_bytes(b"")
    segment = work.parent / run_id / "1.jsonl"
    segment.parent.mkdir()
    segment.write_text("{}\n")
    if age:
        old = work.stat().st_mtime - age
        os.utime(work, (old, old))
    return work


def test_an_enforcing_run_removes_the_work_dirs_of_runs_that_are_not_running(tmp_path: Path, caplog) -> None:
    store = f"wf-stale-{uuid.uuid4().hex[:8]}"
    seed(store)
    config = policy(tmp_path, store)
    trail = tmp_path / "audit.jsonl"
    crashed = _leftover(trail, "crashed-run")
    unowned_old = _leftover(trail, "older-crash", owner=False, age=3600)
    unowned_new = _leftover(trail, "just-made", owner=False)
    running = _leftover(trail, "a-dry-run-in-progress")
    held = os.open(running / OWNER, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with caplog.at_level(logging.INFO, logger="retention"):
            status, _ = enforce(config, LocalExecutor())
    finally:
        os.close(held)
    assert status == "ok"
    assert not crashed.exists() and not unowned_old.exists()
    assert running.exists() and unowned_new.exists()
    for run_id in ("crashed-run", "older-crash", "just-made", "a-dry-run-in-progress"):  # segments are evidence
        assert (trail.parent / (trail.name + SEGMENTS_SUFFIX) / run_id / "1.jsonl").read_text() == "{}\n"
    removed = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "stale-work-removed"]
    assert len(removed) == 2 and all("crash" in line for line in removed), removed
    assert len(memory.get_store(store).items) < 28  # and the run did its own work


def test_remove_stale_work_keeps_the_callers_own_and_never_follows_links(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    own = _leftover(trail, "me")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    (trail.parent / (trail.name + SEGMENTS_SUFFIX) / f"link{WORK_SUFFIX}").symlink_to(elsewhere)
    assert remove_stale_work(trail, "me") == []
    assert own.exists() and (elsewhere / "keep").exists()
    assert remove_stale_work(tmp_path / "no-trail-yet.jsonl", "me") == []
