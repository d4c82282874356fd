"""The state store: holds, erasure requests, runs and the run lock (SQLAlchemy Core).

SQLite by default; any SQLAlchemy URL works (PostgreSQL is tested). Holds and requests are
never deleted: a released hold keeps who released it, when and why.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import ConfigError, LockedError, RetentionError
from .model import ErasureRequest, Hold, HoldScope

ERASURE_DEADLINE = timedelta(days=30)

metadata = sa.MetaData()

holds_table = sa.Table(
    "retention_holds", metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("scope_subject", sa.String(500)),
    sa.Column("scope_category", sa.String(200)),
    sa.Column("scope_source", sa.String(200)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("placed_by", sa.String(200), nullable=False),
    sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released_by", sa.String(200)),
    sa.Column("released_at", sa.DateTime(timezone=True)),
    sa.Column("release_reason", sa.Text),
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

lock_table = sa.Table(
    "retention_lock", metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
)


def actor() -> str:
    """Who is acting: ``RETENTION_ACTOR`` if set, else the login name."""
    try:
        return os.environ.get("RETENTION_ACTOR") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def utc(value: datetime | None) -> datetime | None:
    """Databases hand back naive datetimes (SQLite) — they were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class StateStore:
    """Holds, erasure requests, runs and the lock, in one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url, future=True)
            metadata.create_all(self.engine)
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise ConfigError(f"cannot open state store {url!r}: {_short(exc)}", key="state") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- holds ---------------------------------------------------------------------------
    def place_hold(self, hold_id: str, kind: str, scope: HoldScope, reason: str, *,
                   by: str | None = None, now: datetime | None = None) -> Hold:
        if not scope.as_dict():
            raise ConfigError("a hold needs at least one of --subject, --category, --source")
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
    def add_request(self, subject: str, controller: str, received_at: datetime) -> ErasureRequest:
        request = ErasureRequest(id=uuid.uuid4().hex[:12], subject=subject, controller=controller,
                                 received_at=received_at, due_at=received_at + ERASURE_DEADLINE)
        with self.engine.begin() as conn:
            conn.execute(requests_table.insert().values(
                id=request.id, subject=subject, controller=controller, received_at=received_at,
                due_at=request.due_at, held_remaining=0))
        return request

    def requests(self) -> list[ErasureRequest]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(requests_table).order_by(requests_table.c.received_at))
            return [ErasureRequest(id=r.id, subject=r.subject, controller=r.controller,
                                   received_at=utc(r.received_at), due_at=utc(r.due_at),  # type: ignore[arg-type]
                                   done_at=utc(r.done_at), done_run=r.done_run,
                                   held_remaining=r.held_remaining or 0) for r in rows]

    def mark_requests(self, subject: str, run_id: str, now: datetime, held_remaining: int) -> None:
        """A run deleted every unheld record of *subject*: its open requests are done."""
        with self.engine.begin() as conn:
            conn.execute(requests_table.update().where(
                requests_table.c.subject == subject, requests_table.c.done_at.is_(None)
            ).values(done_at=now, done_run=run_id, held_remaining=held_remaining))
            conn.execute(requests_table.update().where(
                requests_table.c.subject == subject, requests_table.c.done_at.is_not(None)
            ).values(held_remaining=held_remaining))

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

    def crashed_runs(self, current: str) -> list[str]:
        """Enforcing runs that never finished: their process died holding the lock."""
        query = sa.select(runs_table.c.run_id).where(runs_table.c.status == "running",
                                                     runs_table.c.dry_run.is_(False),
                                                     runs_table.c.run_id != current)
        with self.engine.connect() as conn:
            return [row.run_id for row in conn.execute(query)]

    def last_run_time(self) -> datetime | None:
        """The latest ``as_of`` of any enforcing run, to notice a clock that went back."""
        query = sa.select(sa.func.max(runs_table.c.as_of)).where(runs_table.c.dry_run.is_(False))
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

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """One run per state store; a lock left by a dead process on this host is taken over."""
        self._acquire(run_id)
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(lock_table.delete().where(lock_table.c.run_id == run_id))

    def _acquire(self, run_id: str) -> None:
        host, pid = socket.gethostname(), os.getpid()
        for _ in range(2):
            try:
                with self.engine.begin() as conn:
                    conn.execute(lock_table.insert().values(name="run", run_id=run_id, host=host, pid=pid,
                                                            acquired_at=datetime.now(timezone.utc)))
                return
            except IntegrityError:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(lock_table).where(lock_table.c.name == "run")).first()
                    if row is None:
                        continue
                    if row.host == host and not _alive(row.pid):
                        conn.execute(lock_table.delete().where(lock_table.c.run_id == row.run_id))
                        continue
                raise LockedError(  # noqa: B904 - the IntegrityError is the expected signal
                    f"another run ({row.run_id}, pid {row.pid} on {row.host}, since "
                    f"{utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC) holds the lock on {self.url}")
        raise RetentionError(f"could not take the run lock on {self.url}")


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
