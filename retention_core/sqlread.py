"""Reading a table or view of another system (a CRM's customers, a case system's holds) with SQLAlchemy.

Shared by the built-in ``sql`` subject and hold sources: the URL with ``${VAR}`` taken from the
environment, identifiers taken only from the database's own reflection (never pasted into SQL
text), and rows streamed so a million of them never sit in memory at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .options import Options

if TYPE_CHECKING:  # imported where a table is read: a run that reads none never loads SQLAlchemy
    import sqlalchemy as sa

_VAR = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
#: Rows fetched per round trip while streaming.
STREAM_CHUNK = 2000


class ReadFailed(Exception):
    """The database failed while a table was read; the message is its first line."""


def substitute_env(text: str, options: Options, key: str) -> str:
    """*text* with each ``${NAME}`` replaced by that environment variable.

    Credentials stay out of the policy file. An unset variable is an error naming it: a URL with
    a hole in it would connect somewhere else, or fail with a driver message that hides why.
    """
    def value(found: re.Match[str]) -> str:
        name = found.group(1)
        if not _ENV_NAME.match(name):
            raise options.error(key, f"expected ${{NAME}} with a variable name of letters, digits and '_', "
                                     f"found ${{{name}}}")
        if name not in os.environ:
            raise options.error(key, f"environment variable {name} is not set (used as ${{{name}}})")
        return os.environ[name]

    return _VAR.sub(value, text)


def read_url(options: Options, key: str = "url") -> sa.URL:
    """The ``url`` option as an SQLAlchemy URL; a relative SQLite path is relative to the policy file."""
    import sqlalchemy as sa

    raw = options.str(key)
    try:
        url = sa.make_url(substitute_env(raw, options, key))
    except sa.exc.ArgumentError:
        raise options.error(key, "expected an SQLAlchemy URL like postgresql+psycopg://user@host/db, "
                                 "mysql+pymysql://user@host/db or sqlite:///path.db") from None
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and not database.startswith(("file:", ":memory:")) \
            and not Path(database).is_absolute():
        url = url.set(database=str(options.base_dir / database))
    return url


def read_zone(options: Options, key: str = "timezone") -> tzinfo | None:
    """The declared zone of timestamps stored without one, or None when not declared."""
    name = options.str(key, None)
    if name is None:
        return None
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise options.error(key, f"expected an IANA time zone like Europe/Berlin or UTC, found {name!r}") from None


def read_columns(options: Options, fields: tuple[str, ...]) -> dict[str, str]:
    """The ``columns:`` mapping (field → column name), checked for unknown fields."""
    given: Mapping[Any, Any] = options.mapping("columns", {})
    out = {}
    for field, column in given.items():
        if field not in fields:
            raise options.error(f"columns.{field}", f"unknown field (fields: {', '.join(fields)})")
        if not isinstance(column, str) or not column:
            raise options.error(f"columns.{field}", f"expected a column name, found {column!r}")
        out[str(field)] = column
    return out


@dataclass
class Table:
    """A reflected table or view and the columns chosen from it, with its engine."""

    engine: sa.Engine
    table: sa.Table
    columns: dict[str, sa.Column[Any]]  # field → reflected column
    label: str  # how errors name it: "table 'customers' (postgresql://app@db/crm)"

    def stream(self) -> Iterator[dict[str, Any]]:
        """Every row as field → value, fetched in chunks (a server-side cursor where the driver has one).
        Raises :class:`ReadFailed` when the database fails."""
        import sqlalchemy as sa

        fields = list(self.columns)
        query = sa.select(*self.columns.values())
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=STREAM_CHUNK).execute(query)
                for row in result:
                    yield dict(zip(fields, row, strict=True))
        except sa.exc.SQLAlchemyError as exc:
            raise ReadFailed(_short(exc)) from None

    def first_duplicate(self, field: str) -> tuple[Any, int] | None:
        """A value of *field* that more than one row holds, with how many, or None (counted by the database)."""
        import sqlalchemy as sa

        column = self.columns[field]
        query = (sa.select(column, sa.func.count()).group_by(column)
                 .having(sa.func.count() > 1).order_by(column).limit(1))
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except sa.exc.SQLAlchemyError as exc:
            raise ReadFailed(_short(exc)) from None
        return (row[0], int(row[1])) if row is not None else None

    def close(self) -> None:
        self.engine.dispose()


def open_table(options: Options, fields: tuple[str, ...], required: tuple[str, ...]) -> Table:
    """Read ``url``, ``table``, ``schema``, ``columns``; connect and reflect the table or view.

    Every mapped column must exist in the reflection; a field not mapped uses the column of its
    own name when there is one. Errors name the option and list what the database has.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError

    url = read_url(options)
    name = options.str("table")
    schema = options.str("schema", None)
    mapping = read_columns(options, fields)
    shown = url.render_as_string(hide_password=True)
    try:
        engine = sa.create_engine(url)
    except ImportError as exc:
        raise options.error("url", f"the database driver for {url.drivername!r} is not installed ({exc.name or exc})") \
            from None
    except (ArgumentError, SQLAlchemyError) as exc:
        raise options.error("url", f"cannot use {shown}: {_short(exc)}") from None
    label = f"table {name!r} ({shown})"
    try:
        table = sa.Table(name, sa.MetaData(), autoload_with=engine, schema=schema)
    except NoSuchTableError:
        engine.dispose()
        raise options.error("table", f"no table or view {name!r} in {shown}"
                                     + (f" schema {schema!r}" if schema else "")) from None
    except SQLAlchemyError as exc:
        engine.dispose()
        raise options.error("url", f"cannot read {label}: {_short(exc)}") from None
    chosen: dict[str, sa.Column[Any]] = {}
    for field in fields:
        column = mapping.get(field, field)
        if column in table.c:
            chosen[field] = table.c[column]
        elif field in mapping or field in required:
            engine.dispose()
            key = f"columns.{field}" if field in mapping else "columns"
            raise options.error(key, f"{label} has no column {column!r} for {field} "
                                     f"(columns: {', '.join(c.name for c in table.c)})")
    return Table(engine, table, chosen, label)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
