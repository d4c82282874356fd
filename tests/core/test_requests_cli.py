"""Erasure requests as a controller sees them (issue 17 #4), through the command line over the fs demo:
a ticket reference, withdrawal, duplicate open requests refused, and the states open (pending /
overdue), held, done, late and withdrawn."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core.audit import read
from retention_core.state import StateStore
from retention_core.testing.services import require_service
from tests.support import demo_copy, invoke, ok


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A private copy of the fs demo, its limits raised so that an erasure may delete a tenant."""
    return demo_copy(tmp_path)


def listed(policy: Path) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in json.loads(ok("requests", "list", "-c", policy, "--json").stdout)}


def erase(policy: Path, subject: str, controller: str, *extra: str) -> str:
    out = ok("requests", "erase", "-c", policy, "--subject", subject, "--controller", controller, *extra).stdout
    return out.split()[2]  # "erasure request <ID> ..."


def deletes(policy: Path) -> int:
    """How many records a dry run would delete."""
    out = ok("run", "-c", policy, "--dry-run").stdout
    total = next(line for line in out.splitlines() if line.strip().startswith("total:"))
    return int(total.split("delete ")[1].split(",")[0])


def test_a_ticket_is_stored_journalled_and_shown(demo: Path, tmp_path: Path) -> None:
    request_id = erase(demo, "acme", "acme-corp", "--ticket", "HD-4711")
    assert listed(demo)["acme"]["ticket"] == "HD-4711"
    line = ok("requests", "list", "-c", demo).stdout
    assert request_id in line and "HD-4711" in line and "pending" in line
    (entry,) = [e for e in read(demo.parent / ".retention" / "audit.jsonl") if e["event"] == "erasure-requested"]
    assert entry["ticket"] == "HD-4711" and entry["request"] == request_id
    report = tmp_path / "run.json"
    summary = ok("run", "-c", demo, "--dry-run", "--report", report).stdout
    assert f"erasure request {request_id} (ticket HD-4711) for acme: pending" in summary
    (in_report,) = json.loads(report.read_text())["erasure_requests"]
    assert in_report["ticket"] == "HD-4711"


def test_a_ticket_with_a_control_character_is_refused(demo: Path) -> None:
    result = invoke("requests", "erase", "-c", demo, "--subject", "acme", "--controller", "acme-corp",
                    "--ticket", "HD-1\nforged line")
    assert result.exit_code == 2 and "--ticket" in result.stderr
    assert listed(demo) == {}


def test_a_duplicate_open_request_is_refused_naming_the_open_one(demo: Path) -> None:
    first = erase(demo, "acme", "acme-corp", "--ticket", "HD-1")
    again = invoke("requests", "erase", "-c", demo, "--subject", "acme", "--controller", "acme-corp")
    assert again.exit_code == 2
    assert f"already has an open erasure request {first}" in again.stderr and "HD-1" in again.stderr
    assert len(json.loads(ok("requests", "list", "-c", demo, "--json").stdout)) == 1
    # Another subject is not a duplicate; after a withdrawal the subject may ask again.
    erase(demo, "initech", "initech-llc")
    ok("requests", "withdraw", "-c", demo, first, "--reason", "sent to the wrong tenant")
    second = erase(demo, "acme", "acme-corp", "--ticket", "HD-2")
    assert second != first


def test_withdrawal_is_kept_journalled_and_makes_nothing_due(demo: Path) -> None:
    before = deletes(demo)
    request_id = erase(demo, "acme", "acme-corp")
    assert deletes(demo) == before + 7  # acme's recordings, transcripts and mail
    out = ok("requests", "withdraw", "-c", demo, request_id, "--reason", "customer renewed the contract").stdout
    assert out.strip() == f"withdrew erasure request {request_id} for acme"
    assert deletes(demo) == before  # a withdrawn request no longer makes acme's data due

    request = listed(demo)["acme"]
    assert request["status"] == "withdrawn" and request["open"] is False
    assert request["withdrawn_by"] == "tester" and request["withdraw_reason"] == "customer renewed the contract"
    assert request["withdrawn_at"] is not None
    line = ok("requests", "list", "-c", demo).stdout
    assert "withdrawn" in line and "by tester: customer renewed the contract" in line
    (entry,) = [e for e in read(demo.parent / ".retention" / "audit.jsonl") if e["event"] == "erasure-withdrawn"]
    assert entry == {**entry, "request": request_id, "subject": "acme", "by": "tester",
                     "reason": "customer renewed the contract"}

    ok("run", "-c", demo)
    assert listed(demo)["acme"]["status"] == "withdrawn"  # a run never marks it done
    assert (demo.parent / "data" / "transcripts" / "acme" / "chat-1.txt").exists()
    again = invoke("requests", "withdraw", "-c", demo, request_id, "--reason", "twice")
    assert again.exit_code == 2 and "already withdrawn" in again.stderr


def test_withdrawing_what_cannot_be_withdrawn(demo: Path) -> None:
    unknown = invoke("requests", "withdraw", "-c", demo, "nope", "--reason", "x")
    assert unknown.exit_code == 2 and "no erasure request 'nope'" in unknown.stderr
    request_id = erase(demo, "acme", "acme-corp")
    ok("run", "-c", demo)
    done = invoke("requests", "withdraw", "-c", demo, request_id, "--reason", "too late")
    assert done.exit_code == 2 and "nothing to withdraw" in done.stderr
    assert listed(demo)["acme"]["status"] == "done"


def test_done_late_and_held_are_states_of_their_own(demo: Path) -> None:
    """Done on time is ``done``; done after its due date ``late`` (kept visible); a subject whose
    remaining data is under a hold ``held``, not done. Open ones are ``pending`` / ``overdue``."""
    received = (datetime.now(timezone.utc) - timedelta(days=40)).date().isoformat()
    erase(demo, "acme", "acme-corp", "--ticket", "HD-ON-TIME")
    erase(demo, "initech", "initech-llc", "--received", received, "--ticket", "HD-LATE")
    erase(demo, "globex", "globex-inc")  # under the policy's Smith hold
    states = {s: r["status"] for s, r in listed(demo).items()}
    assert states == {"acme": "pending", "initech": "overdue", "globex": "pending"}
    assert all(r["open"] for r in listed(demo).values())

    summary = ok("run", "-c", demo).stdout
    after = listed(demo)
    assert {s: r["status"] for s, r in after.items()} == {"acme": "done", "initech": "late", "globex": "held"}
    assert after["initech"]["done_at"] and after["initech"]["open"] is False
    assert after["globex"]["held_remaining"] == 7 and after["globex"]["open"] is True
    assert "for initech: late" in summary  # finished late by this run: said in its summary
    text = ok("requests", "list", "-c", demo).stdout
    assert "HD-LATE" in text and " late " in text and "globex" in text and "7 records still held" in text
    later = ok("run", "-c", demo).stdout
    # A late request stays visible in list and reports, not in every later summary.
    assert "for initech" not in later and "for acme" not in later
    assert "for globex: held" in later


def test_a_store_from_before_tickets_and_withdrawals_is_migrated(demo: Path) -> None:
    """A state store created by an older version lacks the new request columns: they are added."""
    state = demo.parent / ".retention" / "state.db"
    state.parent.mkdir()
    with sqlite3.connect(state) as conn:
        conn.execute("CREATE TABLE retention_erasure_requests (id VARCHAR(64) PRIMARY KEY, subject VARCHAR(500) "
                     "NOT NULL, controller VARCHAR(500) NOT NULL, received_at DATETIME NOT NULL, due_at DATETIME "
                     "NOT NULL, done_at DATETIME, done_run VARCHAR(64), held_remaining INTEGER NOT NULL)")
        conn.execute("INSERT INTO retention_erasure_requests VALUES ('old1', 'acme', 'acme-corp', "
                     "'2026-11-01 00:00:00', '2026-12-01 00:00:00', NULL, NULL, 0)")
    (old,) = json.loads(ok("requests", "list", "-c", demo, "--json").stdout)
    assert old["id"] == "old1" and old["ticket"] is None and old["status"] in ("pending", "overdue")
    ok("requests", "withdraw", "-c", demo, "old1", "--reason", "migrated")
    assert listed(demo)["acme"]["status"] == "withdrawn"


OLD_REQUESTS_TABLE = ("CREATE TABLE retention_erasure_requests (id VARCHAR(64) PRIMARY KEY, subject VARCHAR(500) NOT "
                      "NULL, controller VARCHAR(500) NOT NULL, received_at {ts} NOT NULL, due_at {ts} NOT NULL, "
                      "done_at {ts}, done_run VARCHAR(64), held_remaining INTEGER NOT NULL)")
SERVERS = {
    "postgresql": (os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                   "TIMESTAMP WITH TIME ZONE"),
    "mariadb": (os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"), "DATETIME"),
}


@pytest.fixture(params=sorted(SERVERS))
def old_server_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A state store on a server database, in a schema of its own, holding the old requests table."""
    url, ts = SERVERS[request.param]
    try:
        admin = sa.create_engine(url)
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any reason the server cannot be reached
        require_service(False, f"{request.param} at {url} ({type(exc).__name__})")
    name = f"mig_{uuid.uuid4().hex[:10]}"
    ddl = "CREATE SCHEMA" if request.param == "postgresql" else "CREATE DATABASE"
    # MariaDB: a store converted to exact text as the refusal of case-blind stores asks
    # (tests/core/test_state_drivers.py); the columns are then added like anywhere else.
    collation = "" if request.param == "postgresql" else " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"{ddl} {name}{collation}")
    parsed = sa.engine.make_url(url)
    store_url = (parsed.update_query_dict({"options": f"-csearch_path={name}"}) if request.param == "postgresql"
                 else parsed.set(database=name))
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(OLD_REQUESTS_TABLE.format(ts=ts))
    engine.dispose()
    try:
        yield store_url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE" if request.param == "postgresql"
                                 else f"DROP DATABASE {name}")
        admin.dispose()


def test_the_request_columns_are_added_on_server_databases(old_server_store: str) -> None:
    store = StateStore(old_server_store)
    try:
        request = store.add_request("acme", "acme-corp", datetime.now(timezone.utc), ticket="HD-7")
        withdrawn = store.withdraw_request(request.id, "migrated", by="ops")
    finally:
        store.close()
    assert withdrawn.ticket == "HD-7" and withdrawn.withdrawn_by == "ops" and withdrawn.withdrawn_at is not None
    assert withdrawn.status(datetime.now(timezone.utc)) == "withdrawn"


def test_a_new_request_after_a_done_one_is_the_one_its_deletions_name(demo: Path, tmp_path: Path) -> None:
    """Data of a subject turning up after its request was done is deleted under the subject's
    open request, if a new one was made — the trail names that one, not the old."""
    old = erase(demo, "acme", "acme-corp", "--ticket", "HD-1")
    ok("run", "-c", demo)
    assert listed(demo)["acme"]["status"] == "done"
    new = erase(demo, "acme", "acme-corp", "--ticket", "HD-2")  # accepted: the first is closed
    (demo.parent / "data" / "transcripts" / "acme" / "chat-9.txt").write_text("resurfaced")
    report = tmp_path / "run.json"
    ok("run", "-c", demo, "--dry-run", "--report", report)
    (item,) = [i for i in json.loads(report.read_text())["items"] if i["location"] == "acme/chat-9.txt"]
    assert item["reason"] == f"erasure request {new} from acme-corp" and old != new
