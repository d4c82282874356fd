"""Delete only what was seen (issue 15 #1, #4, #9).

The per-record ``DELETE`` carries the scanned key, created and subject values (and a declared
row version): a row changed between scan and delete is kept and reported ``changed``. On
PostgreSQL no statement reaches a table that inherits from the configured one. A row whose
created value cannot be represented is a Problem, never the end of a scan or a push-down.
Every change is made out of band, through a plain SQLAlchemy engine.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import retention_sql
from retention_core import Action, Cutoffs, Problem, PushdownPlan, Record, Status, hookimpl
from retention_core.testing.builders import PolicyBuilder
from retention_sql.clock import Clock

from .conftest import Database, Records, records_table
from .scenarios import NOW, scenario

UTC = timezone.utc
#: Due under any retention period the tests use; microseconds on purpose (the guard compares exactly).
OLD = datetime(2019, 3, 1, 12, 34, 56, 789012, tzinfo=UTC)
SOURCE = scenario(0).source()


def listed(backend: Any) -> list[Record]:
    """The records of a scan, as the core hands them to ``delete`` (category filled in)."""
    return [dataclasses.replace(r, category="transcripts") for r in backend.scan(SOURCE) if isinstance(r, Record)]


def stored(records: Records, when: datetime) -> datetime:
    return when.replace(tzinfo=None) if records.naive else when


def change(db: Database, records: Records, key: int, **values: Any) -> None:
    t = records.table
    with db.engine.begin() as conn:
        assert conn.execute(sa.update(t).where(t.c.id == key).values(**values)).rowcount == 1


def recreate(db: Database, records: Records, key: int, subject: str | None, created: datetime,
             **extra: Any) -> None:
    """Delete the row and insert a new one under the same key, as an application would."""
    t = records.table
    with db.engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.id == key))
        conn.execute(sa.insert(t), records.row(key, subject, created, **extra))


@pytest.mark.parametrize("naive", [False, True], ids=["aware", "naive"])
def test_rows_changed_between_scan_and_delete_are_kept_and_reported_changed(db: Database, naive: bool) -> None:
    """Re-created with created=now, re-dated to today, moved to a held subject, to no subject or
    to a look-alike one: none is deleted, each is ``changed``; untouched rows (one without a subject) are
    deleted and a row deleted meanwhile is ``already_gone``."""
    if not naive and db.aware_timestamp() is None:
        pytest.skip("SQLite has no timestamp type that stores instants")
    records = records_table(db, naive=naive, timezone="Europe/Berlin")
    records.add([(1, "a", OLD), (2, "a", OLD), (3, "a", OLD), (4, "a", OLD), (5, "a", OLD), (6, "a", OLD),
                 (7, None, OLD), (8, "a", OLD)])
    now = datetime.now(UTC).replace(microsecond=0)
    with records.backend() as backend:
        scanned = listed(backend)
        assert len(scanned) == 8
        recreate(db, records, 2, "a", now)
        change(db, records, 3, created=stored(records, now))
        change(db, records, 4, subject="held")
        change(db, records, 5, subject=None)
        change(db, records, 8, subject="A")  # another subject, though MariaDB's collation says equal
        recreate(db, records, 6, "a", OLD)
        with db.engine.begin() as conn:
            conn.execute(sa.delete(records.table).where(records.table.c.id == 6))
        outcomes = {o.record.location: o for o in backend.delete(scanned)}
    assert {k: o.status for k, o in outcomes.items()} == {
        "1": Status.DELETED, "2": Status.CHANGED, "3": Status.CHANGED, "4": Status.CHANGED,
        "5": Status.CHANGED, "6": Status.ALREADY_GONE, "7": Status.DELETED, "8": Status.CHANGED}
    assert records.keys() == {"2", "3", "4", "5", "8"}
    assert all(o.error for o in outcomes.values() if o.status is Status.CHANGED), "changed says why"


def test_the_guard_holds_when_a_batch_falls_back_to_one_row_at_a_time(db: Database) -> None:
    """A restricting foreign key fails the batch's statement; the key-by-key retry keeps the guard."""
    records = records_table(db)
    records.add([(k, "a", OLD) for k in range(1, 6)])
    child = db.table(db.name("child"), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("parent", sa.Integer, sa.ForeignKey(records.table.c.id)))
    db.insert(child, [{"id": 1, "parent": 3}])
    with records.backend() as backend:
        scanned = listed(backend)
        change(db, records, 4, subject="held")
        outcomes = {o.record.location: o.status for o in backend.delete(scanned)}
    assert outcomes == {"1": Status.DELETED, "2": Status.DELETED, "3": Status.FAILED, "4": Status.CHANGED,
                        "5": Status.DELETED}
    assert records.keys() == {"3", "4"}


def test_wall_times_in_a_repeated_hour_with_microseconds_compare_exactly(db: Database) -> None:
    """No false ``changed``: naive values in the autumn's repeated hour, with microseconds, are
    compared as stored, not through their UTC reading."""
    records = records_table(db, naive=True, timezone="Europe/Berlin")
    walls = [datetime(2025, 10, 26, 2, 30, 0, 123456), datetime(2025, 10, 26, 2, 59, 59, 999999),
             datetime(2025, 3, 30, 2, 15), datetime(2020, 2, 29, 23, 59, 59, 1)]
    records.add((k, f"s{k}", wall) for k, wall in enumerate(walls, 1))
    with records.backend() as backend:
        outcomes = {o.record.location: o.status for o in backend.delete(listed(backend))}
    assert outcomes == {str(k): Status.DELETED for k in range(1, len(walls) + 1)}
    assert records.keys() == set()


def test_a_record_without_a_stamp_deletes_nothing(records: Records) -> None:
    """A record the backend did not list carries nothing to compare: kept if there, else gone."""
    records.add([(1, "a", OLD)])
    with records.backend() as backend:
        outcomes = {o.record.location: o.status for o in
                    backend.delete([Record("transcripts", "1", OLD), Record("transcripts", "99", OLD)])}
    assert outcomes == {"1": Status.CHANGED, "99": Status.ALREADY_GONE}
    assert records.keys() == {"1"}


def test_anonymize_keeps_the_guard(db: Database) -> None:
    """A row moved to a held subject is not anonymized (``changed``); one anonymized meanwhile is done."""
    records = records_table(db)
    records.add([(1, "a", OLD), (2, "a", OLD), (3, "a", OLD)])
    with records.backend(anonymize={"name": None}) as backend:
        scanned = listed(backend)
        change(db, records, 2, subject="held")
        change(db, records, 3, name=None)
        outcomes = {o.record.location: o.status for o in backend.anonymize(scanned)}
    assert outcomes == {"1": Status.ANONYMIZED, "2": Status.CHANGED, "3": Status.ALREADY_GONE}
    assert db.rows(records.table)[2]["name"] == "name-2"


def test_a_version_column_tells_any_write_and_an_identical_reinsert(db: Database) -> None:
    """With ``version_column`` the guard sees an edit of another column and a row inserted again
    with the same created and subject; without it, both are deleted (the documented limit)."""
    for version_column, expected in (("score", Status.CHANGED), (None, Status.DELETED)):
        records = records_table(db)
        records.db.insert(records.table, [{**records.row(k, "a", OLD), "score": k} for k in (1, 2, 3)])
        with records.backend(version_column=version_column) as backend:
            scanned = listed(backend)
            change(db, records, 1, email="new@example.com", score=11)
            recreate(db, records, 2, "a", OLD)
            change(db, records, 2, score=12)
            outcomes = {o.record.location: o.status for o in backend.delete(scanned)}
        assert outcomes == {"1": expected, "2": expected, "3": Status.DELETED}, version_column


def test_postgresql_inheriting_tables_are_never_listed_counted_or_deleted(db: Database) -> None:
    """A child table that INHERITS the configured one and reuses its keys: scan, survey,
    per-record delete and push-down see and change the parent's own rows only."""
    if db.kind != "postgresql":
        pytest.skip("table inheritance is PostgreSQL's")
    records = records_table(db)
    child = db.name("child")
    db.execute(f'CREATE TABLE "{child}" (extra integer) INHERITS ("{records.table.name}")')
    try:
        records.add([(1, "a", OLD), (2, "a", NOW)])
        db.execute(f'INSERT INTO "{child}" (id, subject, created, email) VALUES '
                   "(1, 'a', now(), 'c1'), (2, 'a', '2019-01-01 00:00:00+00', 'c2'), (3, 'a', '2019-01-01+00', 'c3')")
        cutoff = NOW - timedelta(days=365)
        with records.backend() as backend:
            scanned = listed(backend)
            assert sorted(r.location for r in scanned) == ["1", "2"]
            assert backend.survey(SOURCE, Cutoffs(Action.DELETE, False, frozenset(), default=cutoff)).total == 2
            [due] = [r for r in scanned if r.created <= cutoff]
            assert [o.status for o in backend.delete([due])] == [Status.DELETED]
            everything = Cutoffs(Action.DELETE, False, frozenset(), default=datetime.max.replace(tzinfo=UTC))
            pushed = [o.record.location for b in backend.push_down(SOURCE, PushdownPlan(everything, lambda: everything))
                      for o in b]
        assert pushed == ["2"]
        with db.engine.connect() as conn:
            left = sorted(conn.exec_driver_sql(f'SELECT id, email FROM ONLY "{child}"').all())
        assert left == [(1, "c1"), (2, "c2"), (3, "c3")], "a row of the inheriting table was deleted"
    finally:
        db.execute(f'DROP TABLE "{child}"')


def test_a_created_value_python_cannot_convert_is_a_problem_not_a_stop(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """9999-12-28 passes the database's range check; if its conversion overflows, the scan
    reports that row and goes on, and push-down keeps it and deletes the rest."""
    records = records_table(db)
    far = datetime(9999, 12, 28, tzinfo=UTC) if db.kind != "mariadb" else datetime(2037, 12, 28, tzinfo=UTC)
    records.add([(1, "a", OLD), (2, "b", far), (3, "a", OLD)])
    real = Clock.to_utc

    def overflowing(self: Clock, value: datetime) -> datetime:
        if value.year == far.year:
            raise OverflowError("date value out of range")
        return real(self, value)

    monkeypatch.setattr(Clock, "to_utc", overflowing)
    everything = Cutoffs(Action.DELETE, False, frozenset(), default=datetime.max.replace(tzinfo=UTC))
    with records.backend() as backend:
        items = list(backend.scan(SOURCE))
        pushed = {o.record.location for b in backend.push_down(SOURCE, PushdownPlan(everything, lambda: everything))
                  for o in b}
    [problem] = [p for p in items if isinstance(p, Problem)]
    assert (problem.location, problem.subject) == ("2", "b") and "out of range" in problem.reason
    assert sorted(r.location for r in items if isinstance(r, Record)) == ["1", "3"]
    assert pushed == {"1", "3"} and records.keys() == {"2"}


# -- through the command line, as the defect was seen ------------------------------------------------------
class ChangeAfterScan:
    """A plugin that changes rows out of band just before the first delete batch of a run."""

    def __init__(self) -> None:
        self.records: Records | None = None

    @hookimpl
    def retention_before_delete(self, batch: list[Record], context: Any) -> None:
        records, self.records = self.records, None
        if records is None:
            return
        now = datetime.now(UTC).replace(microsecond=0)
        recreate(records.db, records, 2, "a", now)
        change(records.db, records, 3, created=stored(records, now))
        change(records.db, records, 4, subject="held")


@pytest.fixture
def changer() -> ChangeAfterScan:
    return ChangeAfterScan()


@pytest.fixture
def retention_plugin(changer: ChangeAfterScan) -> Any:
    return [retention_sql, changer]


def test_a_match_source_run_keeps_rows_changed_after_its_scan(db: Database, retention_cli: Any,
                                                              policy_builder: PolicyBuilder, tmp_path: Path,
                                                              changer: ChangeAfterScan) -> None:
    """Issue 15 #1 as reported: a source with ``match`` (the per-record path); between scan and
    delete a key is re-created, a row re-dated to today, a row moved to a subject under a static
    legal hold. Only the untouched rows are deleted; the others are reported ``changed``."""
    records = records_table(db)
    records.add([(k, "a", OLD) for k in range(1, 6)])
    policy = policy_builder.write(
        categories={"chat": {"retain": "1y"}},
        sources=[{"name": "chats", "backend": "sql", "options": records.options, "category": "chat",
                  "match": r"[0-9]+"}],
        subjects=[{"subject_id": "a", "controller": "acme"}, {"subject_id": "held", "controller": "acme"}],
        holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "held"}, "reason": "Smith v. Acme"}],
        limits={"max_fraction": 1.0})
    changer.records = records
    report = tmp_path / "run.json"
    result = retention_cli("run", "-c", policy, "--report", report)
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
    assert records.keys() == {"2", "3", "4"}
    outcomes = {i["location"]: i["outcome"] for i in json.loads(report.read_text())["items"]}
    assert outcomes == {"1": "deleted", "2": "changed", "3": "changed", "4": "changed", "5": "deleted"}
    assert changer.records is None, "the plugin must have changed the rows"


@pytest.mark.parametrize("key_type", [sa.Integer(), sa.String(40), sa.Uuid()], ids=["int", "text", "uuid"])
def test_the_guard_names_rows_by_every_kind_of_key(db: Database, key_type: Any) -> None:
    records = records_table(db, key_type=key_type)
    keys = [uuid.uuid4() for _ in range(3)] if isinstance(key_type, sa.Uuid) else (
        ["k-a", "k-b", "k-c"] if isinstance(key_type, sa.String) else [1, 2, 3])
    records.add([(k, "a", OLD) for k in keys])
    with records.backend() as backend:
        scanned = listed(backend)
        change(db, records, keys[1], subject="held")
        outcomes = {o.record.location: o.status for o in backend.delete(scanned)}
    # (a UUID stored as text may read back as its 32 hex digits: compare what the keys mean)
    norm = (lambda loc: str(uuid.UUID(loc))) if isinstance(key_type, sa.Uuid) else str
    assert {norm(k): v for k, v in outcomes.items()} == {
        str(keys[0]): Status.DELETED, str(keys[1]): Status.CHANGED, str(keys[2]): Status.DELETED}
    assert {norm(k) for k in records.keys()} == {str(keys[1])}


def test_a_text_version_column_is_compared_exactly(db: Database) -> None:
    """'v1' and 'V1' are equal under MariaDB's default collation: the guard compares bytes."""
    records = records_table(db)
    records.add([(1, "a", OLD), (2, "a", OLD)])
    with records.backend(version_column="name") as backend:
        scanned = listed(backend)
        change(db, records, 1, name="NAME-1")
        outcomes = {o.record.location: o.status for o in backend.delete(scanned)}
    assert outcomes == {"1": Status.CHANGED, "2": Status.DELETED}
