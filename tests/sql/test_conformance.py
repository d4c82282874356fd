"""The ``sql`` backend passes the conformance suite on SQLite, PostgreSQL and MariaDB.

Seeding and checking go through a plain SQLAlchemy engine, never the backend. Keys are
text so the suite's odd names (quotes, unicode, newlines, ``x`` vs ``x/``) are keys. The
suite runs twice: on a table whose guard compares key, created and subject, and on one that
declares a row-version column.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from retention_core import Backend, Options, Source
from retention_core.testing import BackendConformanceTests
from retention_sql.backend import SqlBackend

from .conftest import Database

#: Row versions as a database sequence hands them out: never reused, not even by a re-insert.
_REVISIONS = itertools.count(1)


class TestSqlBackend(BackendConformanceTests):
    page_size = 7
    #: Without a version column the guard compares key, created and subject: a row deleted and
    #: inserted again with all three unchanged is indistinguishable (docs/sql.md says so).
    detects_identical_recreate = False
    version_column: str | None = None

    @pytest.fixture
    def backend(self, db: Database) -> Iterator[Backend]:
        self.db = db
        created = db.aware_timestamp() or db.naive_timestamp()
        self.naive = db.aware_timestamp() is None
        self.table = db.table(
            db.name("conf"),
            sa.Column("location", sa.String(255), primary_key=True),
            sa.Column("owner", sa.String(64)),
            sa.Column("created_at", created),
            sa.Column("note", sa.String(64), nullable=True),
            sa.Column("rev", sa.Integer, nullable=True),
        )
        options = {"url": db.url, "table": self.table.name, "key": "location", "subject": "owner",
                   "created": "created_at", "batch_size": self.page_size, "anonymize": {"note": None},
                   "version_column": self.version_column}
        if self.naive:
            options["timezone"] = "UTC"
        with SqlBackend(Options({k: v for k, v in options.items() if v is not None})) as backend:
            yield backend

    def _stored(self, created: datetime) -> datetime:
        value = created.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if self.naive else value

    def seed(self, location: str, created: datetime) -> None:
        # The subject is the location's first path segment, as the survey test expects.
        owner = location.split("/", 1)[0]
        self.db.insert(self.table, [{"location": location, "owner": owner, "created_at": self._stored(created),
                                     "note": "call me", "rev": next(_REVISIONS)}])

    def recreate(self, location: str, created: datetime) -> None:
        """Delete the row and insert another under the same key and subject, as an application would."""
        t = self.table.c
        with self.db.engine.begin() as conn:
            owner = conn.execute(sa.select(t.owner).where(t.location == location)).scalar_one()
            conn.execute(sa.delete(self.table).where(t.location == location))
            conn.execute(sa.insert(self.table), {"location": location, "owner": owner, "note": "new call",
                                                 "created_at": self._stored(created), "rev": next(_REVISIONS)})

    def modify(self, location: str) -> None:
        """Move the row to another subject in place, keeping its created value."""
        t = self.table.c
        with self.db.engine.begin() as conn:
            changed = conn.execute(sa.update(self.table).where(t.location == location)
                                   .values(owner=t.owner + "-moved", note="edited", rev=next(_REVISIONS)))
            assert changed.rowcount == 1

    def seed_problem(self, location: str) -> None:
        """A row whose created value is NULL: scan reports it, nothing deletes it."""
        self.db.insert(self.table, [{"location": location, "owner": location.split("/", 1)[0],
                                     "created_at": None, "note": "call me", "rev": next(_REVISIONS)}])

    def exists(self, location: str) -> bool:
        # Compared in Python: database collations may ignore case or trailing spaces.
        return location in self.db.column(self.table, "location")

    def fault(self, location: str) -> None:
        backend_engine = self._backend_engine
        tripped: list[bool] = []

        def fail_once(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                      executemany: bool) -> None:
            values = parameters.values() if isinstance(parameters, dict) else parameters or ()
            if not tripped and statement.lstrip().upper().startswith("DELETE") and location in list(values):
                tripped.append(True)
                raise sa.exc.OperationalError(statement, parameters, Exception("injected: connection reset"))

        event.listen(backend_engine, "before_cursor_execute", fail_once)

    @pytest.fixture(autouse=True)
    def _remember_engine(self, backend: SqlBackend) -> None:
        self._backend_engine = backend.engine

    def test_fault_helper_really_faults(self, backend: SqlBackend, source: Source) -> None:
        """The injected fault must reach the backend (a silent no-op would prove nothing)."""
        self.seed("f/one", datetime(2020, 1, 1, tzinfo=timezone.utc))
        [record] = backend.scan(source)
        self.fault("f/one")
        with backend.engine.begin() as conn, pytest.raises(sa.exc.OperationalError, match="injected"):
            conn.execute(sa.delete(self.table).where(self.table.c.location == "f/one"))
        assert self.exists("f/one")


class TestSqlBackendWithVersionColumn(TestSqlBackend):
    """The same suite with ``version_column``: a re-insert is told apart even with the same
    created value and subject, because a version is never handed out twice."""

    detects_identical_recreate = True
    version_column = "rev"
