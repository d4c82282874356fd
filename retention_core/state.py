"""The state store: holds, erasure requests, runs and the run lock (SQLAlchemy Core).

SQLite by default; any SQLAlchemy URL works (PostgreSQL is tested). Holds and requests are
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
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import ConfigError, LockedError
from .model import ErasureRequest, Hold, HoldScope

ERASURE_DEADLINE = timedelta(days=30)
#: How often the lock holder proves it is alive.
LOCK_HEARTBEAT = timedelta(seconds=30)
#: A lock not refreshed for this long is a crashed run's. Far above the heartbeat, so that a
#: slow database or a few minutes of clock skew between hosts never steal a live run's lock.
LOCK_STALE_AFTER = timedelta(minutes=10)

log = logging.getLogger("retention.state")

metadata = sa.MetaData()

def _hold_columns(*, placed_at_required: bool) -> list[sa.Column[Any]]:
    """A hold's own columns: the state store's holds and the ones hold sources listed share them."""
    return [
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("scope_subject", sa.String(500)),
        sa.Column("scope_category", sa.String(200)),
        sa.Column("scope_source", sa.String(200)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed_by", sa.String(200), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=not placed_at_required),
    ]


def _release_columns() -> list[sa.Column[Any]]:
    """Who released a hold, when and why (released holds are kept)."""
    return [
        sa.Column("released_by", sa.String(200)),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.Column("release_reason", sa.Text),
    ]


holds_table = sa.Table(
    "retention_holds", metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    *_hold_columns(placed_at_required=True),
    *_release_columns(),
)

source_holds_table = sa.Table(
    "retention_source_holds", metadata,
    # Every hold a hold source (a case system's export) ever listed, remembered so that a hold
    # which vanishes from its source stays in force until its source says released or a person
    # releases it (retention_core/holdsources.py).
    sa.Column("origin", sa.String(200), primary_key=True),  # the hold source's name in the policy
    sa.Column("id", sa.String(200), primary_key=True),
    *_hold_columns(placed_at_required=False),  # a case system may not say when
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("vanished_at", sa.DateTime(timezone=True)),
    *_release_columns(),
)

requests_table = sa.Table(
    "retention_erasure_requests", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(500), nullable=False, index=True),
    sa.Column("controller", sa.String(500), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("done_run", sa.String(64)),
    sa.Column("held_remaining", sa.Integer, nullable=False, default=0),
    sa.Column("ticket", sa.String(200)),  # the controller's or helpdesk's reference
    sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
    sa.Column("withdrawn_by", sa.String(200)),
    sa.Column("withdraw_reason", sa.Text),
)

runs_table = sa.Table(
    "retention_runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200)),
    sa.Column("audit_seq", sa.Integer),
    sa.Column("audit_hash", sa.String(64)),
)

unsettled_table = sa.Table(
    "retention_unsettled", metadata,
    # Deletions reported `failed`: storage may have acted anyway (a lost acknowledgement). The
    # next full enforcing run settles each against its scan, so none goes unjournalled.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # the audit entry of the intent, as JSON
)

inflight_table = sa.Table(
    "retention_inflight", metadata,
    # The hold fence (see retention_core/fence.py): one row per deletion batch between the
    # moment it is registered — before it reads holds — and the moment its outcome is journalled.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
)

meta_table = sa.Table(
    "retention_meta", metadata,
    # This store's identity (name "store-id"), made once: every run-start line of the audit trail
    # records it, so a run refuses a state store that is not the one the trail was written with.
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

lock_table = sa.Table(
    "retention_lock", metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("refreshed_at", sa.DateTime(timezone=True)),  # heartbeat; NULL in pre-heartbeat rows
)

audit_head_table = sa.Table(
    "retention_audit_head", metadata,
    # The audit trail's head after its latest durable append (one row), so that `audit verify -c`
    # finds lines removed from the end even when they were written after the last run.
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


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
    limit: int = getattr(holds_table.c.placed_by.type, "length", 200)  # runs.actor, released_by: the same
    if len(name) > limit or not name.isprintable():
        raise ConfigError(f"expected a name of at most {limit} printable characters, found {len(name)} characters"
                          + ("" if name.isprintable() else " with control characters"),
                          key="RETENTION_ACTOR" if given else "login name")
    return name


def check_fits(table: sa.Table, column: str, value: str | None, key: str) -> None:
    """Refuse *value* when it is longer than *column* (a ConfigError naming *key*).

    Checked before the write because PostgreSQL and MariaDB refuse it with a DataError quoting
    SQL, and SQLite stores it anyway (the same state would then fail on another store).
    """
    limit = getattr(table.c[column].type, "length", None)
    if value is not None and limit is not None and len(value) > limit:
        raise ConfigError(f"expected at most {limit} characters, found {len(value)}", key=key)


def utc(value: datetime | None) -> datetime | None:
    """Databases hand back naive datetimes (SQLite) — they were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class StateStore:
    """Holds, erasure requests, runs and the lock, in one database."""

    def __init__(self, url: str, *, lock_heartbeat: timedelta = LOCK_HEARTBEAT,
                 lock_stale_after: timedelta = LOCK_STALE_AFTER) -> None:
        self.url = url
        self.lock_heartbeat = lock_heartbeat
        self.lock_stale_after = lock_stale_after
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url, future=True)
            _create_tables(self.engine)
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise ConfigError(f"cannot open state store {url!r}: {_short(exc)}", key="state") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- holds ---------------------------------------------------------------------------
    def place_hold(self, hold_id: str, kind: str, scope: HoldScope, reason: str, *,
                   by: str | None = None, now: datetime | None = None) -> Hold:
        if not scope.as_dict():
            raise ConfigError("a hold needs at least one of --subject, --category, --source")
        for column, value, key in (("id", hold_id, "--id"), ("scope_subject", scope.subject, "--subject"),
                                   ("scope_category", scope.category, "--category"),
                                   ("scope_source", scope.source, "--source"), ("placed_by", by, "placed_by")):
            check_fits(holds_table, column, value, key)
        row = {"id": hold_id, "kind": kind, "scope_subject": scope.subject, "scope_category": scope.category,
               "scope_source": scope.source, "reason": reason, "placed_by": by or actor(),
               "placed_at": now or datetime.now(timezone.utc)}
        try:
            with self.engine.begin() as conn:
                conn.execute(holds_table.insert().values(**row))
        except IntegrityError:
            raise ConfigError(f"hold {hold_id!r} already exists (hold ids are never reused)",
                              key="--id") from None
        return self.hold(hold_id)

    def release_hold(self, hold_id: str, reason: str, *, by: str | None = None,
                     now: datetime | None = None) -> Hold:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(holds_table).where(holds_table.c.id == hold_id)).first()
            if row is None:
                raise ConfigError(f"no hold {hold_id!r} in the state store", key="HOLD_ID")
            if row.released_at is not None:
                raise ConfigError(f"hold {hold_id!r} was already released on {utc(row.released_at):%Y-%m-%d}"
                                  f" by {row.released_by}", key="HOLD_ID")
            conn.execute(holds_table.update().where(holds_table.c.id == hold_id).values(
                released_by=by or actor(), released_at=now or datetime.now(timezone.utc),
                release_reason=reason))
        return self.hold(hold_id)

    def hold(self, hold_id: str) -> Hold:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(holds_table).where(holds_table.c.id == hold_id)).one()
        return _hold(row)

    def holds(self, *, include_released: bool = True) -> list[Hold]:
        query = sa.select(holds_table).order_by(holds_table.c.placed_at, holds_table.c.id)
        if not include_released:
            query = query.where(holds_table.c.released_at.is_(None))
        with self.engine.connect() as conn:
            return [_hold(row) for row in conn.execute(query)]

    # -- erasure requests ------------------------------------------------------------------
    def add_request(self, subject: str, controller: str, received_at: datetime, *,
                    ticket: str | None = None) -> ErasureRequest:
        """Store a new request; refused (naming it) while the subject has one still open —
        a second would only split one erasure's evidence over two ids."""
        check_fits(requests_table, "subject", subject, "--subject")
        check_fits(requests_table, "controller", controller, "--controller")
        check_fits(requests_table, "ticket", ticket, "--ticket")
        request = ErasureRequest(id=uuid.uuid4().hex[:12], subject=subject, controller=controller,
                                 received_at=received_at, due_at=received_at + ERASURE_DEADLINE, ticket=ticket)
        with self.engine.begin() as conn:
            open_ = conn.execute(sa.select(requests_table).where(
                requests_table.c.subject == subject, requests_table.c.done_at.is_(None),
                requests_table.c.withdrawn_at.is_(None)).order_by(requests_table.c.received_at)).first()
            if open_ is not None:
                found = _request(open_)
                ref = f", ticket {found.ticket}" if found.ticket else ""
                raise ConfigError(f"subject {subject!r} already has an open erasure request {found.id} (received "
                                  f"{found.received_at:%Y-%m-%d}, {found.status(datetime.now(timezone.utc))}{ref}); "
                                  "withdraw it first if this one replaces it", key="--subject")
            conn.execute(requests_table.insert().values(
                id=request.id, subject=subject, controller=controller, received_at=received_at,
                due_at=request.due_at, held_remaining=0, ticket=ticket))
        return request

    def withdraw_request(self, request_id: str, reason: str, *, by: str | None = None,
                         now: datetime | None = None) -> ErasureRequest:
        """Withdraw an open (or held) request, keeping who, when and why; a done one stays done."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).first()
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
            who = by or actor()
            conn.execute(requests_table.update().where(requests_table.c.id == request_id).values(
                withdrawn_at=now or datetime.now(timezone.utc), withdrawn_by=who, withdraw_reason=reason))
            return _request(conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).one())

    def request(self, request_id: str) -> ErasureRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).first()
        return _request(row) if row is not None else None

    def requests(self) -> list[ErasureRequest]:
        """Every request ever stored, withdrawn and done ones included, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(requests_table).order_by(requests_table.c.received_at))
            return [_request(r) for r in rows]

    def mark_requests(self, subject: str, run_id: str, now: datetime, held_remaining: int) -> None:
        """A run listed every source completely and deleted every unheld record of *subject*.

        With nothing held left its open requests are done; with records still held they are
        ``held`` (not done: the hold's release makes the rest due, and a later run finishes them).
        """
        with self.engine.begin() as conn:
            open_ = (requests_table.c.subject == subject, requests_table.c.done_at.is_(None),
                     requests_table.c.withdrawn_at.is_(None))
            if held_remaining:
                conn.execute(requests_table.update().where(*open_).values(held_remaining=held_remaining))
            else:
                conn.execute(requests_table.update().where(*open_).values(done_at=now, done_run=run_id,
                                                                            held_remaining=0))

    # -- runs and the lock -------------------------------------------------------------------
    def start_run(self, run_id: str, as_of: datetime, dry_run: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs_table.insert().values(run_id=run_id, started_at=datetime.now(timezone.utc),
                                                    as_of=as_of, dry_run=dry_run, status="running",
                                                    actor=actor()))

    def finish_run(self, run_id: str, status: str, audit_seq: int | None = None,
                   audit_hash: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.run_id == run_id).values(
                finished_at=datetime.now(timezone.utc), status=status, audit_seq=audit_seq,
                audit_hash=audit_hash))

    def run(self, run_id: str) -> RunInfo | None:
        """One run as recorded: who started it, when, its status."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.run_id == run_id)).first()
        if row is None:
            return None
        return RunInfo(run_id=row.run_id, started_at=utc(row.started_at), finished_at=utc(row.finished_at),
                       as_of=utc(row.as_of), dry_run=bool(row.dry_run), status=row.status,
                       actor=row.actor or None)

    def add_unsettled(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        if entries:
            with self.engine.begin() as conn:
                conn.execute(unsettled_table.insert(), [{"run_id": run_id, "entry": json.dumps(e)} for e in entries])

    def unsettled(self) -> list[tuple[int, dict[str, Any]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(unsettled_table.c.id, unsettled_table.c.entry)
                                .order_by(unsettled_table.c.id))
            return [(row.id, json.loads(row.entry)) for row in rows]

    def drop_unsettled(self, ids: list[int]) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(unsettled_table.delete().where(unsettled_table.c.id.in_(ids)))

    def crashed_runs(self, current: str) -> list[str]:
        """Enforcing runs that never finished: their process died holding the lock."""
        query = sa.select(runs_table.c.run_id).where(runs_table.c.status == "running",
                                                     runs_table.c.dry_run.is_(False),
                                                     runs_table.c.run_id != current)
        with self.engine.connect() as conn:
            return [row.run_id for row in conn.execute(query)]

    def last_run_time(self) -> datetime | None:
        """The latest ``as_of`` of any finished enforcing run, to notice a clock that went back."""
        query = sa.select(sa.func.max(runs_table.c.as_of)).where(runs_table.c.dry_run.is_(False),
                                                                 runs_table.c.finished_at.is_not(None))
        with self.engine.connect() as conn:
            return utc(conn.execute(query).scalar())

    def last_audit_head(self) -> tuple[int, str] | None:
        """The audit head the last finished run recorded, to detect a truncated trail."""
        query = (sa.select(runs_table.c.audit_seq, runs_table.c.audit_hash)
                 .where(runs_table.c.audit_seq.is_not(None))
                 .order_by(runs_table.c.audit_seq.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row.audit_seq, row.audit_hash) if row else None

    # -- the audit trail's head --------------------------------------------------------------
    def record_audit_head(self, seq: int, hash: str) -> None:
        """Record the trail's head after an append. It only moves forward: two writers finishing
        out of order must not leave the older head recorded."""
        with self.engine.begin() as conn:
            moved = conn.execute(audit_head_table.update().where(
                audit_head_table.c.name == "trail", audit_head_table.c.seq < seq).values(seq=seq, hash=hash))
        if moved.rowcount == 0:
            try:
                with self.engine.begin() as conn:
                    conn.execute(audit_head_table.insert().values(name="trail", seq=seq, hash=hash))
            except IntegrityError:
                pass  # a head at or past seq is recorded already

    def audit_head(self) -> tuple[int, str] | None:
        """The newest audit head recorded: after every append, or (stores written before that
        was recorded) at the end of the last run."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(audit_head_table.c.seq, audit_head_table.c.hash)
                               .where(audit_head_table.c.name == "trail")).first()
        last_run = self.last_audit_head()
        if row is None or (last_run is not None and last_run[0] > row.seq):
            return last_run
        return (row.seq, row.hash)

    def store_id(self) -> str:
        """This state store's identity, made on first use (a store emptied or replaced gets a new one)."""
        query = sa.select(meta_table.c.value).where(meta_table.c.name == "store-id")
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(meta_table.insert().values(name="store-id", value=uuid.uuid4().hex))
            except IntegrityError:
                pass  # another process made it first: read theirs
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar_one()
        return str(found)

    # -- the hold fence --------------------------------------------------------------------------
    def enter_batch(self, run_id: str, source: str, batch: str) -> int:
        """Register a deletion batch as in flight; committed before the batch reads holds."""
        with self.engine.begin() as conn:
            key = conn.execute(inflight_table.insert().values(
                run_id=run_id, source=source, batch=batch, host=host_id(), pid=os.getpid(),
                started_at=datetime.now(timezone.utc))).inserted_primary_key
        assert key is not None
        return int(key[0])

    def leave_batch(self, ticket: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(inflight_table.delete().where(inflight_table.c.id == ticket))

    def batches_in_flight(self, ids: set[int] | None = None) -> list[sa.Row]:
        """The batches registered now (or those of *ids* still registered) whose process may be alive."""
        query = sa.select(inflight_table)
        if ids is not None:
            if not ids:
                return []
            query = query.where(inflight_table.c.id.in_(sorted(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            owner = conn.execute(sa.select(lock_table).where(lock_table.c.name == "run")).first()
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
        beat.start()
        try:
            yield
        finally:
            beat.stop()
            with self.engine.begin() as conn:
                conn.execute(lock_table.delete().where(lock_table.c.run_id == run_id))

    def holds_lock(self, run_id: str) -> bool:
        """Whether *run_id* still owns the lock (it was not taken over as stale)."""
        with self.engine.connect() as conn:
            owner = conn.execute(sa.select(lock_table.c.run_id).where(lock_table.c.name == "run")).scalar()
        return owner == run_id

    def _acquire(self, run_id: str) -> None:
        host, pid = host_id(), os.getpid()
        row = None
        for _ in range(5):  # each retry follows a takeover or a lock released meanwhile
            now = datetime.now(timezone.utc)
            try:
                with self.engine.begin() as conn:
                    conn.execute(lock_table.insert().values(name="run", run_id=run_id, host=host, pid=pid,
                                                            acquired_at=now, refreshed_at=now))
                return
            except IntegrityError:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(lock_table).where(lock_table.c.name == "run")).first()
                    if row is None:
                        continue
                    why = self._takeover_reason(row, host, now)
                    if why is not None:
                        log.warning("taking over the run lock of %s (pid %s on %s): %s",
                                    row.run_id, row.pid, row.host, why)
                        conn.execute(lock_table.delete().where(lock_table.c.run_id == row.run_id))
                        continue
                seen = utc(row.refreshed_at or row.acquired_at)
                raise LockedError(  # noqa: B904 - the IntegrityError is the expected signal
                    f"another run ({row.run_id}, pid {row.pid} on {row.host}, since "
                    f"{utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC, alive at {seen:%H:%M:%S} UTC) holds the "
                    f"lock on {self.url}")
        raise LockedError(f"could not take the run lock on {self.url}: other runs kept taking it")

    def _takeover_reason(self, row: sa.Row, host: str, now: datetime) -> str | None:
        """Why the lock in *row* belongs to a dead run, or None if it may be alive."""
        if row.host == host and not _alive(row.pid):
            return "its process is gone"
        seen = utc(row.refreshed_at or row.acquired_at)
        if seen is not None and now - seen > self.lock_stale_after:
            return (f"no heartbeat since {seen:%Y-%m-%d %H:%M:%S} UTC "
                    f"(stale after {self.lock_stale_after.total_seconds():g} s)")
        return None


class _Heartbeat:
    """Refreshes the lock row while a run holds it; a failed refresh is retried next beat."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"retention-lock-{run_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        interval = self.store.lock_heartbeat.total_seconds()
        while not self.stopped.wait(interval):
            try:
                with self.store.engine.begin() as conn:
                    done = conn.execute(lock_table.update().where(lock_table.c.run_id == self.run_id)
                                        .values(refreshed_at=datetime.now(timezone.utc)))
                if done.rowcount == 0:
                    log.error("run %s lost its lock on %s (taken over as stale)", self.run_id, self.store.url)
                    return
            except SQLAlchemyError as exc:  # a busy or briefly unreachable store: try again next beat
                log.warning("could not refresh the run lock: %s", _short(exc))


def _create_tables(engine: sa.Engine) -> None:
    """Create missing tables. Runs started together on a new store race to create them: the
    loser's CREATE TABLE fails with "already exists", and looking again settles it."""
    for attempt in range(1, 6):
        try:
            metadata.create_all(engine)
            _add_heartbeat_column(engine)
            _add_request_columns(engine)
            return
        except SQLAlchemyError:
            if attempt == 5:
                raise
            time.sleep(0.05 * attempt)


def _add_heartbeat_column(engine: sa.Engine) -> None:
    """State stores created before the heartbeat lack ``retention_lock.refreshed_at``: add it."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns(lock_table.name)}
    if "refreshed_at" in columns:
        return
    kind = sa.DateTime(timezone=True).compile(dialect=engine.dialect)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {lock_table.name} ADD COLUMN refreshed_at {kind}")


def _add_request_columns(engine: sa.Engine) -> None:
    """State stores created before tickets and withdrawals lack those request columns: add them."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns(requests_table.name)}
    missing = [c for c in requests_table.columns if c.name not in columns]
    if not missing:
        return
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {requests_table.name} ADD COLUMN {column.name} {kind}")


def _request(row: sa.Row) -> ErasureRequest:
    return ErasureRequest(id=row.id, subject=row.subject, controller=row.controller,
                          received_at=utc(row.received_at), due_at=utc(row.due_at),  # type: ignore[arg-type]
                          done_at=utc(row.done_at), done_run=row.done_run, held_remaining=row.held_remaining or 0,
                          ticket=row.ticket, withdrawn_at=utc(row.withdrawn_at), withdrawn_by=row.withdrawn_by,
                          withdraw_reason=row.withdraw_reason)


def host_id() -> str:
    """This host as the lock sees it: the host name, and the PID namespace when there is one, so
    a process in another container or ``unshare --pid`` on the same host — whose pids this one
    cannot see — is never taken for dead (its lock goes stale by heartbeat instead)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()} pidns:{namespace}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hold(row: sa.Row) -> Hold:
    return Hold(id=row.id, kind=row.kind,
                scope=HoldScope(subject=row.scope_subject, category=row.scope_category, source=row.scope_source),
                reason=row.reason, placed_by=row.placed_by, placed_at=utc(row.placed_at),
                released_at=utc(row.released_at), released_by=row.released_by,
                release_reason=row.release_reason, origin="state")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
