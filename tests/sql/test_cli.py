"""Through the ``retention`` command line: validate, dry-run and an enforcing run on each database.

The expected verdict of every row is computed here with the engine's ``decide`` from the
rows as inserted (not as the backend reads them); the dry-run report and the enforcing run
(the set-based path) must both match it exactly.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import retention_sql
from retention_core import Action, Category, Context, ErasureRequest, Hold, HoldScope, Record, Subject, parse_duration
from retention_core.audit import records as trail_records
from retention_core.engine import decide
from retention_core.testing.builders import PolicyBuilder

from .conftest import Database, Records, records_table

UTC = timezone.utc
RETAIN = "2y"


@pytest.fixture
def retention_plugin() -> Any:
    return retention_sql


def ok(result: Any, code: int = 0) -> Any:
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
    return result


class Estate:
    """Subjects, holds and rows of one realistic source, and the verdicts the engine gives them."""

    def __init__(self, count: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.now = datetime.now(UTC)
        boundary = parse_duration(RETAIN).latest_start_due_by(self.now)
        self.subjects = []
        for i in range(200):
            ended = self.now - timedelta(days=rng.randrange(1, 900)) if i % 3 == 0 else None
            self.subjects.append({"subject_id": f"c{i:04d}", "controller": "acme",
                                  "service_ended_at": ended.isoformat() if ended else None, "minor": i % 17 == 0})
        self.held_subject, self.requested = "c0005", "c0007"
        names = [s["subject_id"] for s in self.subjects] + ["ghost", None]
        self.rows: list[tuple[int, str | None, datetime]] = []
        span = 4 * 365 * 86400
        for key in range(1, count + 1):
            while True:  # keep clear of the cutoff, so the run's own clock cannot change a verdict
                created = self.now - timedelta(seconds=rng.randrange(0, span), microseconds=rng.randrange(10**6))
                if abs(created - boundary) > timedelta(days=2):
                    break
            self.rows.append((key, rng.choice(names), created))

    def context(self) -> Context:
        subjects = {s["subject_id"]: Subject(s["subject_id"], "acme", s["service_ended_at"] and
                                             datetime.fromisoformat(s["service_ended_at"]), s["minor"])
                    for s in self.subjects}
        holds = (Hold("LH-1", "legal", HoldScope(subject=self.held_subject), "Smith v. Acme"),)
        requests = {self.requested: ErasureRequest("R-1", self.requested, "acme", self.now,
                                                   self.now + timedelta(days=30))}
        return Context(now=self.now, categories={"chat": Category("chat", parse_duration(RETAIN))},
                       subjects=subjects, holds=holds, requests=requests)

    def verdicts(self, source: str) -> dict[str, str]:
        ctx = self.context()
        return {str(k): decide(Record(source, str(k), c, subject=s, category="chat"), ctx).action.value
                for k, s, c in self.rows}

    def policy(self, builder: PolicyBuilder, records: Records) -> Path:
        options = {k: v for k, v in records.options.items() if k != "batch_size"}
        return builder.write(
            categories={"chat": {"retain": RETAIN, "after": "created"}},
            sources=[{"name": "chats", "backend": "sql", "options": {**options, "batch_size": 2000},
                      "category": "chat"}],
            subjects=self.subjects,
            holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": self.held_subject}, "reason": "Smith v. Acme"}],
            limits={"max_fraction": 1.0})


def run_estate(db: Database, cli: Any, builder: PolicyBuilder, tmp_path: Path, count: int) -> None:
    estate = Estate(count)
    records = records_table(db)
    db.insert(records.table, [records.row(k, s, c) for k, s, c in estate.rows])
    policy = estate.policy(builder, records)
    ok(cli("validate", "-c", policy))
    ok(cli("requests", "erase", "-c", policy, "--subject", estate.requested, "--controller", "acme"))
    expected = estate.verdicts("chats")
    due = {k for k, action in expected.items() if action == Action.DELETE.value}
    assert 0 < len(due) < count and Action.HOLD.value in expected.values()

    dry = tmp_path / "dry.json"
    ok(cli("run", "-c", policy, "--dry-run", "--report", dry))
    items = json.loads(dry.read_text())["items"]
    assert {i["location"]: i["decision"] for i in items} == expected
    assert len(records.keys()) == count, "a dry-run deleted something"

    enforced = tmp_path / "run.json"
    ok(cli("run", "-c", policy, "--report", enforced))
    report = json.loads(enforced.read_text())
    deleted = {i["location"] for i in report["items"] if i["outcome"] == "deleted"}
    assert deleted == due
    assert records.keys() == set(expected) - due
    audit = list(trail_records(tmp_path / "audit.jsonl"))
    assert any(e.get("event") == "intent" and "set-based" in (e.get("reason") or "") for e in audit)
    assert {e["location"] for e in audit if e.get("event") == "outcome" and e.get("outcome") == "deleted"} == due


def test_dry_run_and_enforced_run_match_the_engine(db: Database, retention_cli: Any, policy_builder: PolicyBuilder,
                                                  tmp_path: Path) -> None:
    run_estate(db, retention_cli, policy_builder, tmp_path, 3000)


@pytest.mark.slow
def test_dry_run_and_enforced_run_match_the_engine_on_100k_rows(db: Database, retention_cli: Any,
                                                                policy_builder: PolicyBuilder, tmp_path: Path) -> None:
    run_estate(db, retention_cli, policy_builder, tmp_path, 100_000)


def test_validate_shows_cascade_warnings_and_run_refuses(db: Database, retention_cli: Any,
                                                         policy_builder: PolicyBuilder) -> None:
    import sqlalchemy as sa

    records = records_table(db)
    records.add([(1, "c0001", datetime(2020, 1, 1, tzinfo=UTC))])
    db.table(db.name("child"), sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("rid", sa.Integer, sa.ForeignKey(records.table.c.id, ondelete="CASCADE")))
    policy = policy_builder.write(categories={"chat": {"retain": "1d"}},
                                  sources=[{"name": "chats", "backend": "sql", "options": records.options,
                                            "category": "chat"}])
    result = ok(retention_cli("validate", "-c", policy))
    assert "ON DELETE CASCADE" in result.output and "warning:" in result.output
    result = ok(retention_cli("run", "-c", policy), 2)
    assert "sources[0].options.allow_cascade" in result.output and "Traceback" not in result.output
    assert records.keys() == {"1"}


@pytest.mark.parametrize(("option", "value", "text"), [
    ("table", "no_such_table", "no table 'no_such_table'"),
    ("created", "nope", "no column 'nope'"),
    ("table", 'x"; DROP TABLE y; --', "no table"),
])
def test_config_errors_are_one_line_and_exit_2(db: Database, retention_cli: Any, policy_builder: PolicyBuilder,
                                               option: str, value: str, text: str) -> None:
    records = records_table(db)
    policy = policy_builder.write(categories={"chat": {"retain": "1d"}},
                                  sources=[{"name": "chats", "backend": "sql",
                                            "options": {**records.options, option: value}, "category": "chat"}])
    for args in (("run", "-c", policy, "--dry-run"), ("run", "-c", policy)):
        result = ok(retention_cli(*args), 2)
        line = [ln for ln in result.output.splitlines() if ln.startswith("retention: error:")]
        assert len(line) == 1 and f"sources[0].options.{option}" in line[0] and text in line[0], result.output
        assert "Traceback" not in result.output


def test_plugin_registers_the_sql_backend(retention_plugins: Any) -> None:
    from retention_sql.backend import SqlBackend

    assert retention_plugins.backends().get("sql") is SqlBackend
