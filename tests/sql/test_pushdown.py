"""The set-based path selects exactly what per-record ``decide`` selects, batch by batch."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core import Action, ConfigError, Cutoffs, Options, PushdownPlan, Status, Subject
from retention_core.engine import cutoffs, decide
from retention_sql.backend import SqlBackend
from retention_sql.pushdown import EVERYTHING, HELD, NEVER, UP_TO, CutoffTable

from .conftest import Database, Records, records_table
from .scenarios import NOW, hold, per_record, scenario, set_based


def twin_tables(db: Database, rows: list[Any], **kwargs: Any) -> tuple[Records, Records]:
    first, second = records_table(db, **kwargs), records_table(db, **kwargs)
    first.add(rows)
    second.add(rows)
    return first, second


@pytest.mark.parametrize("after", ["created", "service_end"])
@pytest.mark.parametrize("seed", [1, 2])
def test_push_down_matches_per_record_decisions(db: Database, after: str, seed: int) -> None:
    case = scenario(seed, after=after)
    a, b = twin_tables(db, case.rows)
    ctx, source = case.context(), case.source()
    with a.backend() as backend:
        expected = per_record(backend, source, ctx)
    with b.backend() as backend:
        got, batches = set_based(backend, source, ctx)
    assert expected, "the scenario must delete something"
    assert got == expected, f"only set-based: {sorted(got - expected)[:5]}, per-record: {sorted(expected - got)[:5]}"
    assert a.keys() == b.keys()
    assert all(o.status is Status.DELETED for batch in batches for o in batch)


def test_push_down_matches_with_text_keys_and_naive_columns(db: Database) -> None:
    case = scenario(7, text_keys=True)
    a, b = twin_tables(db, case.rows, key_type=sa.String(32), naive=True, timezone="America/New_York")
    ctx, source = case.context(), case.source()
    with a.backend() as backend:
        expected = per_record(backend, source, ctx)
    with b.backend() as backend:
        got, _ = set_based(backend, source, ctx)
    assert got == expected and a.keys() == b.keys()


def test_outcomes_name_every_deleted_row(records: Records) -> None:
    case = scenario(3)
    records.add(case.rows)
    ctx, source = case.context(), case.source()
    before = {str(k): (s, c) for k, s, c in case.rows}
    with records.backend() as backend:
        _, batches = set_based(backend, source, ctx)
    deleted = [o for batch in batches for o in batch]
    assert {o.record.location for o in deleted} == set(before) - records.keys()
    for outcome in deleted:
        subject, created = before[outcome.record.location]
        assert outcome.record.subject == subject
        assert outcome.record.created == created
        assert outcome.record.source == source.name and outcome.record.category == case.category.name
        assert decide(outcome.record, ctx).action is Action.DELETE


def test_each_batch_is_one_key_range_of_at_most_batch_size(records: Records) -> None:
    case = scenario(4, count=400)
    records.add(case.rows)
    with records.backend(batch_size=25) as backend:
        _, batches = set_based(backend, case.source(), case.context())
    ordered = sorted(int(k) for k, _, _ in case.rows)
    assert len(batches) > 3
    previous_max = None
    for batch in batches:
        keys = sorted(int(o.record.location) for o in batch)
        assert len(keys) <= 25
        # Every key of the batch lies within one run of 25 consecutive keys of the table.
        span = ordered.index(keys[-1]) - ordered.index(keys[0])
        assert span < 25
        assert previous_max is None or keys[0] > previous_max
        previous_max = keys[-1]


def test_a_hold_placed_between_batches_protects_the_rest(db: Database, tmp_path: Path) -> None:
    """Another connection places a hold after the first batch; refresh must see it from then on.

    Each batch is handed over before it commits (so the core can journal it first): on SQLite
    the hold store must then be another database file, as the state store is in practice.
    """
    rows = [(key, "victim" if key % 2 else "other", NOW - timedelta(days=3000)) for key in range(1, 201)]
    case = scenario(0)
    case.rows = rows
    records = records_table(db)
    records.add(rows)
    hold_url = f"sqlite:///{tmp_path}/holds.db" if db.url.startswith("sqlite") else db.url
    reader = sa.create_engine(hold_url)  # the hold store: a separate connection
    holds_table = sa.Table(db.name("holds"), sa.MetaData(), sa.Column("subject", sa.String(64), primary_key=True))
    holds_table.create(reader)
    source = case.source()

    def refresh() -> Any:
        with reader.connect() as conn:
            held = tuple(hold(f"H-{s}", subject=s) for s in conn.execute(sa.select(holds_table.c.subject)).scalars())
        return cutoffs(source, case.context(holds=held))

    deleted_per_batch = []
    with records.backend(batch_size=40) as backend:
        for n, batch in enumerate(backend.push_down(source, PushdownPlan(refresh(), refresh))):
            deleted_per_batch.append({o.record.subject for o in batch})
            if n == 0:
                with reader.begin() as conn:
                    conn.execute(holds_table.insert().values(subject="victim"))
    holds_table.drop(reader)
    reader.dispose()
    assert deleted_per_batch[0] == {"victim", "other"}
    assert all(subjects == {"other"} for subjects in deleted_per_batch[1:])
    # The first range (keys 1-40) lost its victims; every later victim is kept.
    assert records.keys() == {str(k) for k in range(41, 201) if k % 2}


def test_a_hold_on_the_whole_source_mid_run_stops_it(records: Records) -> None:
    case = scenario(0)
    case.rows = [(key, "x", NOW - timedelta(days=3000)) for key in range(1, 101)]
    records.add(case.rows)
    source = case.source()
    calls = []

    def refresh() -> Any:
        calls.append(1)
        held = (hold("H-all", source=source.name),) if len(calls) > 2 else ()
        return cutoffs(source, case.context(holds=held))

    with records.backend(batch_size=30) as backend:
        batches = list(backend.push_down(source, PushdownPlan(refresh(), refresh)))
    assert [len(b) for b in batches] == [30]
    assert len(records.keys()) == 70


def test_held_source_touches_nothing(records: Records) -> None:
    case = scenario(5)
    records.add(case.rows)
    held = case.holds + (hold("H-cat", category=case.category.name),)
    with records.backend() as backend:
        got, batches = set_based(backend, case.source(), case.context(holds=held))
    assert got == set() and batches == []
    assert len(records.keys()) == len(case.rows)


def test_without_returning_the_result_is_the_same(db: Database) -> None:
    """Dialects without DELETE … RETURNING lock and list the rows first, in the same transaction."""
    case = scenario(8)
    a, b = twin_tables(db, case.rows)
    ctx, source = case.context(), case.source()
    with a.backend() as backend:
        expected, _ = set_based(backend, source, ctx)
    with b.backend() as backend:
        backend.ops.returning = False
        got, _ = set_based(backend, source, ctx)
    assert got == expected and a.keys() == b.keys()


def test_a_failing_batch_falls_back_to_rows_and_reports_the_failure(db: Database) -> None:
    """A restricting foreign key fails the range; its other due rows are still deleted one by one."""
    records = records_table(db)
    rows = [(key, "x", NOW - timedelta(days=3000)) for key in range(1, 31)]
    records.add(rows)
    child = db.table(db.name("child"), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("parent", sa.Integer, sa.ForeignKey(records.table.c.id, ondelete="RESTRICT")))
    db.insert(child, [{"id": 1, "parent": 7}])
    case = scenario(0)
    case.rows = rows
    with records.backend(batch_size=10) as backend:
        got, batches = set_based(backend, case.source(), case.context())
    outcomes = {o.record.location: o for batch in batches for o in batch}
    assert outcomes["7"].status is Status.FAILED and outcomes["7"].error
    assert {loc for loc, o in outcomes.items() if o.status is Status.DELETED} == {str(k) for k in range(1, 31)} - {"7"}
    assert records.keys() == {"7"}


def test_per_record_delete_reports_a_restricted_row_as_failed(db: Database) -> None:
    records = records_table(db)
    records.add([(key, "x", NOW - timedelta(days=3000)) for key in range(1, 6)])
    child = db.table(db.name("child"), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("parent", sa.Integer, sa.ForeignKey(records.table.c.id)))
    db.insert(child, [{"id": 1, "parent": 3}])
    case = scenario(0)
    with records.backend() as backend:
        scanned = list(backend.scan(case.source()))
        outcomes = {o.record.location: o.status for o in backend.delete(scanned)}
    assert outcomes == {"1": Status.DELETED, "2": Status.DELETED, "3": Status.FAILED, "4": Status.DELETED,
                        "5": Status.DELETED}
    assert records.keys() == {"3"}


def test_subjects_that_only_look_alike_are_kept_apart(db: Database) -> None:
    """'Acme', 'acme', 'acme ' and 'ACME' are four subjects, whatever the column's collation says."""
    case = scenario(0)
    old = NOW - timedelta(days=30)
    case.rows = [(1, "Acme", old), (2, "acme", old), (3, "acme ", old), (4, "ACME", old), (5, "ünï", old),
                 (6, "unï", old)]
    a, b = twin_tables(db, case.rows)
    ctx, source = case.context(), case.source()
    with a.backend() as backend:
        expected = per_record(backend, source, ctx)
    with b.backend() as backend:
        got, _ = set_based(backend, source, ctx)
    # Acme is a minor and ünï is a minor: due at once; the rest are only 30 days old.
    assert expected == {"1", "5"}
    assert got == expected


def test_integer_subjects_match_their_text(db: Database) -> None:
    """Subject 7 is the text '7' in both paths; '07' is another subject that owns no row."""
    case = scenario(0)
    case.subjects = {"7": Subject("7", minor=True), "07": Subject("07", minor=True), "8": Subject("8")}
    old = NOW - timedelta(days=30)
    rows = [(1, 7, old), (2, 8, old), (3, 7, old), (4, None, old)]
    tables = []
    for _ in range(2):
        table = db.table(db.name("intsub"), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("subject", sa.Integer), sa.Column("created", db.aware_timestamp() or
                                                                     db.naive_timestamp()),
                         sa.Column("email", sa.String(20)))
        value = (lambda t: t) if db.aware_timestamp() else (lambda t: t.replace(tzinfo=None))
        db.insert(table, [{"id": k, "subject": s, "created": value(c), "email": "e"} for k, s, c in rows])
        tables.append(table)
    options = {"url": db.url, "key": "id", "subject": "subject", "created": "created"}
    if not db.aware_timestamp():
        options["timezone"] = "UTC"
    ctx, source = case.context(), case.source()
    with SqlBackend(Options({**options, "table": str(tables[0].name)})) as backend:
        assert {r.subject for r in backend.scan(source)} == {"7", "8", None}
        expected = per_record(backend, source, ctx)
    with SqlBackend(Options({**options, "table": str(tables[1].name)})) as backend:
        got, _ = set_based(backend, source, ctx)
    assert expected == {"1", "3"} and got == expected


def test_a_table_in_another_schema(db: Database) -> None:
    """``schema`` names where the table lives (PostgreSQL schema, MariaDB database, SQLite attached file)."""
    schema = {"sqlite": "main", "postgresql": f"rs_{db.name('s')}", "mariadb": "test"}[db.kind]
    if db.kind == "postgresql":
        db.execute(f'CREATE SCHEMA "{schema}"')
    try:
        records = records_table(db, schema=schema)
        case = scenario(9)
        records.add(case.rows)
        with records.backend(schema=schema) as backend:
            backend.check(case.source())
            expected = {r.location for r in backend.scan(case.source())
                        if decide(r, case.context()).action is Action.DELETE}
            got, _ = set_based(backend, case.source(), case.context())
        assert expected and got == expected
        for hostile in ("no_such_schema", f'{schema}"; DROP TABLE {records.table.name}; --'):
            with records.backend(schema=hostile) as backend, pytest.raises(ConfigError, match="no schema") as caught:
                backend.check(case.source())
            assert caught.value.key == "sources[0].options.schema"
    finally:
        db.drop_all()
        if db.kind == "postgresql":
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_cutoff_table_follows_every_refresh(db: Database) -> None:
    """Holds come and go, a request appears: after each sync the table is exactly the plan."""
    records = records_table(db)
    day = datetime(2024, 1, 1, tzinfo=timezone.utc)
    everything = datetime.max.replace(tzinfo=timezone.utc)
    base = {"a": day, "b": None, "c": everything, "d": day - timedelta(days=1)}
    plans = [
        Cutoffs(Action.DELETE, False, frozenset(), base, default=day),
        Cutoffs(Action.DELETE, False, frozenset({"c", "x"}), base, default=day),
        Cutoffs(Action.DELETE, False, frozenset({"x"}), base, default=day),
        Cutoffs(Action.DELETE, False, frozenset({"x"}), {**base, "a": everything}, default=day),
        Cutoffs(Action.DELETE, False, frozenset(), {**base, "a": everything}, default=None),
    ]
    expected_modes = [
        {"b": NEVER, "c": EVERYTHING, "d": UP_TO},
        {"b": NEVER, "c": HELD, "d": UP_TO, "x": HELD},
        {"b": NEVER, "c": EVERYTHING, "d": UP_TO, "x": HELD},
        {"a": EVERYTHING, "b": NEVER, "c": EVERYTHING, "d": UP_TO, "x": HELD},
        {"a": EVERYTHING, "c": EVERYTHING, "d": UP_TO},  # 'b' now equals the default (None): no row
    ]
    with records.backend() as backend, backend.engine.connect() as conn:
        table = CutoffTable(backend.ops)
        for plan, modes in zip(plans, expected_modes, strict=True):
            with conn.begin():
                table.sync(conn, plan)
                rows = {backend.flavor.probe_value(s): m for s, m in modes.items()}
                got = dict(conn.execute(sa.select(table.table.c.s, table.table.c.mode)).all())
            assert {bytes(k) if isinstance(k, (bytes, bytearray, memoryview)) else k: v for k, v in got.items()} \
                == rows
        table.drop(conn)


def test_many_subjects_cost_little_per_batch(records: Records) -> None:
    """A service-end plan with 100,000 ended subjects: loaded once, not once per batch."""
    everything = NOW.replace(year=9999, month=12, day=31)
    per_subject = {f"s{i:06d}": everything for i in range(100_000)}
    plan = Cutoffs(Action.DELETE, False, frozenset({"s000001"}), per_subject, default=None)
    records.add((k, f"s{k % 1000:06d}", NOW - timedelta(days=1)) for k in range(1, 2001))
    started = time.monotonic()
    with records.backend(batch_size=50) as backend:
        batches = list(backend.push_down(scenario(0).source(), PushdownPlan(plan, lambda: plan)))
    assert len(batches) == 40
    assert records.keys() == {str(k) for k in range(1, 2001) if k % 1000 == 1}
    assert time.monotonic() - started < 60
