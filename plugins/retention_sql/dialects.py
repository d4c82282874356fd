"""What differs between SQLite, PostgreSQL and MariaDB/MySQL, in one place.

Each :class:`Flavor` answers the same questions for its dialect: how a column reads as
exact text (so a subject compares exactly as Python's ``==`` would, whatever the column's
collation), which ``created`` values count as timestamps at all, and how a cutoff is bound.
Everything is built from SQLAlchemy Core constructs on reflected columns: no identifier is
ever written into SQL text by us.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from .clock import EARLIEST, LATEST, UTC

#: Longest subject (in UTF-8 bytes) the MariaDB cutoff table can index.
MYSQL_PROBE_BYTES = 3072


class Flavor:
    """Portable defaults; subclasses override what their dialect does differently."""

    name = "generic"
    for_update = True
    #: Where the driver hands back aware datetimes for ``DateTime(timezone=True)`` columns.
    aware_types = True

    def prepare(self, engine: Engine) -> None:
        """Attach connection events (session time zone, transaction handling)."""

    # -- text of a column, compared exactly ------------------------------------------------
    def text(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """The column as text, as ``Record.subject`` shows it."""
        return sa.cast(column, sa.Text)

    def probe(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """An expression that equals :meth:`probe_value` of a string exactly when the texts are equal."""
        return self.text(column)

    def probe_type(self) -> sa.types.TypeEngine[Any]:
        return sa.Text()

    def probe_value(self, text: str) -> Any:
        """*text* as the cutoff table stores it for comparison with :meth:`probe`."""
        return self.exact_value(text)

    def exact_value(self, text: str) -> Any:
        """*text* as compared with :meth:`probe` in a statement (no length limit)."""
        return text

    def only(self, statement: Any, table: sa.Table) -> Any:
        """*statement* reading or changing *table*'s own rows only (not those of inheriting tables)."""
        return statement

    def from_probe(self, value: Any) -> str:
        """The subject text a :meth:`probe` value read back from the database stands for."""
        return str(value)

    # -- created values ----------------------------------------------------------------------
    def created(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """The expression compared with bounds and read by scan."""
        return column

    def created_valid(self, column: ColumnElement[Any], naive: bool) -> ColumnElement[bool]:
        """Rows whose created value is a usable timestamp: the only rows scanned or deleted."""
        lo, hi = (EARLIEST, LATEST) if naive else (EARLIEST.replace(tzinfo=UTC), LATEST.replace(tzinfo=UTC))
        expr = self.created(column)
        return sa.and_(expr >= self.bind_created(lo, column), expr <= self.bind_created(hi, column))

    def bind_created(self, value: datetime, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.literal(value, type_=column.type)

    def cutoff_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        return column.type

    def cutoff_value(self, value: datetime) -> Any:
        return value

    def read_created(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise ValueError(f"expected a timestamp, found {value!r}")
        return value

    def is_created_type(self, type_: sa.types.TypeEngine[Any]) -> bool:
        return isinstance(type_, sa.DateTime)

    def naive_created(self, type_: sa.types.TypeEngine[Any]) -> bool | None:
        """True: wall times needing ``timezone``; False: aware; None: stored in UTC by the database."""
        return not bool(getattr(type_, "timezone", False))


class PostgresFlavor(Flavor):
    name = "postgresql"

    def prepare(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # timestamptz values then come back in UTC (psycopg: tzinfo is timezone.utc), which
            # Clock.to_utc passes through; a server zone like Europe/Berlin made every row pay
            # for astimezone. Comparisons are between instants and do not depend on it.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SET TIME ZONE 'UTC'")
                # JIT compiled each push-down batch's DELETE (its per-row cutoff lookup made the
                # plan look expensive): ~0.4 s a batch for code run once; our statements are
                # batch-sized, where JIT never pays back (measured, issue 16).
                cursor.execute("SET jit = off")
            finally:
                cursor.close()
            dbapi_connection.commit()  # SET is transactional: keep it past the first rollback

    def probe(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        # "C": byte-wise equality even where the column has a nondeterministic collation.
        return self.text(column).collate("C")

    def probe_type(self) -> sa.types.TypeEngine[Any]:
        # The cutoff table's index must use the comparison's collation, or it is never used.
        return sa.Text(collation="C")

    def only(self, statement: Any, table: sa.Table) -> Any:
        # A table that others INHERIT from shows their rows too, and a DELETE reaches them, even
        # when they reuse the parent's keys: ONLY keeps every statement to the configured table.
        # A partitioned table is the other way round: its rows are its partitions' (ONLY: none).
        if table.info.get("partitioned"):
            return statement
        if isinstance(statement, sa.Select):
            return statement.with_hint(table, "ONLY", self.name)
        return statement.with_hint("ONLY", dialect_name=self.name)


class SqliteFlavor(Flavor):
    """SQLite has no timestamp type: timestamps are ISO text, compared as text."""

    name = "sqlite"
    for_update = False
    aware_types = False
    _DIGITS = "[0-9]"
    _SECONDS = "-".join([_DIGITS * 4, _DIGITS * 2, _DIGITS * 2]) + " " + ":".join([_DIGITS * 2] * 3)

    def prepare(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so a
            # SELECT and the DELETE after it share one transaction; and honour the schema's
            # foreign keys, which SQLite ignores unless asked.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

        @event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN")

    def probe(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return self.text(column).collate("BINARY")

    def created(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        # Accept both separators ISO 8601 allows; text order is then time order.
        return sa.type_coerce(sa.func.replace(column, "T", " "), sa.String())

    def created_valid(self, column: ColumnElement[Any], naive: bool) -> ColumnElement[bool]:
        expr = self.created(column)
        whole = expr.op("GLOB")(self._SECONDS)
        fraction = sa.and_(
            expr.op("GLOB")(self._SECONDS + ".[0-9]*"),
            sa.func.length(expr) <= 26,
            sa.not_(sa.func.substr(expr, 21).op("GLOB")("*[^0-9]*")),
        )
        # Through a Julian day number, an impossible date ('2026-02-30', '24:00:00') comes
        # back as another one: only a value that survives the round trip is a real
        # timestamp, exactly those Python parses.
        seconds = sa.func.substr(expr, 1, 19)
        real = sa.func.datetime(sa.func.julianday(seconds)) == seconds
        # The stored form first: a value that SQLite's datetime(), after a no-op modifier, gives
        # back unchanged is 'YYYY-MM-DD HH:MM:SS' with a real date and time — the same verdict as
        # the checks above, at a fraction of their cost. The modifier matters: without one,
        # datetime() echoes the fields it parsed, so '2020-02-30 00:00:00' and '… 24:00:00'
        # passed as themselves and a push-down deleted rows the scan calls problems (red team
        # F01); '+0 days' goes through the Julian day number and normalizes them to another text.
        # Measured, 1M rows: 0.22 s vs 0.14 s for the bare datetime(), 0.45 s for the round trip.
        # Other spellings ('T', fractions) still take the full check.
        # NULL = NULL is not true: a NULL created value stays unusable.
        canonical = sa.type_coerce(column, sa.String()) == sa.func.datetime(column, "+0 days")
        return sa.and_(sa.or_(canonical, sa.and_(sa.or_(whole, fraction), real)),
                       expr >= self.cutoff_value(EARLIEST), expr <= self.cutoff_value(LATEST))

    def cutoff_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        return sa.String()

    def cutoff_value(self, value: datetime) -> Any:
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def bind_created(self, value: datetime, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.literal(self.cutoff_value(value), type_=sa.String())

    def read_created(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError(f"expected ISO text, found {value!r}")
        return datetime.fromisoformat(value)

    def is_created_type(self, type_: sa.types.TypeEngine[Any]) -> bool:
        return isinstance(type_, (sa.DateTime, sa.String, sa.types.NullType))

    def naive_created(self, type_: sa.types.TypeEngine[Any]) -> bool | None:
        return True


class MysqlFlavor(Flavor):
    """MariaDB and MySQL: case- and space-insensitive collations, zero dates, UTC TIMESTAMPs."""

    name = "mysql"
    aware_types = False

    def prepare(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # TIMESTAMP columns are stored in UTC and converted to the session zone on the
            # way out: a UTC session makes them read back as what they are.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET time_zone = '+00:00'")
                cursor.execute("SELECT VERSION()")
                if "mariadb" in str(cursor.fetchone()[0]).lower():
                    # MariaDB caches a correlated subquery's result keyed by the outer column
                    # under the column's collation: with a case-insensitive subject column the
                    # cutoff found for 'Acme' was reused for 'ACME' (seen in SELECTs; our
                    # cutoff lookups must compare exactly), so the cache is off for our sessions.
                    cursor.execute("SET SESSION optimizer_switch = 'subquery_cache=off'")

    def text(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        from sqlalchemy.dialects import mysql

        return sa.cast(column, mysql.CHAR(charset="utf8mb4"))

    def probe(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        from sqlalchemy.dialects import mysql

        # Binary: 'Acme' != 'acme' and 'a ' != 'a', exactly as in Python.
        return sa.cast(self.text(column), mysql.BINARY())

    def probe_type(self) -> sa.types.TypeEngine[Any]:
        return sa.VARBINARY(MYSQL_PROBE_BYTES)

    def probe_value(self, text: str) -> Any:
        data = self.exact_value(text)
        if len(data) > MYSQL_PROBE_BYTES:
            raise ValueError(f"subject {text[:40]!r}… is longer than {MYSQL_PROBE_BYTES} bytes")
        return data

    def exact_value(self, text: str) -> Any:
        return text.encode("utf-8")

    def from_probe(self, value: Any) -> str:
        return bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray, memoryview)) else str(value)

    def created_valid(self, column: ColumnElement[Any], naive: bool) -> ColumnElement[bool]:
        # Zero dates ('0000-00-00', '2026-00-15') are not timestamps: never read, never deleted.
        # Nor are impossible ones a DATETIME holds under sql_mode=ALLOW_INVALID_DATES
        # ('2020-02-30', '2021-02-29'): the driver hands them over as text, a problem in the
        # scan, so the day may not pass the month's last (red team F02). LAST_DAY answers that
        # whatever the session's sql_mode; it is NULL for month 0, which the test above refuses.
        return sa.and_(super().created_valid(column, True), sa.func.month(column) != 0,
                       sa.func.dayofmonth(column) != 0,
                       sa.func.dayofmonth(column) <= sa.func.dayofmonth(sa.func.last_day(column)))

    def bind_created(self, value: datetime, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.literal(value.replace(tzinfo=None), type_=sa.DateTime())

    def cutoff_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        from sqlalchemy.dialects import mysql

        return mysql.DATETIME(fsp=6)

    def cutoff_value(self, value: datetime) -> Any:
        return value.replace(tzinfo=None)

    def naive_created(self, type_: sa.types.TypeEngine[Any]) -> bool | None:
        return None if isinstance(type_, sa.TIMESTAMP) else True


_FLAVORS: dict[str, type[Flavor]] = {
    "postgresql": PostgresFlavor,
    "sqlite": SqliteFlavor,
    "mysql": MysqlFlavor,
    "mariadb": MysqlFlavor,
}


def flavor_for(dialect_name: str) -> Flavor:
    return _FLAVORS.get(dialect_name, Flavor)()


def first_line(exc: BaseException) -> str:
    """A database error as one readable line, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return re.sub(r"\s+", " ", f"{type(orig).__name__}: {text}")[:500]
