"""`retention audit certificate --request ID`: one erasure request's evidence, for its controller (issue 17 #4).

A run's certificate lists every tenant's deletions; the copy handed to one controller must list
only its subject's records — from every run that deleted them — and name the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retention_core.audit import records
from retention_core.state import StateStore
from retention_core.testing import memory

from .conftest import NOW


def enforce(cli: Any, demo: Any) -> str:
    result = cli("run", "-c", demo.policy)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[2]  # "retention run <RUN_ID> — enforced, ..."


def dana_request(demo: Any) -> str:
    store = StateStore(f"sqlite:///{demo.folder / 'state.db'}")
    try:
        (request,) = [r for r in store.requests() if r.subject == "dana"]
    finally:
        store.close()
    return request.id


def certificate(cli: Any, demo: Any, *args: str) -> dict[str, Any]:
    result = cli("audit", "certificate", "-c", demo.policy, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_only_the_subjects_records_from_every_run_that_deleted_them(retention_cli: Any, demo: Any) -> None:
    first = enforce(retention_cli, demo)
    # The subject's data turns up again (a late sync); the request still makes it due.
    memory.seed(demo.recordings, "dana/call-9.wav", NOW, size=5)
    second = enforce(retention_cli, demo)
    request_id = dana_request(demo)

    cert = certificate(retention_cli, demo, "--request", request_id)

    trail = list(records(demo.folder / "audit.jsonl"))
    others = {e["location"] for e in trail if e.get("event") == "outcome" and e.get("subject") != "dana"}
    assert others  # the runs deleted other tenants' records too (initech, the minor) ...
    listed = [(r["run_id"], r["location"], r["outcome"]) for r in cert["records"]]
    assert sorted(listed) == sorted([(first, "dana/call-1.wav", "deleted"), (first, "dana/call-2.wav", "deleted"),
                                     (first, "dana/call-3.wav", "deleted"), (second, "dana/call-9.wav", "deleted")])
    assert not others & {loc for _, loc, _ in listed}  # ... and none of theirs is on dana's certificate
    assert [r["run_id"] for r in cert["runs"]] == [first, second]
    assert [r["records"] for r in cert["runs"]] == [3, 1]
    assert cert["totals"] == {"deleted": 4}
    assert cert["run_id"] is None
    assert cert["request"]["id"] == request_id and cert["request"]["subject"] == "dana"
    assert cert["request"]["controller"] == "dana-co" and cert["request"]["done_run"] == first
    assert cert["sanitization"]["notes"].startswith("Request status: late.")  # received 40 days before NOW
    assert cert["audit"]["verified"] is True
    last = max(r["audit_seq"] for r in cert["records"])
    assert cert["audit"]["last_line"]["seq"] == last
    assert cert["person_performing"]["name"] == "tester"


def test_a_request_made_through_the_cli_carries_its_ticket_and_its_lines(retention_cli: Any, demo: Any,
                                                                         tmp_path: Path) -> None:
    made = retention_cli("requests", "erase", "-c", demo.policy, "--subject", "hooli", "--controller", "hooli-xyz",
                         "--ticket", "HD-2026-118")
    assert made.exit_code == 0, made.output
    request_id = made.stdout.split()[2]
    run_id = enforce(retention_cli, demo)

    cert = certificate(retention_cli, demo, "--request", request_id)
    assert cert["request"]["ticket"] == "HD-2026-118"
    assert {r["location"] for r in cert["records"]} == {"hooli/call-1.wav", "hooli/call-2.wav", "hooli/call-3.wav"}
    assert {r["run_id"] for r in cert["records"]} == {run_id}
    (line,) = cert["audit"]["request_lines"]
    requested = next(e for e in records(demo.folder / "audit.jsonl") if e.get("event") == "erasure-requested")
    assert line == {"event": "erasure-requested", "seq": requested["seq"], "hash": requested["hash"],
                    "time": requested["time"]}

    out = tmp_path / "hooli.html"
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--request", request_id, "--format", "html",
                           "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"certificate for erasure request {request_id}: {out}"
    page = out.read_text(encoding="utf-8")
    assert "HD-2026-118" in page and "hooli/call-1.wav" in page
    assert f"erasure-requested seq {requested['seq']}, SHA-256 {requested['hash']}" in page
    assert "initech/" not in page and "dana/" not in page and "kid/" not in page


def test_the_run_certificate_is_unchanged_beside_it(retention_cli: Any, demo: Any) -> None:
    """A run's certificate still lists every tenant's deletions of that run (for the operator)."""
    run_id = enforce(retention_cli, demo)
    cert = certificate(retention_cli, demo, "--run", run_id)
    subjects = {r["subject"] for r in cert["records"]}
    assert {"dana", "initech"} <= subjects and cert["run_id"] == run_id and "request" not in cert


def test_run_or_request_exactly_one_and_known(retention_cli: Any, demo: Any) -> None:
    run_id = enforce(retention_cli, demo)
    neither = retention_cli("audit", "certificate", "-c", demo.policy)
    both = retention_cli("audit", "certificate", "-c", demo.policy, "--run", run_id, "--request", dana_request(demo))
    unknown = retention_cli("audit", "certificate", "-c", demo.policy, "--request", "nope")
    for result in (neither, both, unknown):
        assert result.exit_code == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert "exactly one of --run" in neither.stderr and "exactly one of --run" in both.stderr
    assert "no erasure request 'nope'" in unknown.stderr


def test_a_tampered_trail_gets_no_request_certificate(retention_cli: Any, demo: Any) -> None:
    enforce(retention_cli, demo)
    trail = demo.folder / "audit.jsonl"
    trail.write_text(trail.read_text().replace('"dana/call-1.wav"', '"dana/call-7.wav"', 1))
    result = retention_cli("audit", "certificate", "-c", demo.policy, "--request", dana_request(demo))
    assert result.exit_code == 1 and result.stdout == ""
    assert "no certificate issued" in result.stderr
