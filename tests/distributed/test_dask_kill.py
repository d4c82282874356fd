"""A worker process killed mid-partition, and a main process killed with segments dispatched:
the rerun converges — nothing held lost, nothing invented, every open intent settled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import audit
from retention_core.partitioned import PartitionedRun
from retention_core.runtime import Runtime
from retention_core.scheduler import KILL_ENV, RunOptions, run
from retention_core.testing.builders import PolicyBuilder

OLD = (datetime.now(timezone.utc) - timedelta(days=100)).timestamp()
SUBJECTS = ("alice", "bob", "carol", "held")


def seed(folder: Path, state: str) -> tuple[Path, set[str], set[str]]:
    """(policy, due locations, locations that must stay)."""
    root = folder / "data"
    due, stay = set(), set()
    for subject in SUBJECTS:
        for i in range(6):
            location = f"{subject}/rec-{i}.bin"
            path = root / location
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(location.encode())
            if i < 4:
                os.utime(path, (OLD, OLD))
            (due if i < 4 and subject != "held" else stay).add(location)
    policy = PolicyBuilder(folder).write(
        categories={"data": {"retain": "30d"}},
        sources=[{"name": "files", "backend": "fs", "options": {"root": str(root)}, "category": "data",
                  "match": "(?P<subject>[^/]+)/rec-.+"}],
        subjects=[{"subject_id": s, "controller": "acme"} for s in SUBJECTS],
        holds=[{"id": "LH-9", "kind": "legal", "scope": {"subject": "held"}, "reason": "case"}],
        limits={"max_fraction": 1.0}, state=state)
    return policy, due, stay


def enforce(config: Path, executor: Any | None) -> str:
    with Runtime.open(config) as rt:
        if executor is None:
            with run(rt, RunOptions(now=datetime.now(timezone.utc))) as report:
                return report.status
        with PartitionedRun(rt, executor) as spread:
            with run(rt, RunOptions(now=datetime.now(timezone.utc), distributor=spread)) as report:
                return report.status


def converged(folder: Path, due: set[str], stay: set[str]) -> None:
    root = folder / "data"
    left = {str(p.relative_to(root)) for p in root.rglob("*.bin")}
    assert left == stay, f"left {sorted(left - stay)} due, lost {sorted(stay - left)}"
    trail = folder / "audit.jsonl"
    checked = audit.verify(trail)
    assert checked.ok, checked.problem
    intents: Counter[tuple[str, str]] = Counter()
    closed: Counter[tuple[str, str]] = Counter()
    deleted: Counter[str] = Counter()
    for entry in audit.records(trail):
        if entry.get("location") is None:
            continue
        key = (entry["run_id"], entry["location"])
        if entry["event"] == "intent":
            intents[key] += 1
        elif entry["event"] == "outcome":
            closed[key] += 1
            if entry["outcome"] == "deleted":
                deleted[entry["location"]] += 1
    assert not [k for k in intents if not closed[k]], "an intent was left open"
    assert set(deleted) == due, f"invented {sorted(set(deleted) - due)}, unproven {sorted(due - set(deleted))}"
    assert all(n == 1 for n in deleted.values()), f"a deletion journalled twice: {deleted}"


@pytest.mark.parametrize("rerun", ["dask", "local"])
def test_a_worker_killed_mid_partition(tmp_path: Path, dying_cluster: Any, cluster: Any, pg_state: str,
                                       rerun: str) -> None:
    policy, due, stay = seed(tmp_path, pg_state)
    assert enforce(policy, dying_cluster) == "failed-deletions"
    root = tmp_path / "data"
    gone = due - {str(p.relative_to(root)) for p in root.rglob("*.bin")}
    assert gone and gone != due, "the worker should have died part-way through a batch"
    assert enforce(policy, cluster if rerun == "dask" else None) == "ok"
    converged(tmp_path, due, stay)


@pytest.mark.parametrize("kill_at", ["mid-batch:3", "after-partitions"])
def test_the_main_process_killed_with_segments_dispatched(tmp_path: Path, kill_at: str) -> None:
    """The run's own process dies mid-batch (LocalExecutor: the tasks run in it): the next run
    finds the crashed run's open intents in the segments its trail named before dispatch. Or it
    dies after every partition journalled its deletions, before naming a segment (adversarial
    review: those deletions were in no file the trail names); the next run names the segments."""
    policy, due, stay = seed(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    script = textwrap.dedent(f"""
        from datetime import datetime, timezone
        from retention_core.executors import LocalExecutor
        from retention_core.partitioned import PartitionedRun
        from retention_core.runtime import Runtime
        from retention_core.scheduler import RunOptions, run
        with Runtime.open({str(policy)!r}) as rt, PartitionedRun(rt, LocalExecutor()) as spread:
            run(rt, RunOptions(now=datetime.now(timezone.utc), distributor=spread))
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, KILL_ENV: kill_at},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    lines = list(audit.read(tmp_path / "audit.jsonl"))
    assert [e for e in lines if e["event"] == "segments-dispatched"]
    assert not [e for e in lines if e["event"] == "segment"], "it died before recording the segment"
    assert enforce(policy, None) == "ok"
    converged(tmp_path, due, stay)
