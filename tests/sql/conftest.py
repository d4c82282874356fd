"""The three databases every sql-backend test runs on, and a native helper for each.

Tables are created, filled and inspected through plain SQLAlchemy (the "native client"),
never through the backend under test. PostgreSQL and MariaDB are skipped when unreachable,
except with ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core.testing import require_service

URLS = {
    "postgresql": os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}



@cache
def reachable(url: str) -> str | None:
    """None when *url* answers, else why not (checked once per session)."""
    args = {"connect_timeout": 3}
    try:
        engine = sa.create_engine(url, connect_args=args)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # a missing driver counts as a missing service
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@dataclass
class Database:
    """One database under test, with a native engine and the tables a test created."""

    kind: str  # sqlite | postgresql | mariadb
    url: str
    engine: sa.Engine
    created: list[sa.Table] = field(default_factory=list)

    def name(self, prefix: str = "rt") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    def table(self, name: str, *columns: sa.Column[Any], **kwargs: Any) -> sa.Table:
        """Create *name* with *columns*; dropped after the test."""
        if self.kind == "mariadb":
            kwargs.setdefault("mysql_charset", "utf8mb4")
        table = sa.Table(name, sa.MetaData(), *columns, **kwargs)
        table.create(self.engine)
        self.created.append(table)
        return table

    def insert(self, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(sa.insert(table), rows[start:start + 5000])

    def column(self, table: sa.Table, column: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table.c[column])).scalars())

    def rows(self, table: sa.Table) -> dict[Any, dict[str, Any]]:
        """Every row by its first column."""
        with self.engine.connect() as conn:
            return {r[0]: dict(r._mapping) for r in conn.execute(sa.select(table))}

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), dict(params or {}))

    def drop_all(self) -> None:
        for table in reversed(self.created):
            table.drop(self.engine, checkfirst=True)
        self.created.clear()

    # -- types that differ per database --------------------------------------------------------------
    def naive_timestamp(self) -> sa.types.TypeEngine[Any]:
        if self.kind == "mariadb":
            from sqlalchemy.dialects import mysql

            return mysql.DATETIME(fsp=6)
        return sa.DateTime(timezone=False)

    def aware_timestamp(self) -> sa.types.TypeEngine[Any] | None:
        """A column type that stores instants, or None (SQLite has none)."""
        if self.kind == "postgresql":
            return sa.DateTime(timezone=True)
        if self.kind == "mariadb":
            from sqlalchemy.dialects import mysql

            return mysql.TIMESTAMP(fsp=6)
        return None


def _database(kind: str, tmp_path: Path) -> Database:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
        return Database(kind, url, sa.create_engine(url))
    url = URLS[kind]
    why = reachable(url)
    require_service(why is None, f"{kind} at {sa.engine.make_url(url).render_as_string(hide_password=True)} ({why})")
    return Database(kind, url, sa.create_engine(url))


DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each test runs once per database; its tables are dropped afterwards."""
    database = _database(request.param, tmp_path)
    try:
        yield database
    finally:
        database.drop_all()
        database.engine.dispose()


# -- a records table and a backend over it ----------------------------------------------------------------
@dataclass
class Records:
    """A table of records (key, subject, created, name, email) and the options of a source over it."""

    db: Database
    table: sa.Table
    naive: bool
    options: dict[str, Any]

    def row(self, key: Any, subject: str | None, created: Any, **extra: Any) -> dict[str, Any]:
        """A row; *created* is aware UTC (converted for naive columns) or raw text/value."""
        from datetime import datetime, timezone

        if isinstance(created, datetime) and created.tzinfo is not None and self.naive:
            created = created.astimezone(timezone.utc).replace(tzinfo=None)
        return {"id": key, "subject": subject, "created": created, "name": extra.get("name", f"name-{key}"),
                "email": extra.get("email", f"user{key}@example.com")}

    def add(self, rows: Iterable[tuple[Any, str | None, Any]]) -> None:
        self.db.insert(self.table, [self.row(*r) for r in rows])

    def keys(self) -> set[str]:
        return {str(k) for k in self.db.column(self.table, "id")}

    def backend(self, **overrides: Any) -> Any:
        from retention_core import Options
        from retention_sql.backend import SqlBackend

        options = {**self.options, **overrides}
        return SqlBackend(Options({k: v for k, v in options.items() if v is not None},
                                  where="sources[0].options"))


def records_table(db: Database, *, key_type: sa.types.TypeEngine[Any] | None = None, naive: bool | None = None,
                  created_type: sa.types.TypeEngine[Any] | None = None, name: str | None = None,
                  timezone: str = "UTC", **table_kwargs: Any) -> Records:
    """Create a records table. ``naive`` defaults to False where the database has aware columns."""
    aware = db.aware_timestamp()
    if naive is None:
        naive = aware is None
    if created_type is None:
        created_type = db.naive_timestamp() if naive else aware
        assert created_type is not None, f"{db.kind} has no aware timestamp type"
    table = db.table(
        name or db.name("rec"),
        sa.Column("id", key_type or sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("created", created_type, nullable=True),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("email", sa.String(100), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        **table_kwargs,
    )
    options: dict[str, Any] = {"url": db.url, "table": str(table.name), "key": "id", "subject": "subject",
                               "created": "created", "batch_size": 50}
    if naive:
        options["timezone"] = timezone
    return Records(db, table, naive, options)


@pytest.fixture
def records(db: Database) -> Records:
    """An empty records table on each database."""
    return records_table(db)
