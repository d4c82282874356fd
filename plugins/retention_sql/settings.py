"""The ``sql`` backend's options, read and validated without touching the database."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from retention_core import ConfigError, Options

from .filters import FilterRule, read_filter

#: An anonymized column becomes NULL, a keyed hash, or a literal.
NULL, HASH, LITERAL = "null", "hash", "literal"

#: Names of UTC itself.
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})

#: Environment variable names: what a shell can export.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class AnonymizeRule:
    """What one column becomes when its row is anonymized."""

    column: str
    mode: str  # null | hash | literal
    literal: str | int | float | bool | None = None


@dataclass(frozen=True)
class SqlSettings:
    """Validated options of one ``sql`` source; ``where`` is the options' key path for errors."""

    url: str
    table: str
    key: str
    subject: str
    created: str
    where: str
    schema: str | None = None
    timezone: tzinfo | None = None
    batch_size: int = 10_000
    #: Keys per batch when a batch's rows stream into an evidence file (no --report): the rows
    #: never become Python objects there, so what a batch costs is mostly fixed (the fence's
    #: commits, two fsyncs, the range probe), and larger batches spread it over more rows.
    #: Without the option: 1,000,000, or ``batch_size`` when that is set (an operator who chose
    #: short transactions, to hold row locks briefly, keeps them).
    streamed_batch_size: int = 1_000_000
    anonymize: tuple[AnonymizeRule, ...] = field(default_factory=tuple)
    hash_key_env: str | None = None
    allow_cascade: bool = False
    #: A column the application changes on every write to a row (a version counter, an
    #: ``updated_at``): the per-record guard then also requires it to be unchanged.
    version_column: str | None = None
    #: The ``where:`` option: the rows of the table this source governs (all without it).
    row_filter: tuple[FilterRule, ...] = field(default_factory=tuple)

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming ``<where>.<key>`` (``sources[1].options.table``)."""
        return ConfigError(message, key=f"{self.where}.{key}")


def read_settings(options: Options) -> SqlSettings:
    """Read every option through the typed getters, then reject unknown keys."""
    settings = SqlSettings(
        url=_url(options),
        table=options.str("table"),
        key=options.str("key"),
        subject=options.str("subject"),
        created=options.str("created"),
        where=options.where,
        schema=options.str("schema", None),
        timezone=_zone(options),
        batch_size=options.int("batch_size", 10_000, minimum=1, maximum=100_000),
        streamed_batch_size=options.int("streamed_batch_size",
                                        options.int("batch_size") if "batch_size" in options else 1_000_000,
                                        minimum=1, maximum=10_000_000),
        anonymize=_rules(options),
        hash_key_env=_env_name(options),
        allow_cascade=options.bool("allow_cascade", False),
        version_column=options.str("version_column", None),
        row_filter=read_filter(options),
    )
    options.done()
    _cross_check(settings)
    return settings


def _url(options: Options) -> str:
    """The URL; a relative SQLite path is relative to the config file, like every other path."""
    url = options.str("url")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise options.error("url", "expected an SQLAlchemy URL like postgresql+psycopg://user@host/db, "
                                   "mysql+pymysql://user@host/db or sqlite:///path.db") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and not database.startswith(("file:", ":memory:")) \
            and not Path(database).is_absolute():
        return parsed.set(database=str(options.base_dir / database)).render_as_string(hide_password=False)
    return url


def _zone(options: Options) -> tzinfo | None:
    name = options.str("timezone", None)
    if name is None:
        return None
    if name in UTC_NAMES:
        return timezone.utc  # the same zone, on the clock's fast path
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise options.error("timezone", f"expected an IANA time zone like Europe/Berlin or UTC, found {name!r}") \
            from None


def _rules(options: Options) -> tuple[AnonymizeRule, ...]:
    raw: Mapping[str, object] = options.mapping("anonymize", {})
    if "anonymize" in options and not raw:
        raise options.error("anonymize", "expected at least one column, found an empty mapping")
    rules = []
    for column, value in raw.items():
        if not isinstance(column, str) or not column:
            raise options.error("anonymize", f"expected column names as keys, found {column!r}")
        if value is None or value == NULL:
            rules.append(AnonymizeRule(column, NULL))
        elif value == HASH:
            rules.append(AnonymizeRule(column, HASH))
        elif isinstance(value, (str, int, float, bool)):
            rules.append(AnonymizeRule(column, LITERAL, value))
        else:
            raise options.error(f"anonymize.{column}",
                                f"expected null, hash or a literal value, found {type(value).__name__}")
    return tuple(rules)


def _env_name(options: Options) -> str | None:
    name = options.str("hash_key_env", None)
    if name is not None and not _ENV_NAME.match(name):
        raise options.error("hash_key_env", f"expected an environment variable name, found {name!r}")
    return name


def _cross_check(s: SqlSettings) -> None:
    if s.created in (s.key, s.subject):
        raise s.error("created", f"must name its own column, not the {'key' if s.created == s.key else 'subject'} "
                                 f"column {s.created!r}")
    if s.version_column is not None and s.version_column == s.key:
        raise s.error("version_column", f"must name its own column, not the key column {s.key!r}")
    for rule in s.anonymize:
        if rule.column in (s.key, s.created):
            role = "key" if rule.column == s.key else "created"
            raise s.error(f"anonymize.{rule.column}",
                          f"the {role} column cannot be anonymized (the row must stay addressable and dated)")
    if any(rule.mode == HASH for rule in s.anonymize) and s.hash_key_env is None:
        raise s.error("hash_key_env", "is required when a column is anonymized with hash "
                                      "(name the environment variable holding the HMAC key)")
