"""The ``where:`` option: which rows of the table the source governs, as structured conditions.

Not raw SQL: each key must name a reflected column and each value is bound as a parameter,
so the condition is built from SQLAlchemy constructs on the reflected ``Table`` like every
other statement of the backend. A scalar means equality, a list means ``IN``, ``null`` means
``IS NULL``, and ``{not: …}`` negates any of them (a row whose value is NULL is *not* equal to
a non-null value, so ``{not: open}`` includes rows with NULL unless ``null`` is listed).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from retention_core import Options

from .dialects import Flavor

#: What YAML can give as a value to compare with.
SCALARS = (str, int, float, bool)
#: The integers every driver binds (SQLite and MariaDB BIGINT, PostgreSQL bigint).
INT64 = (-(2 ** 63), 2 ** 63 - 1)


@dataclass(frozen=True)
class FilterRule:
    """One column's condition: its value is (``negated``: is not) one of ``values`` (None: NULL)."""

    column: str
    values: tuple[Any, ...]
    negated: bool = False


def read_filter(options: Options) -> tuple[FilterRule, ...]:
    """The ``where:`` mapping as rules, checked for shape only (columns and types need the table)."""
    raw: Mapping[Any, Any] = options.mapping("where", {})
    if "where" in options and not raw:
        raise options.error("where", "expected at least one column, found an empty mapping")
    rules = []
    for column, value in raw.items():
        if not isinstance(column, str) or not column:
            raise options.error("where", f"expected column names as keys, found {column!r}")
        key = f"where.{column}"
        negated = isinstance(value, Mapping)
        if negated:
            if set(value) != {"not"}:
                raise options.error(key, f"expected a value, a list of values or {{not: …}}, found a mapping "
                                         f"with {', '.join(sorted(map(str, value)))}")
            value = value["not"]
        values = tuple(value) if isinstance(value, list) else (value,)
        if not values:
            raise options.error(key, "expected at least one value, found an empty list")
        for item in values:
            if item is not None and not isinstance(item, SCALARS):
                raise options.error(key, f"expected text, a number, true/false or null, found {item!r}")
            if isinstance(item, int) and not isinstance(item, bool) and not INT64[0] <= item <= INT64[1]:
                raise options.error(key, f"{item} does not fit a 64-bit integer column (no database can bind it)")
        rules.append(FilterRule(column, values, negated))
    return tuple(rules)


def compile_filter(table: sa.Table, rules: tuple[FilterRule, ...], flavor: Flavor, error: Any,
                   table_name: str) -> ColumnElement[bool] | None:
    """The rules as one condition on the reflected *table*; a ConfigError (via *error*) for an
    unknown column or a value the column cannot hold. None without rules."""
    if not rules:
        return None
    parts = []
    for rule in rules:
        key = f"where.{rule.column}"
        if rule.column not in table.c:
            known = ", ".join(repr(c.name) for c in table.c)
            raise error(key, f"no column {rule.column!r} in table {table_name!r} (columns: {known})")
        column = table.c[rule.column]
        values = [_checked(v, column, error, key) for v in rule.values if v is not None]
        parts.append(_condition(column, values, None in rule.values, rule.negated, flavor))
    return sa.and_(*parts)


def _checked(value: Any, column: sa.Column[Any], error: Any, key: str) -> Any:
    """*value* as the column's Python type; a ConfigError when YAML gave another kind."""
    try:
        found: type | None = column.type.python_type
    except NotImplementedError:
        found = None
    if found is str:
        if isinstance(value, str):
            return value
        raise error(key, f"expected text for column {column.name!r} of type {column.type}, found "
                         f"{value!r} (quote it)")
    if found is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise error(key, f"expected an integer for column {column.name!r} of type {column.type}, found {value!r}")
    if found is bool:
        if isinstance(value, bool):
            return value
        raise error(key, f"expected true or false for column {column.name!r} of type {column.type}, found {value!r}")
    if found in (float, Decimal):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Decimal(str(value)) if found is Decimal else value
        raise error(key, f"expected a number for column {column.name!r} of type {column.type}, found {value!r}")
    if found is uuid.UUID:
        try:
            return uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise error(key, f"expected a UUID for column {column.name!r}, found {value!r}") from None
    raise error(key, f"column {column.name!r} of type {column.type} cannot be filtered on: where: compares "
                     "text, integer, numeric, boolean or UUID columns (or null with any column)")


def _condition(column: sa.Column[Any], values: list[Any], null: bool, negated: bool,
               flavor: Flavor) -> ColumnElement[bool]:
    """``column IN values [OR column IS NULL]``, or its exact negation (NULL rows included
    unless ``null`` was listed). Text is compared byte for byte, whatever the collation."""
    alternatives: list[ColumnElement[bool]] = []
    if values:
        alternatives.append(_member(column, values, flavor))
    if null:
        alternatives.append(column.is_(None))
    positive = sa.or_(*alternatives)
    if not negated:
        return positive
    # NOT (x IN …) is NULL, not true, for a NULL x: say what is meant for NULL rows explicitly.
    outside = sa.not_(_member(column, values, flavor)) if values else sa.true()
    return sa.and_(column.is_not(None), outside) if null else sa.or_(column.is_(None), outside)


def _member(column: sa.Column[Any], values: list[Any], flavor: Flavor) -> ColumnElement[bool]:
    """``column IN values``; for text also exactly (MariaDB's default collations equal ``EU``,
    ``eu`` and ``eu ``), beside the plain ``IN`` that can use the column's index."""
    if values and isinstance(values[0], str):
        return sa.and_(column.in_(values), flavor.probe(column).in_([flavor.exact_value(v) for v in values]))
    return column.in_(values)
