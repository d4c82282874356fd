"""How the state store talks to its database: one set of SQL statements, two drivers.

A state store in an SQLite file goes through the standard library's :mod:`sqlite3`; any other
URL (PostgreSQL, MariaDB …) through SQLAlchemy, imported only then. Importing SQLAlchemy was
0.15 s of every run's start-up on the embedded default, more than the rest of the start-up
together (``python -X importtime``; docs/performance.md), while the store needs a few dozen
plain statements. Those statements are written once, in SQL that SQLite, PostgreSQL and MariaDB
all accept, with ``:name`` parameters (both drivers' style), so the store's logic has one path.

What the drivers must agree on, and do here:

* **Instants.** SQLite has no timestamp type: they are stored as text, ``YYYY-MM-DD
  HH:MM:SS.ffffff`` in UTC — exactly the form SQLAlchemy wrote in stores made before this module,
  so old stores read the same and text order is time order. Other databases get aware UTC
  datetimes. Reads hand back whatever the database gives; :func:`instant` makes it aware UTC.
* **Transactions.** :meth:`Database.begin` is one transaction, committed at the end and rolled
  back on an exception; on SQLite it starts ``BEGIN IMMEDIATE``, so a read-then-write (taking the
  run lock, releasing a hold) holds the write lock from its first read. :meth:`Database.connect`
  reads in one transaction too: its statements see one snapshot.
* **Errors.** A broken key constraint is :class:`~retention_core.errors.DuplicateKeyError`,
  anything else the database says :class:`~retention_core.errors.StateStoreError`, whichever
  driver raised it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import DuplicateKeyError, StateStoreError

#: How long a statement waits for another process's write lock (sqlite3's and pysqlite's default).
SQLITE_TIMEOUT = 5.0


# -- the schema, as data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column. ``kind``: ``str`` (needs *length*), ``text``, ``int``, ``bool`` or ``instant``."""

    name: str
    kind: str
    length: int | None = None
    nullable: bool = True
    primary_key: bool = False
    index: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    def length(self, column: str) -> int | None:
        """The column's length limit, None for unlimited text or a column this table lacks."""
        found = self.by_name.get(column)
        return found.length if found is not None else None


_SQLITE_TYPES = {"text": "TEXT", "int": "INTEGER", "bool": "BOOLEAN", "instant": "DATETIME"}


def sqlite_type(column: Column) -> str:
    """The declared type SQLAlchemy gives the column on SQLite (stores it made stay alike)."""
    return f"VARCHAR({column.length})" if column.kind == "str" else _SQLITE_TYPES[column.kind]


def sqlite_ddl(table: Table) -> list[str]:
    """``CREATE TABLE`` (and its indexes) as SQLAlchemy emitted them for SQLite, if missing."""
    lines = [f"{c.name} {sqlite_type(c)}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
    keys = [c.name for c in table.columns if c.primary_key]
    lines.append(f"PRIMARY KEY ({', '.join(keys)})")
    out = [f"CREATE TABLE IF NOT EXISTS {table.name} (\n  " + ",\n  ".join(lines) + "\n)"]
    out += [f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{c.name} ON {table.name} ({c.name})"
            for c in table.columns if c.index]
    return out


def sqlalchemy_table(table: Table, metadata: Any, *, mysql_collation: str = "utf8mb4_bin") -> Any:
    """The same table as an SQLAlchemy ``Table`` in *metadata* (imports SQLAlchemy)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    kinds = {"text": sa.Text, "int": sa.Integer, "bool": sa.Boolean}
    # MariaDB's DATETIME drops microseconds unless told to keep them (stores made before keep theirs).
    instant = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

    def kind(c: Column) -> Any:
        if c.kind == "str":
            return sa.String(c.length)
        return instant if c.kind == "instant" else kinds[c.kind]

    return sa.Table(table.name, metadata, *(
        sa.Column(c.name, kind(c), primary_key=c.primary_key, nullable=c.nullable or c.primary_key, index=c.index,
                  autoincrement=c.primary_key and c.kind == "int")
        for c in table.columns),
        # MariaDB's default collations compare without case (and pad trailing spaces): holds
        # CASE-1 and case-1 would be one row. Ids are exact text, as on SQLite and PostgreSQL.
        mysql_charset="utf8mb4", mysql_collate=mysql_collation)


# -- rows and results -----------------------------------------------------------------------------
class Row(tuple):  # type: ignore[type-arg]
    """A result row: a tuple whose columns are also attributes (``row.run_id``)."""

    _names: dict[str, int]

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._names[name]]
        except KeyError:
            raise AttributeError(name) from None


def _row_type(names: Sequence[str]) -> type[Row]:
    return type("Row", (Row,), {"_names": {n: i for i, n in enumerate(names)}, "__slots__": ()})


@dataclass
class Result:
    rows: list[Row]
    rowcount: int

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def all(self) -> list[Row]:
        return self.rows

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Row:
        if len(self.rows) != 1:
            raise StateStoreError(f"expected one row, found {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


def instant(value: Any) -> datetime | None:
    """An instant as read back, aware UTC: SQLite gives text, MariaDB naive UTC, PostgreSQL aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name_0, :name_1 …)`` and its parameters, for ``column IN`` (neither driver expands a list)."""
    params = {f"{name}_{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params


# -- the drivers --------------------------------------------------------------------------------------
class Connection:
    """Runs statements inside one transaction of a :class:`Database`."""

    def __init__(self, run: Any, sqlite: bool) -> None:
        self._run = run
        self._sqlite = sqlite

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        return self._run(sql, self._bind(params or {}))

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run an INSERT into a table whose key the database numbers; return that key."""
        return int(self._run(sql, self._bind(params), inserted_id=True))

    def _bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for name, value in out.items():
            if isinstance(value, datetime):
                utc = value.astimezone(timezone.utc) if value.tzinfo else value
                # Zero-padded as SQLAlchemy wrote it (strftime's %Y gives "999" for the year 999,
                # which neither sorts nor parses back).
                out[name] = (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}:"
                             f"{utc.second:02d}.{utc.microsecond:06d}" if self._sqlite
                             else utc.replace(tzinfo=timezone.utc))
        return out


class Database:
    """The state store's database: :class:`SqliteDatabase` or :class:`SqlAlchemyDatabase`."""

    #: ``sqlite``, ``postgresql``, ``mysql`` …
    dialect: str
    #: The URL as shown to people: no password.
    display_url: str

    def begin(self) -> Any:  # a context manager yielding a Connection, committing at its end
        raise NotImplementedError

    def connect(self) -> Any:
        raise NotImplementedError

    def create(self, tables: Sequence[Table]) -> None:
        """Create what is missing: tables, indexes, and columns newer than the store."""
        raise NotImplementedError

    def dispose(self) -> None:
        raise NotImplementedError


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL; None for any other URL (options, a driver
    name, memory, escapes: those go through SQLAlchemy, which understands them)."""
    prefix = "sqlite:///"
    if (not url.startswith(prefix) or len(url) == len(prefix) or url.endswith(":memory:")
            or any(c in url for c in "?%#")):
        return None
    return Path(url[len(prefix):])


def open_database(url: str) -> Database:
    """The driver for *url*; raises StateStoreError (or ImportError: SQLAlchemy or a driver missing)."""
    path = sqlite_file(url)
    return SqliteDatabase(path, url) if path is not None else SqlAlchemyDatabase(url)


class SqliteDatabase(Database):
    """An SQLite file through :mod:`sqlite3`: a connection per transaction (any thread may call)."""

    dialect = "sqlite"

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.display_url = url

    @contextmanager
    def _transaction(self, start: str) -> Iterator[Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store {self.display_url}: {exc}") from None
        try:
            cursor = db.cursor()

            def run(sql: str, params: dict[str, Any], inserted_id: bool = False) -> Any:
                try:
                    cursor.execute(sql, params)
                except sqlite3.IntegrityError as exc:
                    raise DuplicateKeyError(f"state store {self.display_url}: {exc}") from None
                except sqlite3.Error as exc:
                    raise StateStoreError(f"state store {self.display_url}: {exc}") from None
                if inserted_id:
                    return cursor.lastrowid
                if cursor.description is None:
                    return Result([], cursor.rowcount)
                make = _row_type([d[0] for d in cursor.description])
                return Result([make(r) for r in cursor.fetchall()], cursor.rowcount)

            run(start, {})
            try:
                yield Connection(run, sqlite=True)
            except BaseException:
                db.rollback()
                raise
            run("COMMIT", {})
        finally:
            db.close()

    def begin(self) -> Any:
        return self._transaction("BEGIN IMMEDIATE")

    def connect(self) -> Any:
        return self._transaction("BEGIN")

    def create(self, tables: Sequence[Table]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.begin() as conn:
            for table in tables:
                for statement in sqlite_ddl(table):
                    conn.execute(statement)
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
                for column in table.columns:
                    if column.name not in have:  # a store made before the column existed
                        conn.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {sqlite_type(column)}")

    def dispose(self) -> None:
        pass  # no connection outlives its transaction


class SqlAlchemyDatabase(Database):
    """Any other URL, through an SQLAlchemy engine (imported here, not before)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        try:
            self.engine = sa.create_engine(url)
        except sa.exc.ArgumentError as exc:
            raise StateStoreError(str(exc)) from None
        self.dialect = self.engine.dialect.name
        self.display_url = self.engine.url.render_as_string(hide_password=True)
        self._sa = sa

    @contextmanager
    def _transaction(self, begin: bool) -> Iterator[Connection]:
        sa = self._sa
        returning = self.engine.dialect.insert_returning

        def run(sql: str, params: dict[str, Any], inserted_id: bool = False) -> Any:
            if inserted_id and returning:
                sql += " RETURNING id"
            try:
                result = conn.execute(sa.text(sql), params)
            except sa.exc.IntegrityError as exc:
                raise DuplicateKeyError(f"state store {self.display_url}: {_first_line(exc)}") from None
            if inserted_id:
                return result.scalar_one() if returning else result.lastrowid
            if not result.returns_rows:
                return Result([], result.rowcount)
            make = _row_type(list(result.keys()))
            return Result([make(r) for r in result], result.rowcount)

        try:
            if begin and self.dialect == "sqlite":
                # pysqlite begins only before the first write: a read-then-write would not hold
                # the write lock from its read (two processes could both read "none" and insert).
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield Connection(run, sqlite=True)
                    conn.commit()
                return
            with (self.engine.begin() if begin else self.engine.connect()) as conn:
                yield Connection(run, sqlite=self.dialect == "sqlite")
        except sa.exc.SQLAlchemyError as exc:
            raise StateStoreError(f"state store {self.display_url}: {_first_line(exc)}") from None

    def begin(self) -> Any:
        return self._transaction(True)

    def connect(self) -> Any:
        return self._transaction(False)

    def create(self, tables: Sequence[Table]) -> None:
        sa = self._sa
        metadata = sa.MetaData()
        try:
            collation = "utf8mb4_bin"
            if self.dialect in ("mysql", "mariadb"):
                with self.engine.connect():  # the dialect learns the server's kind on first connect
                    pass
                # MariaDB's _nopad_ collation also tells "h1" from "h1 " (utf8mb4_bin pads spaces).
                collation = "utf8mb4_nopad_bin" if getattr(self.engine.dialect, "is_mariadb", False) else collation
            for table in tables:
                sqlalchemy_table(table, metadata, mysql_collation=collation)
            metadata.create_all(self.engine)
            if self.dialect in ("mysql", "mariadb"):
                self._require_exact_text([t.name for t in tables])
            inspector = sa.inspect(self.engine)
            for table in tables:
                have = {c["name"] for c in inspector.get_columns(table.name)}
                missing = [c for c in metadata.tables[table.name].columns if c.name not in have]
                with self.engine.begin() as conn:
                    for column in missing:  # a store made before the column existed
                        kind = column.type.compile(dialect=self.engine.dialect)
                        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
        except sa.exc.SQLAlchemyError as exc:
            raise StateStoreError(_first_line(exc)) from None

    def _require_exact_text(self, names: list[str]) -> None:
        """Refuse a MariaDB/MySQL store made before its tables compared text exactly."""
        members, params = in_list("t", names)
        with self.engine.connect() as conn:
            found = conn.execute(self._sa.text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns WHERE "
                f"table_schema = DATABASE() AND table_name IN {members} AND collation_name IS NOT NULL "
                "AND RIGHT(collation_name, 4) <> '_bin'"), params).first()
        if found is not None:
            table = found[0]
            raise StateStoreError(
                f"state store {self.display_url}: column {table}.{found[1]} compares text with collation {found[2]}, "
                "which ignores case: hold ids CASE-1 and case-1 would be one hold; convert each retention_* table "
                f"(ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin) and run again")

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
