"""SIGKILL a real `retention run` at every journal point; a rerun must converge and the trail
must name every deletion that happened — none missing, none invented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retention_core.audit import records, verify

REPO = Path(__file__).resolve().parents[2]
POINTS = ["after-intent", "mid-batch", "after-backend", "after-outcome"]


def demo_copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(REPO / "config" / "demo", target, ignore=shutil.ignore_patterns(".retention"))
    return target / "policy.yaml"


def retention(policy: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RETENTION_TEST_KILL_AT"}
    if kill_at:
        env["RETENTION_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "retention_core", *args, "-c", str(policy)],
                          capture_output=True, text=True, env=env, timeout=120)


def files(policy: Path) -> set[str]:
    data = policy.parent / "data"
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()}


def journalled_deletions(policy: Path) -> list[tuple[str, str]]:
    roots = {"recordings": "recordings", "transcripts": "transcripts", "mail": "mail"}
    out = []
    for e in records(policy.parent / ".retention" / "audit.jsonl"):
        if e.get("event") == "outcome" and e.get("outcome") == "deleted":
            out.append((roots[e["source"]], e["location"]))
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> set[str]:
    policy = demo_copy(tmp_path_factory.mktemp("clean"), "demo")
    assert retention(policy, "run").returncode == 0
    return files(policy)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_journal_point_converges_on_rerun(tmp_path, point, uninterrupted):
    policy = demo_copy(tmp_path, "demo")
    before = files(policy)
    held = {f for f in before if "/globex/" in f}
    killed = retention(policy, "run", kill_at=f"{point}:2" if point == "mid-batch" else point)
    assert killed.returncode == -9, killed.stderr
    rerun = retention(policy, "run")
    assert rerun.returncode == 0, rerun.stderr
    after = files(policy)
    assert after == uninterrupted
    assert held <= after
    assert verify(policy.parent / ".retention" / "audit.jsonl").ok
    deleted = journalled_deletions(policy)
    actually = before - after
    assert sorted(f"{root}/{loc}" for root, loc in deleted) == sorted(actually)  # each exactly once


def test_a_clock_behind_the_last_run_is_refused_unless_as_of_is_explicit(tmp_path):
    policy = demo_copy(tmp_path, "demo")
    assert retention(policy, "run").returncode == 0
    from retention_core.state import StateStore, runs_table

    store = StateStore(f"sqlite:///{policy.parent}/.retention/state.db")
    with store.engine.begin() as conn:  # pretend the last run happened in 2099
        conn.execute(runs_table.update().values(as_of=__import__("datetime").datetime(2099, 1, 1)))
    store.close()
    behind = retention(policy, "run", "--dry-run")
    assert behind.returncode == 3 and "the clock went back" in behind.stderr
    assert retention(policy, "run", "--as-of", "2026-12-01").returncode == 0
    # Issue 15 #9: enforcing was blocked until the clock caught up; --trust-clock is the
    # explicit, journalled override (for the enforcing run only).
    assert retention(policy, "run").returncode == 3
    trusted = retention(policy, "run", "--trust-clock")
    assert trusted.returncode == 0, trusted.stderr
    assert "clock override" in trusted.stdout
    trail = (policy.parent / ".retention" / "audit.jsonl").read_text()
    assert '"event":"clock-override"' in trail.replace(" ", "")
