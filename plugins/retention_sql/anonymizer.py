"""Anonymization: which values replace a row's identifying columns, and which rows are done.

A keyed hash (HMAC-SHA256, key from an environment variable) keeps values joinable for
statistics without being reversible by anyone lacking the key. Every hashed value carries
the ``hmac:`` prefix so an anonymized row is recognisable: such rows are not listed again
and not re-hashed on the next run (hashing is not idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from retention_core import ConfigError

from .schema import literal_value
from .settings import HASH, LITERAL, NULL, AnonymizeRule, SqlSettings

HASH_PREFIX = "hmac:"
MIN_KEY_BYTES = 16


class Anonymizer:
    """The configured rules, bound to the reflected table."""

    def __init__(self, settings: SqlSettings, table: sa.Table) -> None:
        self.settings = settings
        self.table = table
        self.rules: tuple[AnonymizeRule, ...] = settings.anonymize
        self.hashed = [table.c[r.column] for r in self.rules if r.mode == HASH]

    @property
    def configured(self) -> bool:
        return bool(self.rules)

    def require(self) -> None:
        """Refuse to anonymize without rules or without the HMAC key."""
        if not self.rules:
            raise self.settings.error("anonymize", "is required: the source's category says action: anonymize; "
                                                   "list the columns to anonymize and how (null, hash or a literal)")
        if self.hashed:
            self.key()

    def key(self) -> bytes:
        name = self.settings.hash_key_env or ""
        value = os.environ.get(name, "")
        if len(value.encode("utf-8")) < MIN_KEY_BYTES:
            state = "is not set" if not value else f"holds fewer than {MIN_KEY_BYTES} bytes"
            raise ConfigError(f"environment variable {name} {state}: hash anonymization needs a secret key "
                              f"of at least {MIN_KEY_BYTES} bytes", key=f"{self.settings.where}.hash_key_env")
        return value.encode("utf-8")

    def done(self) -> ColumnElement[bool]:
        """True for rows whose every configured column is already anonymized (never NULL)."""
        parts: list[ColumnElement[bool]] = []
        for rule in self.rules:
            column = self.table.c[rule.column]
            if rule.mode == NULL:
                parts.append(column.is_(None))
            elif rule.mode == LITERAL:
                parts.append(sa.or_(column.is_(None), column == sa.literal(literal_value(rule.literal, column),
                                                                            type_=column.type)))
            else:
                parts.append(sa.or_(column.is_(None), column.startswith(HASH_PREFIX, autoescape=True)))
        return sa.and_(*parts)

    def fixed_values(self) -> dict[str, Any]:
        """The values that do not depend on the row (null and literal rules), by column key."""
        out: dict[str, Any] = {}
        for rule in self.rules:
            column = self.table.c[rule.column]
            if rule.mode == NULL:
                out[column.key] = None
            elif rule.mode == LITERAL:
                out[column.key] = literal_value(rule.literal, column)
        return out

    def hash_value(self, key: bytes, value: Any) -> str | None:
        """``hmac:`` + HMAC-SHA256 of the value's text; NULL stays NULL, a hash stays itself."""
        if value is None:
            return None
        text = str(value)
        if text.startswith(HASH_PREFIX):
            return text
        return HASH_PREFIX + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
