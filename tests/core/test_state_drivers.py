"""The state store behaves the same through either driver (retention_core/statedb.py).

SQLite files go through sqlite3, every other URL through SQLAlchemy, with one set of SQL
statements: each test here runs on sqlite3, on SQLAlchemy's SQLite, on PostgreSQL and on
MariaDB (the last two skip locally without the service and fail without it under CI=true).
Stores made before the sqlite3 driver were written by SQLAlchemy Core: those tests at the end
write with SQLAlchemy and read with sqlite3, and the other way round.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention_core import state as state_module
from retention_core.errors import ConfigError, LockedError
from retention_core.model import HoldScope
from retention_core.state import StateStore, host_id
from retention_core.statedb import SqlAlchemyDatabase, SqliteDatabase
from retention_core.testing import require_service
from tests.support import reachable

UTC = timezone.utc
POSTGRES = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB = os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(params=["sqlite3", "sqlalchemy-sqlite", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty state store of each kind."""
    if request.param == "sqlite3":
        yield f"sqlite:///{tmp_path}/state.db"
    elif request.param == "sqlalchemy-sqlite":
        yield f"sqlite+pysqlite:///{tmp_path}/state.db"
    else:
        server = POSTGRES if request.param == "postgresql" else MARIADB
        require_service(reachable(server), f"{request.param} at {server}")
        name = f"st_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(server)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE {'SCHEMA' if request.param == 'postgresql' else 'DATABASE'} {name}")
        try:
            yield (f"{server}?options=-csearch_path%3D{name}" if request.param == "postgresql"
                   else server.rsplit("/", 1)[0] + f"/{name}")
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP {'SCHEMA' if request.param == 'postgresql' else 'DATABASE'} {name}"
                                     + (" CASCADE" if request.param == "postgresql" else ""))
            engine.dispose()


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    s = StateStore(url)
    yield s
    s.close()


def test_the_driver_follows_the_url(tmp_path: Path) -> None:
    assert isinstance(StateStore(f"sqlite:///{tmp_path}/a.db").db, SqliteDatabase)
    assert isinstance(StateStore(f"sqlite+pysqlite:///{tmp_path}/b.db").db, SqlAlchemyDatabase)


def test_instants_come_back_exact_and_in_utc(store: StateStore) -> None:
    """Microseconds kept; an instant given in another zone is the same instant, shown in UTC."""
    placed = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2)))
    hold = store.place_hold("LH-1", "legal", HoldScope(subject="acme"), "r", by="counsel", now=placed)
    assert hold.placed_at == placed and hold.placed_at.tzinfo == UTC
    assert hold.placed_at.hour == 3
    released = store.release_hold("LH-1", "settled", by="c2", now=placed + timedelta(days=1))
    assert released.released_at == placed + timedelta(days=1)


def test_holds_place_release_and_order(store: StateStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.place_hold("B", "dispute", HoldScope(category="email"), "r", now=t0 + timedelta(seconds=1))
    store.place_hold("A", "legal", HoldScope(subject="s", source="mail"), "r", now=t0 + timedelta(seconds=1))
    store.place_hold("C", "legal", HoldScope(subject="s"), "r", now=t0)
    assert [h.id for h in store.holds()] == ["C", "A", "B"]  # by placed_at, then id
    assert store.hold("A").scope == HoldScope(subject="s", source="mail")
    store.release_hold("A", "done")
    assert [h.id for h in store.holds(include_released=False)] == ["C", "B"]
    with pytest.raises(ConfigError, match="already exists"):
        store.place_hold("A", "legal", HoldScope(subject="x"), "r")
    with pytest.raises(ConfigError, match="already released"):
        store.release_hold("A", "again")


def test_erasure_requests_open_done_held_withdrawn(store: StateStore) -> None:
    received = datetime(2026, 5, 1, 12, tzinfo=UTC)
    first = store.add_request("acme", "ctrl", received, ticket="T-1")
    with pytest.raises(ConfigError, match="already has an open erasure request"):
        store.add_request("acme", "ctrl", received)
    store.mark_requests("acme", "run-1", received + timedelta(days=1), held_remaining=3)
    assert store.request(first.id).held_remaining == 3  # type: ignore[union-attr]
    store.mark_requests("acme", "run-2", received + timedelta(days=2), held_remaining=0)
    done = store.request(first.id)
    assert done is not None and done.done_run == "run-2" and done.done_at == received + timedelta(days=2)
    second = store.add_request("acme", "ctrl", received + timedelta(days=3))
    withdrawn = store.withdraw_request(second.id, "sent in error", by="dpo")
    assert withdrawn.withdrawn_by == "dpo" and withdrawn.due_at == second.due_at
    assert [r.id for r in store.requests()] == [first.id, second.id]
    assert store.request("nope") is None


def test_runs_and_what_a_later_run_reads_of_them(store: StateStore) -> None:
    as_of = datetime(2026, 6, 1, tzinfo=UTC)
    store.start_run("r1", as_of, dry_run=False)
    store.start_run("r2", as_of + timedelta(days=1), dry_run=True)
    store.start_run("r3", as_of + timedelta(days=2), dry_run=False)
    assert store.crashed_runs("r3") == ["r1"]
    store.finish_run("r1", "ok", audit_seq=7, audit_hash="h7")
    store.finish_run("r2", "ok", audit_seq=9, audit_hash="h9")
    assert store.last_run_time() == as_of  # enforcing and finished only
    assert store.last_audit_head() == (9, "h9")
    info = store.run("r2")
    assert info is not None and info.dry_run is True and info.status == "ok" and info.as_of == as_of + timedelta(days=1)
    assert store.run("r1").dry_run is False  # type: ignore[union-attr]
    assert store.run("none") is None


def test_the_audit_head_only_moves_forward(store: StateStore) -> None:
    store.record_audit_head(5, "h5")
    store.record_audit_head(3, "h3")
    assert store.audit_head() == (5, "h5")
    store.record_audit_head(8, "h8")
    assert store.audit_head() == (8, "h8")


def test_the_store_id_is_made_once(store: StateStore, url: str) -> None:
    made = store.store_id()
    again = StateStore(url)
    try:
        assert again.store_id() == made
    finally:
        again.close()


def test_unsettled_entries_round_trip(store: StateStore) -> None:
    store.add_unsettled("r1", [{"location": "a", "n": 1}, {"location": "b\u00e9", "n": 2}])
    found = store.unsettled()
    assert [e for _, e in found] == [{"location": "a", "n": 1}, {"location": "b\u00e9", "n": 2}]
    store.drop_unsettled([found[0][0]])
    assert [e["location"] for _, e in store.unsettled()] == ["b\u00e9"]


def test_the_lock_and_the_hold_fence(store: StateStore, url: str) -> None:
    other = StateStore(url)
    try:
        with store.lock("run-a"):
            assert store.holds_lock("run-a")
            with pytest.raises(LockedError, match="run-a"):
                with other.lock("run-b"):
                    pass
            first = store.enter_batch("run-a", "mail", "b1")
            second = store.enter_batch("run-a", "mail", "b2")
            assert second > first
            assert {r.batch for r in other.batches_in_flight()} == {"b1", "b2"}
            store.leave_batch(first)
            assert [r.batch for r in other.batches_in_flight({first, second})] == ["b2"]
            assert other.batches_in_flight(set()) == []
            store.leave_batch(second)
        assert not store.holds_lock("run-a")
        with other.lock("run-b"):  # released: the next run takes it
            assert other.holds_lock("run-b")
    finally:
        other.close()


def test_a_stale_lock_is_taken_over(store: StateStore, url: str) -> None:
    stale = StateStore(url, lock_stale_after=timedelta(seconds=0))
    try:
        with store.db.begin() as conn:
            past = datetime.now(UTC) - timedelta(hours=1)
            conn.execute("INSERT INTO retention_lock (name, run_id, host, pid, acquired_at, refreshed_at)"
                         " VALUES ('run', 'gone', 'elsewhere', 1, :t, :t)", {"t": past})
        with stale.lock("run-b"):
            assert stale.holds_lock("run-b")
    finally:
        stale.close()


# -- stores SQLAlchemy wrote (every store before the sqlite3 driver) -------------------------------------
def test_a_store_sqlalchemy_wrote_reads_the_same_through_sqlite3(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    state_module.metadata.create_all(engine)
    placed = datetime(2025, 12, 24, 18, 30, 1, 250000, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(state_module.holds_table.insert().values(
            id="LH-9", kind="legal", scope_subject="acme", reason="case", placed_by="counsel", placed_at=placed))
        conn.execute(state_module.runs_table.insert().values(
            run_id="old", started_at=placed, as_of=placed, dry_run=False, status="ok", finished_at=placed,
            audit_seq=4, audit_hash="h4"))
        conn.execute(state_module.lock_table.insert().values(
            name="run", run_id="old-run", host=host_id(), pid=os.getpid(), acquired_at=placed,
            refreshed_at=datetime.now(UTC)))
    engine.dispose()
    store = StateStore(f"sqlite:///{path}")
    try:
        assert isinstance(store.db, SqliteDatabase)
        hold = store.hold("LH-9")
        assert hold.placed_at == placed and hold.scope == HoldScope(subject="acme") and hold.active
        assert store.last_run_time() == placed and store.last_audit_head() == (4, "h4")
        with pytest.raises(LockedError, match="old-run"):  # this very process holds it: alive
            store._acquire("new")
    finally:
        store.close()


def test_what_sqlite3_writes_sqlalchemy_reads_as_the_same_instants(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    store = StateStore(url)
    placed = datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    store.place_hold("LH-1", "dispute", HoldScope(category="voice"), "r", by="x", now=placed)
    store.close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.select(state_module.holds_table)).one()
    engine.dispose()
    assert row.placed_at == placed.replace(tzinfo=None) and row.scope_category == "voice"


def test_a_store_older_than_its_columns_gets_them(tmp_path: Path) -> None:
    """Stores made before the lock's heartbeat and the requests' tickets lack those columns."""
    path = tmp_path / "older.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE retention_lock (name VARCHAR(50) NOT NULL, run_id VARCHAR(64) NOT NULL,
          host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, acquired_at DATETIME NOT NULL, PRIMARY KEY (name));
        CREATE TABLE retention_erasure_requests (id VARCHAR(64) NOT NULL, subject VARCHAR(500) NOT NULL,
          controller VARCHAR(500) NOT NULL, received_at DATETIME NOT NULL, due_at DATETIME NOT NULL,
          done_at DATETIME, done_run VARCHAR(64), held_remaining INTEGER NOT NULL, PRIMARY KEY (id));
        INSERT INTO retention_erasure_requests VALUES ('r1', 'acme', 'c', '2026-01-01 00:00:00.000000',
          '2026-01-31 00:00:00.000000', NULL, NULL, 0);
    """)
    db.close()
    store = StateStore(f"sqlite:///{path}")
    try:
        request = store.request("r1")
        assert request is not None and request.ticket is None
        assert request.received_at == datetime(2026, 1, 1, tzinfo=UTC)
        with store.lock("run-x"):
            assert store.holds_lock("run-x")
    finally:
        store.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(retention_lock)")}
    assert "refreshed_at" in columns


def test_an_unreadable_store_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"cannot open state store 'sqlite:///.*state\.db': file is not a database"):
        StateStore(f"sqlite:///{tmp_path}/state.db")


def test_ids_differing_only_in_case_are_two_holds(store: StateStore) -> None:
    """Red team, C5/H2: MariaDB's default collation made CASE-1 and case-1 one row."""
    store.place_hold("CASE-1", "legal", HoldScope(subject="initech"), "r")
    store.place_hold("case-1", "legal", HoldScope(subject="umbrella"), "r")
    store.place_hold("case-1 ", "legal", HoldScope(subject="hooli"), "trailing space")
    assert sorted(h.id for h in store.holds()) == ["CASE-1", "case-1", "case-1 "]
    store.release_hold("case-1", "done")
    assert store.hold("CASE-1").active and store.hold("case-1 ").active
    store.add_request("ACME", "c", datetime(2026, 1, 1, tzinfo=UTC))
    store.add_request("acme", "c", datetime(2026, 1, 1, tzinfo=UTC))  # another subject


def test_a_mariadb_store_that_ignores_case_is_refused() -> None:
    require_service(reachable(MARIADB), f"mariadb at {MARIADB}")
    name = f"st_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(MARIADB)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    url = MARIADB.rsplit("/", 1)[0] + f"/{name}"
    try:
        old = sa.create_engine(url)
        with old.begin() as conn:  # as a store made before exact text: the database's collation
            conn.exec_driver_sql("CREATE TABLE retention_holds (id VARCHAR(200) NOT NULL PRIMARY KEY)")
        old.dispose()
        with pytest.raises(ConfigError, match=r"retention_holds\.id compares text with collation utf8mb4_general_ci"):
            StateStore(url)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        engine.dispose()


def test_of_concurrent_releases_or_requests_exactly_one_wins(url: str) -> None:
    """Red team, H1: on PostgreSQL and MariaDB a hold was released twice, and one subject got
    two open erasure requests, when commands ran at once (check, then write)."""
    import threading

    stores = [StateStore(url) for _ in range(4)]
    try:
        stores[0].place_hold("SAME", "legal", HoldScope(subject="hooli"), "r")
        for attempt in ("release", "request"):
            barrier = threading.Barrier(len(stores))
            results: list[str] = []

            def act(store: StateStore, attempt: str = attempt, barrier: threading.Barrier = barrier,
                    results: list[str] = results) -> None:
                barrier.wait()
                try:
                    if attempt == "release":
                        store.release_hold("SAME", f"by {id(store)}")
                    else:
                        store.add_request("hooli", "ctrl", datetime(2026, 1, 1, tzinfo=UTC))
                    results.append("done")
                except ConfigError:
                    results.append("refused")

            threads = [threading.Thread(target=act, args=(s,)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(results) == ["done", "refused", "refused", "refused"], (attempt, results)
        assert len([r for r in stores[0].requests() if r.subject == "hooli"]) == 1
    finally:
        for s in stores:
            s.close()


def test_instants_before_the_year_1000_come_back(store: StateStore) -> None:
    """Red team (low): stored as '999-05-31 …' they neither sorted nor parsed back."""
    early = datetime(999, 5, 31, 23, 6, 32, tzinfo=UTC)
    store.place_hold("EARLY", "legal", HoldScope(subject="x"), "r", now=early)
    store.place_hold("LATER", "legal", HoldScope(subject="x"), "r", now=datetime(2000, 1, 1, tzinfo=UTC))
    assert [h.id for h in store.holds()] == ["EARLY", "LATER"]
    assert store.hold("EARLY").placed_at == early


@pytest.mark.parametrize("url", ["sqlite:///\x00.db", "sqlite:///file:f.db?uri=true", "sqlite:///x.db?mode=ro"])
def test_an_unusable_sqlite_url_is_one_line(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red team, H3/H4: a NUL byte was an internal error; a URI filename opened another file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="state"):
        StateStore(url)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_deleting_for_a_stopped_holder_is_told_to_stop(url: str) -> None:
    """A distributed run's workers delete under the main process's lock: when the main process
    is stopped its heartbeat stops, and the workers must stop too (not only the holder)."""
    holder, worker = StateStore(url), StateStore(url)
    try:
        with holder.lock("run-w"):
            assert worker.lock_trouble("run-w") is None
            with holder.db.begin() as conn:
                conn.execute("UPDATE retention_lock SET refreshed_at = :t WHERE run_id = 'run-w'",
                             {"t": datetime.now(UTC) - timedelta(hours=1)})
            assert worker.lock_trouble("run-w") is None  # read again only every few seconds
            worker._owner_checks.clear()
            assert "not refreshed for" in (worker.lock_trouble("run-w") or "")
            assert worker.lock_trouble("run-w") is not None  # for good
    finally:
        holder.close()
        worker.close()
