"""The state store: holds, erasure requests, runs and the run lock.

SQLite by default (through the standard library's sqlite3); any SQLAlchemy URL works
(PostgreSQL is tested). The statements are plain SQL that all of them accept; the tables are
described once, as data (:mod:`retention_core.statedb` says why and how). Holds and requests are
never deleted: a released hold keeps who released it, when and why.

The run lock is one row. Its holder refreshes ``refreshed_at`` every :data:`LOCK_HEARTBEAT`
from a background thread, so a lock whose heartbeat is older than :data:`LOCK_STALE_AFTER`
belongs to a run that died — on another host, or behind a pid the system has since reused —
and is taken over instead of blocking every later run forever. A dead pid on this host is
taken over at once.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import ConfigError, DuplicateKeyError, LockedError, StateStoreError
from .model import ErasureRequest, Hold, HoldScope
from .statedb import Column, Database, Row, Table, in_list, instant, open_database

ERASURE_DEADLINE = timedelta(days=30)
#: How often the lock holder proves it is alive.
LOCK_HEARTBEAT = timedelta(seconds=30)
#: A lock not refreshed for this long is a crashed run's. Far above the heartbeat, so that a
#: slow database or a few minutes of clock skew between hosts never steal a live run's lock.
LOCK_STALE_AFTER = timedelta(minutes=10)
#: How often a process deleting under another's lock (a distributed run's worker) reads the
#: lock's heartbeat (StateStore.lock_trouble).
_OWNER_CHECK_EVERY = 5.0

log = logging.getLogger("retention.state")


def _hold_columns(*, placed_at_required: bool) -> tuple[Column, ...]:
    """A hold's own columns: the state store's holds and the ones hold sources listed share them."""
    return (
        Column("kind", "str", 20, nullable=False),
        Column("scope_subject", "str", 500),
        Column("scope_category", "str", 200),
        Column("scope_source", "str", 200),
        Column("reason", "text", nullable=False),
        Column("placed_by", "str", 200, nullable=False),
        Column("placed_at", "instant", nullable=not placed_at_required),
    )


def _release_columns() -> tuple[Column, ...]:
    """Who released a hold, when and why (released holds are kept)."""
    return (Column("released_by", "str", 200), Column("released_at", "instant"), Column("release_reason", "text"))


HOLDS = Table("retention_holds", (
    Column("id", "str", 200, nullable=False, primary_key=True),
    *_hold_columns(placed_at_required=True),
    *_release_columns(),
))

SOURCE_HOLDS = Table("retention_source_holds", (
    # Every hold a hold source (a case system's export) ever listed, remembered so that a hold
    # which vanishes from its source stays in force until its source says released or a person
    # releases it (retention_core/holdsources.py).
    Column("origin", "str", 200, nullable=False, primary_key=True),  # the hold source's name in the policy
    Column("id", "str", 200, nullable=False, primary_key=True),
    *_hold_columns(placed_at_required=False),  # a case system may not say when
    Column("first_seen_at", "instant", nullable=False),
    Column("vanished_at", "instant"),
    *_release_columns(),
))

REQUESTS = Table("retention_erasure_requests", (
    Column("id", "str", 64, nullable=False, primary_key=True),
    Column("subject", "str", 500, nullable=False, index=True),
    Column("controller", "str", 500, nullable=False),
    Column("received_at", "instant", nullable=False),
    Column("due_at", "instant", nullable=False),
    Column("done_at", "instant"),
    Column("done_run", "str", 64),
    Column("held_remaining", "int", nullable=False),
    Column("ticket", "str", 200),  # the controller's or helpdesk's reference
    Column("withdrawn_at", "instant"),
    Column("withdrawn_by", "str", 200),
    Column("withdraw_reason", "text"),
))

RUNS = Table("retention_runs", (
    Column("run_id", "str", 64, nullable=False, primary_key=True),
    Column("started_at", "instant", nullable=False),
    Column("finished_at", "instant"),
    Column("as_of", "instant", nullable=False),
    Column("dry_run", "bool", nullable=False),
    Column("status", "str", 40, nullable=False),
    Column("actor", "str", 200),
    Column("audit_seq", "int"),
    Column("audit_hash", "str", 64),
))

UNSETTLED = Table("retention_unsettled", (
    # Deletions reported `failed`: storage may have acted anyway (a lost acknowledgement). The
    # next full enforcing run settles each against its scan, so none goes unjournalled.
    Column("id", "int", nullable=False, primary_key=True),  # numbered by the database
    Column("run_id", "str", 64, nullable=False),
    Column("entry", "text", nullable=False),  # the audit entry of the intent, as JSON
))

INFLIGHT = Table("retention_inflight", (
    # The hold fence (see retention_core/fence.py): one row per deletion batch between the
    # moment it is registered — before it reads holds — and the moment its outcome is journalled.
    Column("id", "int", nullable=False, primary_key=True),  # numbered by the database
    Column("run_id", "str", 64, nullable=False),
    Column("source", "str", 200, nullable=False),
    Column("batch", "str", 64, nullable=False),
    Column("host", "str", 255, nullable=False),
    Column("pid", "int", nullable=False),
    Column("started_at", "instant", nullable=False),
))

META = Table("retention_meta", (
    # This store's identity (name "store-id"), made once: every run-start line of the audit trail
    # records it, so a run refuses a state store that is not the one the trail was written with.
    Column("name", "str", 50, nullable=False, primary_key=True),
    Column("value", "str", 200, nullable=False),
))

LOCK = Table("retention_lock", (
    Column("name", "str", 50, nullable=False, primary_key=True),
    Column("run_id", "str", 64, nullable=False),
    Column("host", "str", 255, nullable=False),
    Column("pid", "int", nullable=False),
    Column("acquired_at", "instant", nullable=False),
    Column("refreshed_at", "instant"),  # heartbeat; NULL in pre-heartbeat rows
))

AUDIT_HEAD = Table("retention_audit_head", (
    # The audit trail's head after its latest durable append (one row), so that `audit verify -c`
    # finds lines removed from the end even when they were written after the last run.
    Column("name", "str", 50, nullable=False, primary_key=True),
    Column("seq", "int", nullable=False),
    Column("hash", "str", 64, nullable=False),
    # The hash of that trail's first line: a head recorded for a trail since rotated away says
    # nothing of the current one (whose seq started again). NULL in stores from before.
    Column("genesis", "str", 64),
))

TABLES = (AUDIT_HEAD, REQUESTS, HOLDS, INFLIGHT, LOCK, META, RUNS, SOURCE_HOLDS, UNSETTLED)

#: The SQLAlchemy names these tables had as module attributes (tests and plugins that read a
#: store through SQLAlchemy still use them; building them imports SQLAlchemy, so only on demand).
_SQLALCHEMY_NAMES = {"holds_table": HOLDS, "source_holds_table": SOURCE_HOLDS, "requests_table": REQUESTS,
                     "runs_table": RUNS, "unsettled_table": UNSETTLED, "inflight_table": INFLIGHT,
                     "meta_table": META, "lock_table": LOCK, "audit_head_table": AUDIT_HEAD}


def __getattr__(name: str) -> Any:
    """``metadata`` and the ``*_table`` objects as SQLAlchemy ``Table``s, built on first use."""
    if name == "metadata" or name in _SQLALCHEMY_NAMES:
        import sqlalchemy as sa

        from .statedb import sqlalchemy_table

        metadata = sa.MetaData()
        built = {attr: sqlalchemy_table(table, metadata) for attr, table in _SQLALCHEMY_NAMES.items()}
        globals().update(built, metadata=metadata)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class RunInfo:
    """A run as the state store recorded it."""

    run_id: str
    started_at: datetime | None
    finished_at: datetime | None
    as_of: datetime | None
    dry_run: bool
    status: str
    actor: str | None


def actor() -> str:
    """Who is acting: ``RETENTION_ACTOR`` if set, else the login name.

    Checked before it is stored: longer than the state store's column, PostgreSQL and MariaDB
    refuse it with an error quoting SQL; with a control character it would forge lines where
    it is shown.
    """
    given = os.environ.get("RETENTION_ACTOR")
    try:
        name = given or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
    limit = HOLDS.length("placed_by") or 200  # runs.actor, released_by: the same
    if len(name) > limit or not name.isprintable():
        raise ConfigError(f"expected a name of at most {limit} printable characters, found {len(name)} characters"
                          + ("" if name.isprintable() else " with control characters"),
                          key="RETENTION_ACTOR" if given else "login name")
    return name


def check_fits(table: Table, column: str, value: str | None, key: str) -> None:
    """Refuse *value* when it is longer than *column* (a ConfigError naming *key*).

    Checked before the write because PostgreSQL and MariaDB refuse it with a DataError quoting
    SQL, and SQLite stores it anyway (the same state would then fail on another store).
    """
    limit = table.length(column)
    if value is not None and limit is not None and len(value) > limit:
        raise ConfigError(f"expected at most {limit} characters, found {len(value)}", key=key)


def utc(value: Any) -> datetime | None:
    """An instant as the database hands it back (SQLite: text; MariaDB: naive, stored as UTC)."""
    return instant(value)


class StateStore:
    """Holds, erasure requests, runs and the lock, in one database (:mod:`retention_core.statedb`)."""

    def __init__(self, url: str, *, lock_heartbeat: timedelta = LOCK_HEARTBEAT,
                 lock_stale_after: timedelta = LOCK_STALE_AFTER) -> None:
        self.url = url
        self.lock_heartbeat = lock_heartbeat
        self.lock_stale_after = lock_stale_after
        self._engine: Any = None
        self._beats: dict[str, _Heartbeat] = {}
        self._owner_checks: dict[str, tuple[float, str | None]] = {}
        if url.startswith("sqlite") and any(part in url for part in (":///file:", "uri=", "mode=")):
            # A URI filename or open mode is easy to get subtly wrong (a file literally named
            # "file:x.db?mode=ro" is opened instead), and a store that opens elsewhere has no holds.
            raise ConfigError(f"expected a plain SQLite path like sqlite:///path/state.db, found {url!r}: URI "
                              "filenames and mode options are not supported for the state store", key="state")
        try:
            self.db: Database = open_database(url)
            _create_tables(self.db)
        except (StateStoreError, ImportError, OSError, ValueError) as exc:
            detail = _short(exc).removeprefix(f"state store {url}: ")
            raise ConfigError(f"cannot open state store {url!r}: {detail}", key="state") from None

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ``mysql`` …"""
        return self.db.dialect

    @property
    def display_url(self) -> str:
        """The store's URL without its password."""
        return self.db.display_url

    @property
    def engine(self) -> Any:
        """An SQLAlchemy engine on this store's database, made on first use (it imports
        SQLAlchemy): for plugins that keep tables of their own in the state store."""
        if self._engine is None:
            import sqlalchemy as sa

            self._engine = getattr(self.db, "engine", None) or sa.create_engine(self.url)
        return self._engine

    def close(self) -> None:
        self.db.dispose()
        if self._engine is not None and self._engine is not getattr(self.db, "engine", None):
            self._engine.dispose()

    # -- holds ---------------------------------------------------------------------------
    def place_hold(self, hold_id: str, kind: str, scope: HoldScope, reason: str, *,
                   by: str | None = None, now: datetime | None = None) -> Hold:
        if not scope.as_dict():
            raise ConfigError("a hold needs at least one of --subject, --category, --source")
        for column, value, key in (("id", hold_id, "--id"), ("scope_subject", scope.subject, "--subject"),
                                   ("scope_category", scope.category, "--category"),
                                   ("scope_source", scope.source, "--source"), ("placed_by", by, "placed_by")):
            check_fits(HOLDS, column, value, key)
        row = {"id": hold_id, "kind": kind, "scope_subject": scope.subject, "scope_category": scope.category,
               "scope_source": scope.source, "reason": reason, "placed_by": by or actor(),
               "placed_at": now or datetime.now(timezone.utc)}
        try:
            with self.db.begin() as conn:
                conn.execute(insert(HOLDS, row), row)
        except DuplicateKeyError:
            raise ConfigError(f"hold {hold_id!r} already exists (hold ids are never reused)",
                              key="--id") from None
        return self.hold(hold_id)

    def release_hold(self, hold_id: str, reason: str, *, by: str | None = None,
                     now: datetime | None = None) -> Hold:
        with self.db.begin() as conn:
            # Released only if not released yet, in the one statement: of two releases at once
            # (PostgreSQL and MariaDB run them concurrently) one is refused, not both recorded.
            done = conn.execute("UPDATE retention_holds SET released_by = :by, released_at = :at,"
                                " release_reason = :reason WHERE id = :id AND released_at IS NULL",
                                {"by": by or actor(), "at": now or datetime.now(timezone.utc), "reason": reason,
                                 "id": hold_id})
            if done.rowcount != 1:
                row = conn.execute("SELECT * FROM retention_holds WHERE id = :id", {"id": hold_id}).first()
                if row is None:
                    raise ConfigError(f"no hold {hold_id!r} in the state store", key="HOLD_ID")
                raise ConfigError(f"hold {hold_id!r} was already released on {utc(row.released_at):%Y-%m-%d}"
                                  f" by {row.released_by}", key="HOLD_ID")
        return self.hold(hold_id)

    def hold(self, hold_id: str) -> Hold:
        with self.db.connect() as conn:
            row = conn.execute("SELECT * FROM retention_holds WHERE id = :id", {"id": hold_id}).one()
        return _hold(row)

    def holds(self, *, include_released: bool = True) -> list[Hold]:
        where = "" if include_released else " WHERE released_at IS NULL"
        with self.db.connect() as conn:
            rows = conn.execute(f"SELECT * FROM retention_holds{where} ORDER BY placed_at, id")
        return [_hold(row) for row in rows]

    def remembered_source_holds(self) -> set[tuple[str, str]]:
        """(hold source, hold id) of every hold a hold source ever listed (retention_core/holdsources.py)."""
        with self.db.connect() as conn:
            return {(row.origin, row.id) for row in conn.execute("SELECT origin, id FROM retention_source_holds")}

    # -- erasure requests ------------------------------------------------------------------
    def add_request(self, subject: str, controller: str, received_at: datetime, *,
                    ticket: str | None = None) -> ErasureRequest:
        """Store a new request; refused (naming it) while the subject has one still open —
        a second would only split one erasure's evidence over two ids."""
        check_fits(REQUESTS, "subject", subject, "--subject")
        check_fits(REQUESTS, "controller", controller, "--controller")
        check_fits(REQUESTS, "ticket", ticket, "--ticket")
        request = ErasureRequest(id=uuid.uuid4().hex[:12], subject=subject, controller=controller,
                                 received_at=received_at, due_at=received_at + ERASURE_DEADLINE, ticket=ticket)
        with self.db.begin() as conn:
            self._serialize(conn)  # no second open request for the subject from a concurrent process
            open_ = conn.execute(f"SELECT * FROM retention_erasure_requests WHERE subject = :subject AND {_OPEN}"
                                 " ORDER BY received_at", {"subject": subject}).first()
            if open_ is not None:
                found = _request(open_)
                ref = f", ticket {found.ticket}" if found.ticket else ""
                raise ConfigError(f"subject {subject!r} already has an open erasure request {found.id} (received "
                                  f"{found.received_at:%Y-%m-%d}, {found.status(datetime.now(timezone.utc))}{ref}); "
                                  "withdraw it first if this one replaces it", key="--subject")
            row = {"id": request.id, "subject": subject, "controller": controller, "received_at": received_at,
                   "due_at": request.due_at, "held_remaining": 0, "ticket": ticket}
            conn.execute(insert(REQUESTS, row), row)
        return request

    def withdraw_request(self, request_id: str, reason: str, *, by: str | None = None,
                         now: datetime | None = None) -> ErasureRequest:
        """Withdraw an open (or held) request, keeping who, when and why; a done one stays done."""
        select = "SELECT * FROM retention_erasure_requests WHERE id = :id"
        with self.db.begin() as conn:
            row = conn.execute(select, {"id": request_id}).first()
            if row is None:
                raise ConfigError(f"no erasure request {request_id!r} in the state store", key="ID")
            found = _request(row)
            if found.withdrawn_at is not None:
                raise ConfigError(f"erasure request {request_id!r} was already withdrawn on "
                                  f"{found.withdrawn_at:%Y-%m-%d} by {found.withdrawn_by}", key="ID")
            if found.done_at is not None:
                raise ConfigError(f"erasure request {request_id!r} is {found.status(found.done_at)} since "
                                  f"{found.done_at:%Y-%m-%d} (run {found.done_run}): its data is gone, there is "
                                  "nothing to withdraw", key="ID")
            done = conn.execute(f"UPDATE retention_erasure_requests SET withdrawn_at = :at, withdrawn_by = :by,"
                                f" withdraw_reason = :reason WHERE id = :id AND {_OPEN}",
                                {"at": now or datetime.now(timezone.utc), "by": by or actor(), "reason": reason,
                                 "id": request_id})
            if done.rowcount != 1:  # withdrawn or done by another process since it was read
                raise ConfigError(f"erasure request {request_id!r} changed while it was being withdrawn: look at "
                                  "`retention requests list`", key="ID")
            return _request(conn.execute(select, {"id": request_id}).one())

    def request(self, request_id: str) -> ErasureRequest | None:
        with self.db.connect() as conn:
            row = conn.execute("SELECT * FROM retention_erasure_requests WHERE id = :id", {"id": request_id}).first()
        return _request(row) if row is not None else None

    def requests(self) -> list[ErasureRequest]:
        """Every request ever stored, withdrawn and done ones included, oldest first."""
        with self.db.connect() as conn:
            rows = conn.execute("SELECT * FROM retention_erasure_requests ORDER BY received_at")
        return [_request(r) for r in rows]

    def mark_requests(self, subject: str, run_id: str, now: datetime, held_remaining: int) -> None:
        """A run listed every source completely and deleted every unheld record of *subject*.

        With nothing held left its open requests are done; with records still held they are
        ``held`` (not done: the hold's release makes the rest due, and a later run finishes them).
        """
        with self.db.begin() as conn:
            if held_remaining:
                conn.execute(f"UPDATE retention_erasure_requests SET held_remaining = :held"
                             f" WHERE subject = :subject AND {_OPEN}", {"held": held_remaining, "subject": subject})
            else:
                conn.execute(f"UPDATE retention_erasure_requests SET done_at = :now, done_run = :run,"
                             f" held_remaining = 0 WHERE subject = :subject AND {_OPEN}",
                             {"now": now, "run": run_id, "subject": subject})

    def _serialize(self, conn: Any) -> None:
        """Make this read-then-write transaction wait for any other one that calls this: a row
        lock on PostgreSQL and MariaDB (SQLite's write transactions are serial already)."""
        if self.dialect != "sqlite":
            conn.execute("SELECT value FROM retention_meta WHERE name = 'mutex' FOR UPDATE")

    # -- runs and the lock -------------------------------------------------------------------
    def start_run(self, run_id: str, as_of: datetime, dry_run: bool) -> None:
        row = {"run_id": run_id, "started_at": datetime.now(timezone.utc), "as_of": as_of, "dry_run": dry_run,
               "status": "running", "actor": actor()}
        with self.db.begin() as conn:
            conn.execute(insert(RUNS, row), row)

    def finish_run(self, run_id: str, status: str, audit_seq: int | None = None,
                   audit_hash: str | None = None) -> None:
        with self.db.begin() as conn:
            conn.execute("UPDATE retention_runs SET finished_at = :at, status = :status, audit_seq = :seq,"
                         " audit_hash = :hash WHERE run_id = :run",
                         {"at": datetime.now(timezone.utc), "status": status, "seq": audit_seq, "hash": audit_hash,
                          "run": run_id})

    def run(self, run_id: str) -> RunInfo | None:
        """One run as recorded: who started it, when, its status."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT * FROM retention_runs WHERE run_id = :run", {"run": run_id}).first()
        if row is None:
            return None
        return RunInfo(run_id=row.run_id, started_at=utc(row.started_at), finished_at=utc(row.finished_at),
                       as_of=utc(row.as_of), dry_run=bool(row.dry_run), status=row.status,
                       actor=row.actor or None)

    def add_unsettled(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        if entries:
            with self.db.begin() as conn:
                for entry in entries:
                    conn.execute("INSERT INTO retention_unsettled (run_id, entry) VALUES (:run, :entry)",
                                 {"run": run_id, "entry": json.dumps(entry)})

    def unsettled(self) -> list[tuple[int, dict[str, Any]]]:
        with self.db.connect() as conn:
            rows = conn.execute("SELECT id, entry FROM retention_unsettled ORDER BY id")
        return [(row.id, json.loads(row.entry)) for row in rows]

    def drop_unsettled(self, ids: list[int]) -> None:
        if ids:
            members, params = in_list("id", ids)
            with self.db.begin() as conn:
                conn.execute(f"DELETE FROM retention_unsettled WHERE id IN {members}", params)

    def crashed_runs(self, current: str) -> list[str]:
        """Enforcing runs that never finished: their process died holding the lock."""
        with self.db.connect() as conn:
            rows = conn.execute("SELECT run_id FROM retention_runs WHERE status = 'running' AND dry_run = :no"
                                " AND run_id != :current", {"no": False, "current": current})
        return [row.run_id for row in rows]

    def last_run_time(self) -> datetime | None:
        """The latest ``as_of`` of any finished enforcing run, to notice a clock that went back."""
        with self.db.connect() as conn:
            latest = conn.execute("SELECT max(as_of) FROM retention_runs WHERE dry_run = :no"
                                  " AND finished_at IS NOT NULL", {"no": False}).scalar()
        return utc(latest)

    def last_audit_head(self) -> tuple[int, str] | None:
        """The audit head the last finished run recorded, to detect a truncated trail."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT audit_seq, audit_hash FROM retention_runs WHERE audit_seq IS NOT NULL"
                               " ORDER BY audit_seq DESC LIMIT 1").first()
        return (row.audit_seq, row.audit_hash) if row else None

    # -- the audit trail's head --------------------------------------------------------------
    def record_audit_head(self, seq: int, hash: str, genesis: str | None = None) -> None:
        """Record the trail's head after an append. It only moves forward — two writers finishing
        out of order must not leave the older head recorded — except onto another trail (a
        new *genesis*: the trail was rotated, and its seq started again)."""
        values = {"seq": seq, "hash": hash, "genesis": genesis}
        moves = "seq < :seq" if genesis is None else "(seq < :seq OR genesis IS NULL OR genesis <> :genesis)"
        with self.db.begin() as conn:
            moved = conn.execute("UPDATE retention_audit_head SET seq = :seq, hash = :hash, genesis = :genesis"
                                 f" WHERE name = 'trail' AND {moves}", values)
        if moved.rowcount == 0:
            try:
                with self.db.begin() as conn:
                    conn.execute("INSERT INTO retention_audit_head (name, seq, hash, genesis)"
                                 " VALUES ('trail', :seq, :hash, :genesis)", values)
            except DuplicateKeyError:
                pass  # a head at or past seq is recorded already

    def audit_head(self, genesis: str | None = None) -> tuple[int, str] | None:
        """The newest audit head recorded: after every append, or (stores written before that
        was recorded) at the end of the last run. With *genesis* (the trail's first line's
        hash), None when the head recorded is another trail's (it was rotated since)."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT seq, hash, genesis FROM retention_audit_head WHERE name = 'trail'").first()
        if row is not None and row.genesis is not None and genesis is not None:
            # Recorded with the trail it belongs to, after every synced append (the run-end line's
            # too): the runs' heads, which do not say which trail they were in, add nothing.
            return None if row.genesis != genesis else (row.seq, row.hash)
        last_run = self.last_audit_head()
        if row is None or (last_run is not None and last_run[0] > row.seq):
            return last_run
        return (row.seq, row.hash)

    def recorded_trail(self) -> str | None:
        """The genesis of the trail the recorded head belongs to (None: not known)."""
        with self.db.connect() as conn:
            return conn.execute("SELECT genesis FROM retention_audit_head WHERE name = 'trail'").scalar()

    def store_id(self) -> str:
        """This state store's identity, made on first use (a store emptied or replaced gets a new one)."""
        query = "SELECT value FROM retention_meta WHERE name = 'store-id'"
        with self.db.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            try:
                with self.db.begin() as conn:
                    conn.execute("INSERT INTO retention_meta (name, value) VALUES ('store-id', :value)",
                                 {"value": uuid.uuid4().hex})
            except DuplicateKeyError:
                pass  # another process made it first: read theirs
            with self.db.connect() as conn:
                found = conn.execute(query).one()[0]
        return str(found)

    # -- the hold fence --------------------------------------------------------------------------
    def enter_batch(self, run_id: str, source: str, batch: str) -> int:
        """Register a deletion batch as in flight; committed before the batch reads holds."""
        with self.db.begin() as conn:
            return conn.insert("INSERT INTO retention_inflight (run_id, source, batch, host, pid, started_at)"
                               " VALUES (:run, :source, :batch, :host, :pid, :at)",
                               {"run": run_id, "source": source, "batch": batch, "host": host_id(),
                                "pid": os.getpid(), "at": datetime.now(timezone.utc)})

    def leave_batch(self, ticket: int) -> None:
        with self.db.begin() as conn:
            conn.execute("DELETE FROM retention_inflight WHERE id = :id", {"id": ticket})

    def batches_in_flight(self, ids: set[int] | None = None) -> list[Row]:
        """The batches registered now (or those of *ids* still registered) whose process may be alive."""
        query = "SELECT * FROM retention_inflight"
        params: dict[str, Any] = {}
        if ids is not None:
            if not ids:
                return []
            members, params = in_list("id", sorted(ids))
            query += f" WHERE id IN {members}"
        with self.db.connect() as conn:
            rows = conn.execute(query, params).all()
            owner = conn.execute("SELECT * FROM retention_lock WHERE name = 'run'").first()
        # Batches run only under the run lock: a batch of a run that no longer owns it, or whose
        # owner is dead or stale, cannot delete any more and is not waited for (its open intent
        # is settled by the next run).
        if owner is None or self._takeover_reason(owner, host_id(), datetime.now(timezone.utc)):
            return []
        return [row for row in rows if row.run_id == owner.run_id]

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """One run per state store. A lock left by a dead process on this host, or one whose
        heartbeat is older than ``lock_stale_after``, is taken over."""
        self._acquire(run_id)
        beat = _Heartbeat(self, run_id)
        self._beats[run_id] = beat
        beat.start()
        try:
            yield
        finally:
            beat.stop()
            self._beats.pop(run_id, None)
            with self.db.begin() as conn:
                conn.execute("DELETE FROM retention_lock WHERE run_id = :run", {"run": run_id})

    def lock_trouble(self, run_id: str) -> str | None:
        """Why this process can no longer trust that it holds *run_id*'s lock, or None.

        A process stopped (Ctrl-Z, ``docker pause``, a suspended VM) stops its heartbeat too;
        past ``lock_stale_after`` other processes take it for dead — ``holds place`` stops
        waiting for its batch, a new run takes the lock over — and it must not delete once it
        runs again. Checked by the clock alone (no database), before each record is deleted:
        after half ``lock_stale_after`` without a heartbeat the answer stays no for good."""
        beat = self._beats.get(run_id)
        if beat is not None:
            return beat.trouble()
        return self._owner_trouble(run_id)

    def _owner_trouble(self, run_id: str) -> str | None:
        """:meth:`lock_trouble` in a process that does not hold the lock itself — a worker of a
        distributed run, deleting for a main process that may be stopped: the lock row's own
        heartbeat, read at most every few seconds, must be fresh."""
        now = time.monotonic()
        checked = self._owner_checks.get(run_id)
        if checked is not None and (checked[1] is not None or now - checked[0] < _OWNER_CHECK_EVERY):
            return checked[1]
        with self.db.connect() as conn:
            row = conn.execute("SELECT refreshed_at, acquired_at FROM retention_lock WHERE name = 'run'"
                               " AND run_id = :run", {"run": run_id}).first()
        why = None
        if row is not None:  # no row: holds_lock() says the lock is lost
            seen = utc(row.refreshed_at or row.acquired_at)
            gap = (datetime.now(timezone.utc) - seen).total_seconds() if seen is not None else 0.0
            if gap > self.lock_stale_after.total_seconds() / 2:
                why = (f"has a lock its holder has not refreshed for {gap:.0f} s (stopped, suspended or starved): past "
                       f"half the {self.lock_stale_after.total_seconds():g} s after which other processes take it "
                       "for dead, so a hold placed meanwhile may not have waited for it")
        self._owner_checks[run_id] = (now, why)
        return why

    def holds_lock(self, run_id: str) -> bool:
        """Whether *run_id* still owns the lock (it was not taken over as stale)."""
        with self.db.connect() as conn:
            owner = conn.execute("SELECT run_id FROM retention_lock WHERE name = 'run'").scalar()
        return bool(owner == run_id)

    def _acquire(self, run_id: str) -> None:
        host, pid = host_id(), os.getpid()
        row = None
        for _ in range(5):  # each retry follows a takeover or a lock released meanwhile
            now = datetime.now(timezone.utc)
            try:
                with self.db.begin() as conn:
                    conn.execute("INSERT INTO retention_lock (name, run_id, host, pid, acquired_at, refreshed_at)"
                                 " VALUES ('run', :run, :host, :pid, :now, :now)",
                                 {"run": run_id, "host": host, "pid": pid, "now": now})
                return
            except DuplicateKeyError:
                with self.db.begin() as conn:
                    row = conn.execute("SELECT * FROM retention_lock WHERE name = 'run'").first()
                    if row is None:
                        continue
                    why = self._takeover_reason(row, host, now)
                    if why is not None:
                        log.warning("taking over the run lock of %s (pid %s on %s): %s",
                                    row.run_id, row.pid, row.host, why)
                        conn.execute("DELETE FROM retention_lock WHERE run_id = :run", {"run": row.run_id})
                        continue
                seen = utc(row.refreshed_at or row.acquired_at)
                raise LockedError(  # noqa: B904 - the DuplicateKeyError is the expected signal
                    f"another run ({row.run_id}, pid {row.pid} on {row.host}, since "
                    f"{utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC, alive at {seen:%H:%M:%S} UTC) holds the "
                    f"lock on {self.url}")
        raise LockedError(f"could not take the run lock on {self.url}: other runs kept taking it")

    def _takeover_reason(self, row: Row, host: str, now: datetime) -> str | None:
        """Why the lock in *row* belongs to a dead run, or None if it may be alive."""
        if row.host == host and not _alive(row.pid):
            return "its process is gone"
        seen = utc(row.refreshed_at or row.acquired_at)
        if seen is not None and now - seen > self.lock_stale_after:
            return (f"no heartbeat since {seen:%Y-%m-%d %H:%M:%S} UTC "
                    f"(stale after {self.lock_stale_after.total_seconds():g} s)")
        return None


class _Heartbeat:
    """Refreshes the lock row while a run holds it; a failed refresh is retried next beat.

    It also keeps when the lock was last confirmed, so that a process that was stopped for
    long enough to look dead notices it when it runs again (:meth:`trouble`), whichever of its
    threads runs first: the beat itself stops refreshing then."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"retention-lock-{run_id}", daemon=True)
        self.confirmed = time.time()  # the lock was just taken
        self.limit = store.lock_stale_after.total_seconds() / 2
        self.broken: str | None = None
        self._mutex = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def trouble(self) -> str | None:
        with self._mutex:
            if self.broken is None:
                gap = time.time() - self.confirmed
                if gap > self.limit:
                    self.broken = (f"went {gap:.0f} s without refreshing its lock (the process was stopped, "
                                   f"suspended or starved): past half the {self.limit * 2:g} s after which other "
                                   "processes take it for dead, so a hold placed meanwhile may not have waited "
                                   "for it")
            return self.broken

    def _beat(self) -> None:
        interval = self.store.lock_heartbeat.total_seconds()
        while not self.stopped.wait(interval):
            if self.trouble() is not None:
                log.error("run %s %s", self.run_id, self.broken)
                return  # the run stops before deleting more; the lock goes stale
            try:
                with self.store.db.begin() as conn:
                    done = conn.execute("UPDATE retention_lock SET refreshed_at = :now WHERE run_id = :run",
                                        {"now": datetime.now(timezone.utc), "run": self.run_id})
                if done.rowcount == 0:
                    log.error("run %s lost its lock on %s (taken over as stale)", self.run_id, self.store.url)
                    return
                with self._mutex:
                    if self.broken is None:
                        self.confirmed = time.time()
            except StateStoreError as exc:  # a busy or briefly unreachable store: try again next beat
                log.warning("could not refresh the run lock: %s", _short(exc))


#: Where an erasure request is still open: not done, not withdrawn.
_OPEN = "done_at IS NULL AND withdrawn_at IS NULL"


def insert(table: Table, row: dict[str, Any]) -> str:
    """``INSERT INTO table (…) VALUES (:…)`` for the keys of *row*."""
    unknown = set(row) - set(table.by_name)
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    return (f"INSERT INTO {table.name} ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})")


def _create_tables(db: Database) -> None:
    """Create missing tables and columns. Runs started together on a new store race to create
    them: the loser's CREATE TABLE fails with "already exists", and looking again settles it."""
    for attempt in range(1, 6):
        try:
            db.create(TABLES)
            with db.connect() as conn:
                present = conn.execute("SELECT 1 FROM retention_meta WHERE name = 'mutex'").first()
            if present is None:  # the row StateStore._serialize locks
                try:
                    with db.begin() as conn:
                        conn.execute("INSERT INTO retention_meta (name, value) VALUES ('mutex', '')")
                except DuplicateKeyError:
                    pass
            return
        except StateStoreError:
            if attempt == 5:
                raise
            time.sleep(0.05 * attempt)


def _request(row: Row) -> ErasureRequest:
    return ErasureRequest(id=row.id, subject=row.subject, controller=row.controller,
                          received_at=utc(row.received_at), due_at=utc(row.due_at),  # type: ignore[arg-type]
                          done_at=utc(row.done_at), done_run=row.done_run, held_remaining=row.held_remaining or 0,
                          ticket=row.ticket, withdrawn_at=utc(row.withdrawn_at), withdrawn_by=row.withdrawn_by,
                          withdraw_reason=row.withdraw_reason)


def host_id() -> str:
    """This host as the lock sees it: the host name, this boot, and the PID namespace when there
    is one. Only a lock of this very host, boot and namespace is taken over at once when its pid
    is gone; any other waits until its heartbeat is stale. The namespace: a process in another
    container or ``unshare --pid`` on the same host, whose pids this one cannot see. The boot:
    two VMs cloned with one host name share the initial namespace's inode too (red team, issue
    16), and a lock from before a reboot is not this boot's."""
    name = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            name += f" boot:{f.read().strip()[:8]}"
    except OSError:
        pass
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return name
    return f"{name} pidns:{namespace}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hold(row: Row) -> Hold:
    return Hold(id=row.id, kind=row.kind,
                scope=HoldScope(subject=row.scope_subject, category=row.scope_category, source=row.scope_source),
                reason=row.reason, placed_by=row.placed_by, placed_at=utc(row.placed_at),
                released_at=utc(row.released_at), released_by=row.released_by,
                release_reason=row.release_reason, origin="state")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
