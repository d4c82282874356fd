"""Reflect the configured table and check every configured name and type against it.

Names from the config are only ever looked up in the reflected schema; the SQL that runs
is built from the reflected ``Table`` object, so a name can never smuggle SQL in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError
from sqlalchemy.sql.elements import ColumnElement

from .clock import UTC, Clock
from .dialects import Flavor, first_line
from .filters import compile_filter
from .settings import HASH, LITERAL, NULL, SqlSettings
from .stamp import VERSION_TYPES

#: Key and subject columns must read back as one of these, so text round-trips exactly.
KEY_TYPES = (int, str, uuid.UUID)
#: "hmac:" and 64 hex digits.
HASH_WIDTH = 69
#: Foreign-key actions by which a delete here reaches rows of another table.
REACHING = ("CASCADE", "SET NULL", "SET DEFAULT")


@dataclass(frozen=True)
class TableInfo:
    """The reflected table and what the settings' names resolved to."""

    table: sa.Table
    key: sa.Column[Any]
    subject: sa.Column[Any]
    created: sa.Column[Any]
    key_type: type
    clock: Clock
    reaching: tuple[str, ...]  # foreign keys through which a delete cascades
    version: sa.Column[Any] | None = None  # the declared row-version column
    version_is_text: bool = False  # compared as exact text, whatever its collation
    row_filter: ColumnElement[bool] | None = None  # the ``where:`` option, compiled; None: every row

    def key_value(self, location: str) -> Any:
        """The key a ``Record.location`` names, or None when no row can have it."""
        try:
            value = self.key_type(location)
        except (TypeError, ValueError):
            return None
        return value if str(value) == location else None


def _partitioned(conn: sa.Connection, table: sa.Table) -> bool:
    """Whether *table* is a PostgreSQL partitioned table: its rows live in its partitions, so a
    statement with ONLY would see none of them (ONLY is for plain inheritance)."""
    if conn.dialect.name != "postgresql":
        return False
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    quoted = ".".join(conn.dialect.identifier_preparer.quote(part) for part in name.split(".", 1)) \
        if table.schema else conn.dialect.identifier_preparer.quote(table.name)
    kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"),
                        {"name": quoted}).scalar()
    return kind == "p"


def reflect(engine: Engine, flavor: Flavor, settings: SqlSettings) -> TableInfo:
    """Reflect and validate; raises ConfigError naming the offending option."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        where = f" in schema {settings.schema!r}" if settings.schema else ""
        try:
            found = inspector.has_table(settings.table, schema=settings.schema)
        except (ProgrammingError, DatabaseError) as exc:
            if isinstance(exc, OperationalError):
                raise
            # The database rejected the name itself (MariaDB: "Incorrect table name").
            raise settings.error("table", f"no table {settings.table!r}{where}: {first_line(exc)}") from None
        if not found and settings.schema is not None and settings.schema not in inspector.get_schema_names():
            raise settings.error("schema", f"no schema {settings.schema!r} in the database")
        if not found:
            raise settings.error("table", f"no table {settings.table!r}{where} in the database")
        table = sa.Table(settings.table, sa.MetaData(), autoload_with=conn, schema=settings.schema)
        reaching = tuple(_reaching_foreign_keys(conn, inspector, table))
        table.info["partitioned"] = _partitioned(conn, table)
    key = _column(table, settings, "key")
    subject = _column(table, settings, "subject")
    created = _column(table, settings, "created")
    key_type = _key_type(key, settings, "key")
    _key_type(subject, settings, "subject")
    _check_unique(table, key, settings)
    clock = _clock(created, flavor, settings)
    _check_anonymize(table, settings)
    version = _version(table, settings)
    version_is_text = version is not None and _python_type(version) is str
    row_filter = compile_filter(table, settings.row_filter, flavor, settings.error, settings.table)
    return TableInfo(table, key, subject, created, key_type, clock, reaching, version, version_is_text, row_filter)


def _column(table: sa.Table, settings: SqlSettings, option: str) -> sa.Column[Any]:
    name = getattr(settings, option)
    if name in table.c:
        return table.c[name]
    known = ", ".join(repr(c.name) for c in table.c)
    raise settings.error(option, f"no column {name!r} in table {settings.table!r} (columns: {known})")


def _version(table: sa.Table, settings: SqlSettings) -> sa.Column[Any] | None:
    """The row-version column, if declared: one whose values compare exactly (no floats)."""
    if settings.version_column is None:
        return None
    column = _column(table, settings, "version_column")
    if _python_type(column) not in VERSION_TYPES:
        raise settings.error("version_column", f"expected an integer, text, timestamp, date, decimal, UUID or "
                                               f"binary column, found {column.name!r} of type {column.type}")
    if column.name in {rule.column for rule in settings.anonymize}:
        raise settings.error("version_column", f"column {column.name!r} is anonymized, so it cannot tell whether "
                                               "a row changed")
    return column


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _key_type(column: sa.Column[Any], settings: SqlSettings, option: str) -> type:
    found = _python_type(column)
    if found not in KEY_TYPES:
        raise settings.error(option, f"expected an integer, text or UUID column, found {column.name!r} of type "
                                     f"{column.type}")
    return found  # type: ignore[return-value]


def _check_unique(table: sa.Table, key: sa.Column[Any], settings: SqlSettings) -> None:
    """The key must name one row: the single-column primary key or a unique column."""
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and pk[0] is key:
        return
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and list(constraint.columns) == [key]:
            return
    for index in table.indexes:
        if index.unique and list(index.columns) == [key]:
            return
    raise settings.error("key", f"column {key.name!r} is neither the primary key nor unique in table "
                                f"{settings.table!r}, so it cannot name one row")


def _clock(created: sa.Column[Any], flavor: Flavor, settings: SqlSettings) -> Clock:
    if not flavor.is_created_type(created.type):
        raise settings.error("created", f"expected a timestamp column, found {created.name!r} of type "
                                        f"{created.type}")
    naive = flavor.naive_created(created.type)
    if naive is None:  # stored in UTC by the database itself (MariaDB TIMESTAMP)
        return Clock(UTC)
    if not naive:
        return Clock(None)
    if settings.timezone is None:
        raise settings.error("timezone", f"is required: column {created.name!r} holds timestamps without a time "
                                         "zone; name the zone they were written in (e.g. UTC or Europe/Berlin)")
    return Clock(settings.timezone)


def _check_anonymize(table: sa.Table, settings: SqlSettings) -> None:
    for rule in settings.anonymize:
        key = f"anonymize.{rule.column}"
        if rule.column not in table.c:
            known = ", ".join(repr(c.name) for c in table.c)
            raise settings.error(key, f"no column {rule.column!r} in table {settings.table!r} (columns: {known})")
        column = table.c[rule.column]
        if column.primary_key:
            raise settings.error(key, "a primary-key column cannot be anonymized")
        found = _python_type(column)
        length = getattr(column.type, "length", None)
        if rule.mode == NULL and not column.nullable:
            raise settings.error(key, f"column {rule.column!r} is NOT NULL; use hash or a literal instead of null")
        if rule.mode == HASH:
            if found is not str:
                raise settings.error(key, f"hash needs a text column, found {column.type}")
            if length is not None and length < HASH_WIDTH:
                raise settings.error(key, f"hash needs room for {HASH_WIDTH} characters, column {rule.column!r} "
                                          f"holds {length}")
        if rule.mode == LITERAL:
            _check_literal(rule.literal, found, length, settings, key)


def _check_literal(value: Any, found: type | None, length: int | None, settings: SqlSettings, key: str) -> None:
    if found is str:
        if length is not None and len(str(value)) > length:
            raise settings.error(key, f"literal {value!r} is longer than the column ({length} characters)")
    elif found is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise settings.error(key, f"expected an integer literal for an integer column, found {value!r}")
    elif found is float or (found is not None and found.__name__ == "Decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise settings.error(key, f"expected a number literal for a numeric column, found {value!r}")
    elif found is bool:
        if not isinstance(value, bool):
            raise settings.error(key, f"expected true or false for a boolean column, found {value!r}")
    else:
        raise settings.error(key, "a literal can only replace text, numbers or booleans; use null")


def literal_value(value: Any, column: sa.Column[Any]) -> Any:
    """The literal as the column's Python type (YAML ``0`` into a text column is ``'0'``)."""
    return str(value) if _python_type(column) is str else value


def _reaching_foreign_keys(conn: sa.Connection, inspector: Any, table: sa.Table) -> list[str]:
    """Foreign keys elsewhere whose ON DELETE makes a delete here change other rows."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = conn.execute(sa.text(
            "SELECT c.conname, c.conrelid::regclass::text, c.confdeltype FROM pg_constraint c "
            "WHERE c.contype = 'f' AND c.confrelid = CAST(:rel AS regclass) AND c.confdeltype IN ('c', 'n', 'd')"),
            {"rel": _pg_regclass(conn, table)})
        names = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
        return [f"{child}.{name} (ON DELETE {names[kind]})" for name, child, kind in rows]
    if dialect in ("mysql", "mariadb"):
        schema = table.schema or conn.exec_driver_sql("SELECT DATABASE()").scalar()
        rows = conn.execute(sa.text(
            "SELECT CONSTRAINT_NAME, TABLE_NAME, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE UNIQUE_CONSTRAINT_SCHEMA = :schema AND REFERENCED_TABLE_NAME = :table "
            "AND DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')"), {"schema": schema, "table": table.name})
        return [f"{child}.{name} (ON DELETE {rule})" for name, child, rule in rows]
    if dialect == "sqlite":
        # PRAGMA, not the inspector: SQLAlchemy misses ON DELETE on inline column references.
        out = []
        for child in inspector.get_table_names(schema=table.schema):
            keys: dict[int, list[str]] = {}
            rules: dict[int, str] = {}
            query = sa.text('SELECT id, "table", "from", on_delete FROM pragma_foreign_key_list(:t, :s)')
            for fk_id, parent, column, rule in conn.execute(query, {"t": child, "s": table.schema or "main"}):
                # SQLite compares table names without regard to ASCII case.
                if parent.lower() == table.name.lower() and rule.upper() in REACHING:
                    keys.setdefault(fk_id, []).append(column)
                    rules[fk_id] = rule.upper()
            out += [f"{child}({', '.join(columns)}) (ON DELETE {rules[fk_id]})" for fk_id, columns in keys.items()]
        return out
    found = []
    for child in inspector.get_table_names(schema=table.schema):
        for fk in inspector.get_foreign_keys(child, schema=table.schema):
            ondelete = str((fk.get("options") or {}).get("ondelete") or "").upper()
            if fk.get("referred_table") == table.name and ondelete in REACHING:
                found.append(f"{child}.{fk.get('name') or '(' + ', '.join(fk['constrained_columns']) + ')'} "
                             f"(ON DELETE {ondelete})")
    return found


def _pg_regclass(conn: sa.Connection, table: sa.Table) -> str:
    """The table's regclass text, quoted by PostgreSQL itself (never by us)."""
    schema = table.schema or conn.exec_driver_sql("SELECT current_schema()").scalar()
    return str(conn.execute(sa.text("SELECT format('%I.%I', CAST(:s AS text), CAST(:t AS text))"),
                            {"s": schema, "t": table.name}).scalar())
