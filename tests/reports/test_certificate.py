"""`retention audit certificate`: one run's deletions, from the verified audit trail."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from retention_core.audit import AuditTrail, read, records
from retention_core.state import StateStore
from retention_core.testing import memory


def enforce(cli: Any, demo: Any) -> str:
    result = cli("run", "-c", demo.policy)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[2]  # "retention run <RUN_ID> — enforced, ..."


def test_certificate_lists_every_deleted_location_and_the_chain_hashes(retention_cli: Any, demo: Any) -> None:
    run_id = enforce(retention_cli, demo)
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--run", run_id)
    assert result.exit_code == 0, result.output
    cert = json.loads(result.stdout)

    trail = list(records(demo.folder / "audit.jsonl"))
    deleted = {(e["source"], e["location"]) for e in trail if e.get("event") == "outcome"
               and e.get("run_id") == run_id and e["outcome"] == "deleted"}
    assert deleted  # the run really deleted something
    assert {(r["source"], r["location"]) for r in cert["records"]} == deleted
    gone = {loc for src, loc in deleted if src == "recordings"}
    assert not gone & set(demo.remaining(demo.recordings))
    assert not any(loc.startswith("globex/") for _, loc in deleted)  # held: never certified as deleted

    run_end = next(e for e in trail if e.get("event") == "run-end" and e.get("run_id") == run_id)
    assert cert["audit"]["run_end"] == {"seq": run_end["seq"], "hash": run_end["hash"]}
    assert cert["audit"]["head"] == {"seq": trail[-1]["seq"], "hash": trail[-1]["hash"]}
    assert cert["audit"]["verified"] is True
    assert cert["totals"] == {"deleted": len(deleted)}
    assert cert["person_performing"]["name"] == "tester"  # RETENTION_ACTOR in tests/conftest.py
    assert cert["sanitization"]["tool"].startswith("retention ")
    assert cert["sanitization"]["method_type"].startswith("logical deletion")
    assert "not a media sanitization method" in cert["sanitization"]["method_used"]
    assert cert["sanitization"]["verification_method"]
    assert cert["date"]["started"] and cert["date"]["finished"]
    for record in cert["records"]:
        assert set(record) >= {"location", "version", "action", "outcome", "time", "audit_seq", "audit_hash"}


def test_html_certificate_to_a_file(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    run_id = enforce(retention_cli, demo)
    out = tmp_path / "cert.html"
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--run", run_id, "--format", "html",
                           "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "Method type: logical deletion." in text
    assert "initech/call-1.wav" in text and "globex/call-1.wav" not in text
    assert "Validated by" in text
    assert "<script" not in text


def test_a_tampered_trail_gets_no_certificate(retention_cli: Any, demo: Any) -> None:
    run_id = enforce(retention_cli, demo)
    trail = demo.folder / "audit.jsonl"
    lines = trail.read_text().splitlines(keepends=True)
    victim = next(i for i, line in enumerate(lines) if '"event":"outcome"' in line)
    lines[victim] = lines[victim].replace('"deleted"', '"failed"', 1)
    trail.write_text("".join(lines))
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--run", run_id)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no certificate issued" in result.stderr and f"line {victim + 1}" in result.stderr


def test_unknown_run_is_a_usage_error(retention_cli: Any, demo: Any) -> None:
    enforce(retention_cli, demo)
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--run", "20990101T000000Z-nope")
    assert result.exit_code == 2
    assert result.stderr.startswith("retention: error: --run: no run '20990101T000000Z-nope'")


def test_a_crashed_run_is_certified_only_once_a_later_run_settled_it(retention_cli: Any, demo: Any) -> None:
    # A run that died after journalling an intent, before the outcome and its run-end line.
    store = StateStore(f"sqlite:///{demo.folder / 'state.db'}")
    try:
        store.start_run("crashed-1", datetime.now(timezone.utc) - timedelta(hours=1), dry_run=False)
    finally:
        store.close()
    trail = AuditTrail(demo.folder / "audit.jsonl")
    trail.append([{"event": "run-start", "run_id": "crashed-1", "as_of": "2026-01-01T00:00:00+00:00",
                   "sources": ["recordings"], "tool": "retention test"}])
    trail.append([{"event": "intent", "run_id": "crashed-1", "action": "delete", "source": "recordings",
                   "location": "initech/call-1.wav", "version": None, "subject": "initech",
                   "category": "voice_recording", "reason": "expired", "holds": [], "outcome": None,
                   "error": None}])
    early = retention_cli("audit", "certificate", "-c", demo.policy, "--run", "crashed-1")
    assert early.exit_code == 1 and "no certificate issued" in early.stderr

    enforce(retention_cli, demo)  # the next run settles the crashed run's intent from its own scan
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--run", "crashed-1")
    assert result.exit_code == 0, result.output
    cert = json.loads(result.stdout)
    assert cert["sanitization"]["notes"].startswith("Run status: crashed")
    assert [r["location"] for r in cert["records"]] == ["initech/call-1.wav"]
    assert cert["audit"]["run_end"] is None
    entries = list(read(demo.folder / "audit.jsonl"))
    last = [e for e in entries if e.get("run_id") == "crashed-1"][-1]
    assert cert["audit"]["last_line"] == {"seq": last["seq"], "hash": last["hash"]}


def test_certificate_of_a_run_with_failures_lists_them_as_not_deleted(retention_cli: Any, demo: Any) -> None:
    memory.fault(demo.recordings, "initech/call-2.wav", times=100)
    result = retention_cli("run", "-c", demo.policy)
    assert result.exit_code == 1
    run_id = result.stdout.split()[2]
    cert = json.loads(retention_cli("audit", "certificate", "-c", demo.policy, "--run", run_id).stdout)
    failed = [r for r in cert["records"] if r["outcome"] == "failed"]
    assert [r["location"] for r in failed] == ["initech/call-2.wav"] and failed[0]["error"]
    assert cert["totals"]["failed"] == 1
    assert "initech/call-2.wav" in demo.remaining(demo.recordings)
