"""The ``sql`` backend's set-based path passes ``PushdownConformanceTests`` on SQLite,
PostgreSQL and MariaDB.

Seeding and checking go through a plain SQLAlchemy engine on its own connection, never the
backend: the suite looks at the table while a batch is yielded but not yet committed. The
subject column holds each location's first path segment, as the suite expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from retention_core import Backend, Options
from retention_core.testing import PushdownConformanceTests
from retention_sql.backend import SqlBackend

from .conftest import Database


class TestSqlPushdown(PushdownConformanceTests):
    batch_size = 6

    @pytest.fixture
    def backend(self, db: Database) -> Iterator[Backend]:
        self.db = db
        self.naive = db.aware_timestamp() is None
        self.table = db.table(
            db.name("pdc"),
            sa.Column("location", sa.String(255), primary_key=True),
            sa.Column("owner", sa.String(64)),
            sa.Column("created_at", db.aware_timestamp() or db.naive_timestamp()),
            sa.Column("note", sa.String(64), nullable=True),
        )
        options = {"url": db.url, "table": self.table.name, "key": "location", "subject": "owner",
                   "created": "created_at", "batch_size": self.batch_size, "anonymize": {"note": None}}
        if self.naive:
            options["timezone"] = "UTC"
        with SqlBackend(Options(options)) as backend:
            yield backend

    def seed(self, location: str, created: datetime) -> None:
        value = created.astimezone(timezone.utc)
        if self.naive:
            value = value.replace(tzinfo=None)
        owner = location.split("/", 1)[0]
        self.db.insert(self.table, [{"location": location, "owner": owner, "created_at": value, "note": "call me"}])

    def exists(self, location: str) -> bool:
        # A fresh connection of the native engine: it must not see a batch the backend has
        # not committed yet. Compared in Python: collations may ignore case or trailing spaces.
        return location in self.db.column(self.table, "location")
