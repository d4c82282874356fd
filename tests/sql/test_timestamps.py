"""Naive and aware created columns, daylight-saving changes, and values that are not timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from retention_core import Action, Cutoffs, Problem, PushdownPlan, Record, Status
from retention_sql.clock import latest_local_at_or_before, local_to_utc

from .conftest import Database, records_table
from .scenarios import NOW, scenario

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ALL = datetime.max.replace(tzinfo=UTC)


# -- the clock, without a database ------------------------------------------------------------------------
@pytest.mark.parametrize(("zone", "local", "utc"), [
    (BERLIN, "2026-03-29 01:59:59", "2026-03-29 00:59:59"),
    (BERLIN, "2026-03-29 02:30:00", "2026-03-29 01:00:00"),  # never shown: the instant the clocks jumped
    (BERLIN, "2026-03-29 03:00:00", "2026-03-29 01:00:00"),
    (BERLIN, "2026-10-25 02:30:00", "2026-10-25 01:30:00"),  # shown twice: the later one
    (BERLIN, "2026-10-25 01:59:59", "2026-10-24 23:59:59"),
    (NEW_YORK, "2026-03-08 02:15:00", "2026-03-08 07:00:00"),
    (NEW_YORK, "2026-11-01 01:30:00", "2026-11-01 06:30:00"),
    (NEW_YORK, "2026-07-01 12:00:00", "2026-07-01 16:00:00"),
])
def test_wall_times_map_to_utc(zone: ZoneInfo, local: str, utc: str) -> None:
    assert local_to_utc(datetime.fromisoformat(local), zone) == datetime.fromisoformat(utc).replace(tzinfo=UTC)


_AROUND = st.sampled_from([datetime(2026, 3, 29, 2), datetime(2026, 10, 25, 2), datetime(2026, 3, 8, 2),
                           datetime(2026, 11, 1, 1), datetime(2026, 6, 1, 12)])
_OFFSET = st.integers(min_value=-3 * 3600 * 10**6, max_value=3 * 3600 * 10**6)


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), UTC]), centre=_AROUND,
       a=_OFFSET, b=_OFFSET, c=_OFFSET)
def test_one_bound_in_wall_time_selects_exactly_the_due_values(zone: Any, centre: datetime, a: int, b: int,
                                                              c: int) -> None:
    """``local_to_utc(x) <= cutoff`` exactly when ``x <= bound(cutoff)``: the set-based comparison is exact."""
    x, y = centre + timedelta(microseconds=a), centre + timedelta(microseconds=b)
    if x <= y:
        assert local_to_utc(x, zone) <= local_to_utc(y, zone), "local → UTC must never go backwards"
    cutoff = (centre + timedelta(microseconds=c)).replace(tzinfo=UTC) - timedelta(hours=1)
    bound = latest_local_at_or_before(cutoff, zone)
    assert (local_to_utc(x, zone) <= cutoff) == (x <= bound)


# -- in the database ------------------------------------------------------------------------------------------
def _walls(start: datetime, hours: int, step: timedelta) -> list[datetime]:
    out, t = [], start
    while t < start + timedelta(hours=hours):
        out.append(t)
        t += step
    return out


def test_naive_times_around_dst_changes_read_and_delete_exactly(db: Database) -> None:
    """Rows every 7 minutes across both changes; one subject per cutoff near each change."""
    records = records_table(db, naive=True, timezone="Europe/Berlin")
    walls = _walls(datetime(2026, 3, 28, 23), 5, timedelta(minutes=7)) \
        + _walls(datetime(2026, 10, 24, 23), 5, timedelta(minutes=7)) \
        + [datetime(2026, 3, 29, 1, 59, 59, 999999), datetime(2026, 10, 25, 2, 59, 59, 999999)]
    cutoffs = {f"c{i}": c for i, c in enumerate(
        [datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC),
         datetime(2026, 3, 29, 1, 20, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
         datetime(2026, 10, 25, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
         datetime(2026, 10, 25, 2, 0, 0, 1, tzinfo=UTC)])}
    rows = []
    for n, subject in enumerate(cutoffs):
        rows += [(n * 1000 + i, subject, wall) for i, wall in enumerate(walls)]
    db.insert(records.table, [records.row(k, s, w) for k, s, w in rows])
    source = scenario(0).source()
    plan = Cutoffs(Action.DELETE, held=False, held_subjects=frozenset(), per_subject=cutoffs, default=None)
    with records.backend() as backend:
        scanned = {r.location: r for r in backend.scan(source)}
        assert scanned["1"].created == datetime(2026, 3, 28, 22, 7, tzinfo=UTC)  # 23:07 CET
        due = {loc for loc, r in scanned.items() if plan.due(r.subject, r.created)}
        pushed = {o.record.location for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan))
                  for o in batch}
    assert len(scanned) == len(rows)
    assert 0 < len(due) < len(rows)
    assert pushed == due
    assert records.keys() == set(scanned) - due


def test_naive_and_aware_columns_agree_on_instants(db: Database) -> None:
    if db.aware_timestamp() is None:
        pytest.skip("SQLite has no timestamp type that stores instants")
    instants = [datetime(2026, 3, 29, 0, 30, tzinfo=UTC) + timedelta(minutes=20 * i) for i in range(9)]
    naive = records_table(db, naive=True, timezone="Europe/Berlin")
    aware = records_table(db, naive=False)
    walls = [t.astimezone(BERLIN).replace(tzinfo=None) for t in instants]
    db.insert(naive.table, [naive.row(i, "s", wall) for i, wall in enumerate(walls)])
    aware.add((i, "s", t) for i, t in enumerate(instants))
    source = scenario(0).source()
    with naive.backend() as a, aware.backend() as b:
        assert {r.location: r.created for r in a.scan(source)} == {r.location: r.created for r in b.scan(source)}
        assert {r.created for r in b.scan(source)} == set(instants)


def test_rows_without_a_usable_created_value_are_problems_never_deleted(db: Database) -> None:
    """NULL everywhere; SQLite junk text, impossible dates and years past the range; PostgreSQL
    infinity and a year past 9999; MariaDB zero dates. Each is a Problem naming its key and
    subject, the scan goes on past it, and an erasure (every row due) deletes none of them."""
    records = records_table(db, naive=True)
    good = datetime(2020, 1, 1, 12, 0)
    records.add([(1, "minor", good), (2, "minor", None)])
    bad_keys = {"2"}
    if db.kind == "sqlite":
        junk = ["yesterday", "2026-02-30 00:00:00", "2026-01-01 24:00:00", "2020-01-01", "2020-01-01 12:00:00+02:00",
                "2020-01-01 12:00:00.1234567", "1577880000", "9999-12-31 23:59:59", "0001-01-01 00:00:00"]
        for n, text in enumerate(junk, start=10):
            db.execute(f"INSERT INTO {records.table.name} (id, subject, created, email) VALUES (:k, 'minor', :c, 'e')",
                       {"k": n, "c": text})
            bad_keys.add(str(n))
        db.execute(f"INSERT INTO {records.table.name} (id, subject, created, email) VALUES "
                   "(30, 'minor', '2020-01-01T12:00:00.5', 'e'), (31, 'minor', '2020-01-01 12:00:00.25', 'e')")
    elif db.kind == "postgresql":
        db.execute(f"INSERT INTO {records.table.name} (id, subject, created, email) VALUES "
                   "(10, 'minor', 'infinity', 'e'), (11, 'minor', '-infinity', 'e'), "
                   "(12, 'minor', '10000-01-01 00:00:00', 'e')")
        bad_keys |= {"10", "11", "12"}
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
            conn.exec_driver_sql(f"INSERT INTO {records.table.name} (id, subject, created, email) VALUES "
                                 "(10, 'minor', '0000-00-00 00:00:00', 'e'), (11, 'minor', '2026-00-15 00:00:00', 'e')")
        bad_keys |= {"10", "11"}
    source = scenario(0).source()
    everything = Cutoffs(Action.DELETE, held=False, held_subjects=frozenset(), per_subject={"minor": ALL})
    with records.backend() as backend:
        listed = list(backend.scan(source))
        scanned = {r.location: r.created for r in listed if isinstance(r, Record)}
        problems = {p.location: p for p in listed if isinstance(p, Problem)}
        pushed = {o.record.location for batch in backend.push_down(source, PushdownPlan(everything, lambda: everything))
                  for o in batch}
    assert not bad_keys & set(scanned), "a value that is not a timestamp was listed"
    assert set(problems) == bad_keys, "every unusable row is reported, once"
    assert all(p.subject == "minor" and "created" in p.reason for p in problems.values())
    assert "NULL" in problems["2"].reason
    assert pushed == set(scanned) and "1" in pushed
    if db.kind == "sqlite":
        assert scanned["30"] == datetime(2020, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
        assert scanned["31"] == datetime(2020, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert records.keys() == bad_keys


def test_fractional_text_compares_like_the_time_it_means(tmp_path: Any) -> None:
    """SQLite: '…:00.5' and '…:00.500000' are the same instant for the bound comparison."""
    from .conftest import Database as Db

    url = f"sqlite:///{tmp_path / 'f.db'}"
    db = Db("sqlite", url, sa.create_engine(url))
    records = records_table(db, naive=True)
    values = ["2020-01-01 12:00:00.5", "2020-01-01 12:00:00.499999", "2020-01-01 12:00:00",
              "2020-01-01 12:00:00.500001", "2020-01-01T12:00:00.6"]
    for n, text in enumerate(values, start=1):
        db.execute(f"INSERT INTO {records.table.name} (id, subject, created, email) VALUES (:k, 's', :c, 'e')",
                   {"k": n, "c": text})
    cut = Cutoffs(Action.DELETE, held=False, held_subjects=frozenset(),
                  default=datetime(2020, 1, 1, 12, 0, 0, 500000, tzinfo=UTC))
    source = scenario(0).source()
    with records.backend() as backend:
        pushed = {o.record.location for batch in backend.push_down(source, PushdownPlan(cut, lambda: cut))
                  for o in batch}
    assert pushed == {"1", "2", "3"}
    db.engine.dispose()


def test_scan_streams(db: Database) -> None:
    """Server-side cursors on PostgreSQL and MariaDB; short keyset pages on SQLite. The usable
    rows are listed first, then (one more statement, or page) those that are problems."""
    records = records_table(db)
    records.add((i, "s", NOW - timedelta(days=i)) for i in range(1, 121))
    seen: list[tuple[str, Any]] = []
    with records.backend(batch_size=50) as backend:
        @sa.event.listens_for(backend.engine, "before_cursor_execute")
        def _spy(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            if statement.lstrip().upper().startswith("SELECT") and records.table.name in statement:
                seen.append((statement, context.execution_options.get("stream_results")))

        listing = backend.scan(scenario(0).source())
        assert seen == [], "scan must not query before it is iterated"
        assert len(list(listing)) == 120
    if db.kind == "sqlite":
        assert len(seen) == 4 and all("LIMIT" in s.upper() for s, _ in seen)
    else:
        assert len(seen) == 2 and all(streaming is True for _, streaming in seen)


def test_outcome_status_of_a_timestamp_record(records: Any) -> None:
    """A deleted record's created is the aware instant that was stored."""
    when = datetime(2021, 5, 5, 5, 5, 5, 5, tzinfo=UTC)
    records.add([(1, "s", when)])
    with records.backend() as backend:
        [record] = backend.scan(scenario(0).source())
        [outcome] = backend.delete([record])
    assert record.created == when and outcome.status is Status.DELETED


def test_a_session_zone_other_than_utc_reads_the_same_instants(db: Database) -> None:
    """PostgreSQL hands timestamptz back in the session's zone; ours is set to UTC on connect,
    so a server or role default like Asia/Kolkata changes neither values nor selections."""
    if db.kind != "postgresql":
        pytest.skip("the session zone only shapes how PostgreSQL returns timestamptz values")
    url = sa.engine.make_url(db.url).update_query_dict({"options": "-c timezone=Asia/Kolkata"})
    native = sa.create_engine(url)
    with native.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Kolkata", "the option must take effect"
    native.dispose()
    records = records_table(db)
    instants = {i: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=7 * i, microseconds=i) for i in range(1, 41)}
    records.add((i, "s", t) for i, t in instants.items())
    cutoff = instants[20]
    plan = Cutoffs(Action.DELETE, False, frozenset(), default=cutoff)
    source = scenario(0).source()
    with records.backend(url=url.render_as_string(hide_password=False), batch_size=7) as backend:
        with backend.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "UTC"
        scanned = {r.location: r.created for r in backend.scan(source)}
        assert backend.survey(source, plan).due == 20
        deleted = [o.record for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan)) for o in batch]
    assert scanned == {str(i): t for i, t in instants.items()}
    assert {r.location: r.created for r in deleted} == {str(i): t for i, t in instants.items() if t <= cutoff}
    assert all(r.created.utcoffset() == timedelta(0) for r in deleted)
