"""Streamed push-down batches (issue 16): without --report, each batch's deleted rows stream
into an evidence file next to the trail; the trail's lines name the file, its rows and SHA-256.

What must not change: the per-record view (``audit.records()``) is identical to what the
per-record (itemized) path journals for the same rows; holds still protect; ``audit verify``
checks the files; a crash at any point converges on the rerun, with every deletion journalled
exactly once and none invented.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from retention_core.audit import read, records, verify

from .conftest import Database, Records, records_table

NOW = datetime.now(timezone.utc)
OLD, NEW = NOW - timedelta(days=800), NOW - timedelta(days=10)
#: Subjects COPY text format must carry exactly (NULL vs '', tab, newline, backslash, a literal \N).
SUBJECTS = [None, "", "a\tb", "line\nbreak", "back\\slash", "\\N", "ünï", "acme", "plain"]
VOLATILE = {"seq", "time", "hash", "prev_hash", "run_id", "batch", "where", "key_id", "hmac", "settled_by"}


def seed(table: Records, n: int = 45) -> None:
    table.add((i, SUBJECTS[i % len(SUBJECTS)], OLD if i % 5 else NEW) for i in range(1, n + 1))


def policy(tmp: Path, table: Records, **options: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    source = {"name": "rows", "backend": "sql", "category": "row",
              "options": {**table.options, "streamed_batch_size": 7, **options}}
    doc = {"version": 1, "state": "sqlite:///state.db", "audit": "audit.jsonl",
           "categories": {"row": {"retain": "365d", "after": "created"}}, "sources": [source],
           "holds": [{"id": "LH-1", "kind": "legal", "scope": {"subject": "acme"}, "reason": "case"}],
           "limits": {}}  # deletes most of the table on purpose
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def retention(path: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RETENTION_TEST_KILL_AT"}
    if kill_at:
        env["RETENTION_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "retention_core", "run", "-c", str(path), *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=path.parent)


def per_record(trail: Path) -> list[dict[str, Any]]:
    rows = [{k: v for k, v in e.items() if k not in VOLATILE} for e in records(trail)
            if e.get("event") in ("intent", "outcome")]
    return sorted(rows, key=lambda e: (e["event"], str(e["location"]), str(e.get("outcome"))))


def records_lines(trail: Path) -> list[dict[str, Any]]:
    """The trail's lines as written (batch lines not expanded)."""
    return list(read(trail))


def due(table: Records) -> set[str]:
    return {str(i) for i in range(1, 46) if i % 5 and SUBJECTS[i % len(SUBJECTS)] != "acme"}


def test_streamed_trail_reads_back_identical_to_the_per_record_path(db: Database, tmp_path: Path) -> None:
    classic, streamed = records_table(db), records_table(db)
    seed(classic)
    seed(streamed)
    a = retention(policy(tmp_path / "classic", classic), "--report", str(tmp_path / "report.json"))
    b = retention(policy(tmp_path / "streamed", streamed))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert classic.keys() == streamed.keys() == {str(i) for i in range(1, 46)} - due(classic)
    trail = tmp_path / "streamed" / "audit.jsonl"
    files = sorted((tmp_path / "streamed" / "audit.jsonl.evidence").rglob("*.tsv"))
    assert len(files) >= 2, "streamed_batch_size 7 over 45 keys makes several batches"
    assert not list((tmp_path / "classic").glob("audit.jsonl.evidence")), "--report keeps the per-record path"
    assert '"evidence"' in trail.read_text() and '"records"' not in trail.read_text()
    assert per_record(trail) == per_record(tmp_path / "classic" / "audit.jsonl")
    assert verify(trail).ok


def test_a_text_key_streams_its_exact_text(db: Database, tmp_path: Path) -> None:
    table = records_table(db, key_type=sa.String(40))
    keys = ["k\t1", "k\\2", "k 3", "ß4", "k\n5"] if db.kind != "mariadb" else ["k\t1", "k\\2", "k 3", "ß4", "k5"]
    table.add((k, "plain", OLD) for k in keys)
    done = retention(policy(tmp_path, table))
    assert done.returncode == 0, done.stderr
    gone = sorted(e["location"] for e in records(tmp_path / "audit.jsonl")
                  if e.get("event") == "outcome" and e.get("outcome") == "deleted")
    assert gone == sorted(keys) and table.keys() == set()


def test_verify_names_an_altered_evidence_file(db: Database, tmp_path: Path) -> None:
    table = records_table(db)
    seed(table)
    assert retention(policy(tmp_path, table)).returncode == 0
    victim = sorted((tmp_path / "audit.jsonl.evidence").rglob("*.tsv"))[0]
    victim.write_bytes(victim.read_bytes().replace(b"plain", b"PLAIN", 1) + b"99\tmallory\n")
    out = subprocess.run([sys.executable, "-m", "retention_core", "audit", "verify", str(tmp_path / "audit.jsonl")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and victim.name in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("point", ["after-backend:1", "after-intent", "after-backend:3", "after-outcome"])
def test_a_kill_at_any_point_of_a_streamed_run_converges(db: Database, tmp_path: Path, point: str) -> None:
    """after-backend:1 — the first batch's evidence is written, no intent names it (an orphan file,
    rolled back); after-backend:3 — a batch committed with no outcome line (recovery settles it
    from the evidence file's rows) and the next one's file orphaned."""
    table = records_table(db)
    seed(table)
    path = policy(tmp_path, table)
    killed = retention(path, kill_at=point)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    trail = tmp_path / "audit.jsonl"
    named = {e["evidence"]["file"] for e in records_lines(trail) if "evidence" in e}
    files = {str(f.relative_to(tmp_path)) for f in (tmp_path / "audit.jsonl.evidence").rglob("*.tsv")}
    if point == "after-backend:1":  # the first file is written and fsynced; nothing names it; nothing deleted
        assert len(files) == 1 and not named and table.keys() == {str(i) for i in range(1, 46)}
        assert not [e for e in records(trail) if e.get("event") == "intent"]
    if point == "after-backend:3":  # a batch committed, its intent journalled, its outcome not
        assert files - named, "the next batch's file is an orphan"
        intents = {e["batch"] for e in records_lines(trail) if e.get("event") == "intent"}
        outcomes = {e["batch"] for e in records_lines(trail) if e.get("event") == "outcome"}
        assert intents - outcomes, "a committed batch without its outcome line"
    rerun = retention(path)
    assert rerun.returncode == 0, rerun.stderr
    assert table.keys() == {str(i) for i in range(1, 46)} - due(table)
    assert verify(trail).ok
    deleted = [e["location"] for e in records(trail) if e.get("event") == "outcome" and e.get("outcome") == "deleted"]
    assert sorted(deleted) == sorted(due(table)), "every deletion journalled exactly once, none invented"


def test_after_delete_observers_get_every_streamed_row_read_back(db: Database, tmp_path: Path) -> None:
    from retention_core import hookimpl
    from retention_core.plugins import load_plugins
    from retention_core.runtime import Runtime
    from retention_core.scheduler import RunOptions, run

    seen: list[tuple[str, str | None, str]] = []

    class Observer:
        @hookimpl
        def retention_after_delete(self, outcomes: list[Any], context: Any) -> None:
            seen.extend((o.record.location, o.record.subject, o.status) for o in outcomes)

    table = records_table(db)
    seed(table)
    with Runtime.open(policy(tmp_path, table), load_plugins(extra=[Observer()])) as rt:
        report = run(rt, RunOptions(now=datetime.now(timezone.utc), itemize=False))
        report.close()
    assert "rows" in report.surveyed and list((tmp_path / "audit.jsonl.evidence").rglob("*.tsv"))
    assert sorted(loc for loc, _, _ in seen) == sorted(due(table)) and {s for _, _, s in seen} == {"deleted"}
    assert {(loc, subject) for loc, subject, _ in seen} == {(str(i), SUBJECTS[i % len(SUBJECTS)]) for i in
                                                           map(int, due(table))}
