"""Anonymize: rows stay, identity goes — NULL, a literal, or a keyed hash; never twice."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest

from retention_core import Action, ConfigError, PushdownPlan, Status
from retention_core.engine import cutoffs

from .conftest import Database, Records, records_table
from .scenarios import NOW, per_record, scenario, set_based

KEY = "k" * 32
RULES = {"anonymize": {"name": "hash", "email": "redacted@example.invalid", "subject": None, "score": 0},
         "hash_key_env": "RETENTION_TEST_HMAC"}


def hashed(value: str) -> str:
    return "hmac:" + hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_TEST_HMAC", KEY)


def seeded(db: Database, count: int = 10) -> Records:
    records = records_table(db)
    db.insert(records.table, [{**records.row(i, f"s{i % 3}", NOW - timedelta(days=3000)), "score": 90 + i}
                              for i in range(1, count + 1)])
    return records


def test_each_mode_per_record(db: Database) -> None:
    records = seeded(db)
    source = scenario(0, action=Action.ANONYMIZE).source()
    with records.backend(**RULES) as backend:
        backend.check(source)
        chosen = [r for r in backend.scan(source) if r.location in {"1", "2", "3"}]
        outcomes = {o.record.location: o for o in backend.anonymize(chosen)}
    assert {loc: o.status for loc, o in outcomes.items()} == dict.fromkeys(("1", "2", "3"), Status.ANONYMIZED)
    assert outcomes["2"].record.subject == "s2", "the outcome names the subject the row had"
    rows = db.rows(records.table)
    assert len(rows) == 10, "anonymize keeps every row"
    for key in (1, 2, 3):
        assert rows[key]["name"] == hashed(f"name-{key}")
        assert rows[key]["email"] == "redacted@example.invalid"
        assert rows[key]["subject"] is None and rows[key]["score"] == 0
        assert rows[key]["created"] is not None
    assert rows[4] == {**rows[4], "name": "name-4", "subject": "s1", "score": 94}


def test_anonymized_rows_are_done_with(db: Database) -> None:
    """Not listed again, not hashed twice, already_gone when asked again; the set-based run skips them."""
    records = seeded(db, 4)
    case = scenario(0, action=Action.ANONYMIZE)
    source = case.source()
    with records.backend(**RULES) as backend:
        first = list(backend.scan(source))
        assert {o.status for o in backend.anonymize(first[:2])} == {Status.ANONYMIZED}
        again = {r.location for r in backend.scan(source)}
        assert again == {r.location for r in first[2:]}
        assert {o.status for o in backend.anonymize(first[:2])} == {Status.ALREADY_GONE}
        plan = cutoffs(source, case.context())
        pushed = [o for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan)) for o in batch]
        assert {o.record.location for o in pushed} == again
        assert list(backend.scan(source)) == []
    names = {row["name"] for row in db.rows(records.table).values()}
    assert names == {hashed(f"name-{i}") for i in range(1, 5)}


def test_a_half_anonymized_row_is_finished_without_hashing_twice(db: Database) -> None:
    records = seeded(db, 1)
    with db.engine.begin() as conn:
        conn.execute(records.table.update().values(name=hashed("name-1")))
    source = scenario(0, action=Action.ANONYMIZE).source()
    with records.backend(**RULES) as backend:
        [record] = backend.scan(source)
        [outcome] = backend.anonymize([record])
    assert outcome.status is Status.ANONYMIZED
    row = db.rows(records.table)[1]
    assert row["name"] == hashed("name-1") and row["email"] == "redacted@example.invalid"


@pytest.mark.parametrize("rules", [
    {"anonymize": {"name": None}},
    {"anonymize": {"name": "hash", "email": "x@y.invalid"}, "hash_key_env": "RETENTION_TEST_HMAC"},
])
def test_set_based_anonymize_matches_per_record(db: Database, rules: dict[str, Any]) -> None:
    case = scenario(11, action=Action.ANONYMIZE)
    a, b = records_table(db), records_table(db)
    a.add(case.rows)
    b.add(case.rows)
    ctx, source = case.context(), case.source()
    with a.backend(**rules) as backend:
        expected = per_record(backend, source, ctx)
    with b.backend(**rules) as backend:
        got, batches = set_based(backend, source, ctx)
    assert expected and got == expected
    assert all(o.status is Status.ANONYMIZED for batch in batches for o in batch)
    assert db.rows(a.table) == db.rows(b.table)


def test_hash_refuses_to_run_without_its_key(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    records = seeded(db, 2)
    case = scenario(0, action=Action.ANONYMIZE)
    source = case.source()
    for value in (None, "short"):
        if value is None:
            monkeypatch.delenv("RETENTION_TEST_HMAC")
        else:
            monkeypatch.setenv("RETENTION_TEST_HMAC", value)
        with records.backend(**RULES) as backend:
            with pytest.raises(ConfigError, match="RETENTION_TEST_HMAC") as caught:
                backend.check(source)
            assert caught.value.key == "sources[0].options.hash_key_env"
            scanned = list(backend.scan(source))
            with pytest.raises(ConfigError):
                list(backend.anonymize(scanned))
            plan = cutoffs(source, case.context())
            with pytest.raises(ConfigError):
                list(backend.push_down(source, PushdownPlan(plan, lambda plan=plan: plan)))
    assert {row["name"] for row in db.rows(records.table).values()} == {"name-1", "name-2"}


def test_anonymize_without_rules_is_a_config_error(records: Records) -> None:
    records.add([(1, "s", NOW - timedelta(days=3000))])
    case = scenario(0, action=Action.ANONYMIZE)
    source = case.source()
    with records.backend() as backend:
        scanned = list(backend.scan(source))
        with pytest.raises(ConfigError, match="anonymize: is required"):
            list(backend.anonymize(scanned))
        plan = cutoffs(source, case.context())
        with pytest.raises(ConfigError, match="anonymize: is required"):
            list(backend.push_down(source, PushdownPlan(plan, lambda: plan)))
    assert records.keys() == {"1"}
