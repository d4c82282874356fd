"""The ``sql`` backend: rows of one table as records, deleted by key or set-based in place."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from retention_core import (
    Action,
    Backend,
    BackendError,
    ConfigError,
    Cutoffs,
    Options,
    Outcome,
    Partition,
    Problem,
    PushdownPlan,
    Record,
    RetentionError,
    Source,
    Status,
    Survey,
    host_identity,
)
from retention_core.backend import StreamedBatch

from .anonymizer import Anonymizer
from .dialects import Flavor, first_line, flavor_for
from .partitions import key_partitions, key_range
from .pushdown import RangeWalk, survey
from .rows import GUARD_CHUNK, Row, TableOps, chunks
from .schema import TableInfo, reflect
from .settings import read_settings

#: Extras that install each dialect's driver.
DRIVER_HINTS = {
    "postgresql": "pip install 'retention[postgres]' (psycopg 3; URL postgresql+psycopg://…)",
    "mysql": "pip install 'retention[mysql]' (PyMySQL; URL mysql+pymysql://…)",
    "mariadb": "pip install 'retention[mysql]' (PyMySQL; URL mariadb+pymysql://…)",
}


class Unreachable(ConfigError):
    """The database did not answer: nothing about the table could be checked."""


class SqlBackend(Backend):
    """Rows of one table in any SQLAlchemy database.

    ``Record.location`` is the key column's value as text and ``Record.subject`` the
    subject column's; ``created`` is read from the created column (naive columns in the
    configured ``timezone``); ``stamp`` holds the created, subject (and version) values as
    stored, which the per-record ``DELETE`` requires unchanged. The table is reflected on
    first use, never in ``__init__``.
    """

    name = "sql"
    can_anonymize = True
    can_push_down = True

    def __init__(self, options: Options) -> None:
        self.settings = read_settings(options)
        self.batch_size = self.settings.batch_size  # type: ignore[misc]  # per instance, from options
        self.engine = _engine(self.settings.url, self.settings.error)
        self.flavor: Flavor = flavor_for(self.engine.dialect.name)
        self.flavor.prepare(self.engine)
        self._ops: TableOps | None = None

    # -- reflection, once ---------------------------------------------------------------------------------
    @property
    def ops(self) -> TableOps:
        if self._ops is None:
            self._require_sqlite_file()
            try:
                info = reflect(self.engine, self.flavor, self.settings)
            except RetentionError:
                raise
            except Exception as exc:  # noqa: BLE001 - a driver's own failure to connect (pymysql: a bad
                # charset is an AttributeError) is still "cannot reach", in one line
                detail = first_line(exc) if isinstance(exc, SQLAlchemyError) else f"{type(exc).__name__}: {exc}"
                error = self.settings.error("url", f"cannot reach {self._safe_url()}: {detail}")
                raise Unreachable(error.detail, key=error.key) from None
            anonymizer = Anonymizer(self.settings, info.table)
            self._ops = TableOps(info, self.flavor, anonymizer, returning=self.engine.dialect.delete_returning)
        return self._ops

    @property
    def info(self) -> TableInfo:
        return self.ops.info

    def _require_sqlite_file(self) -> None:
        """SQLite would silently create a missing file; a typo in the path must be an error."""
        url = self.engine.url
        database = url.database or ""
        if url.get_backend_name() == "sqlite" and database and not database.startswith(("file:", ":memory:")) \
                and not Path(database).exists():
            raise self.settings.error("url", f"no SQLite database file {database!r}")

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _destructive(self) -> TableOps:
        """The table, checked for what a delete would do beyond it."""
        ops = self.ops
        if ops.info.reaching and not self.settings.allow_cascade:
            raise self.settings.error(
                "allow_cascade", f"deleting from {self.settings.table!r} would reach other tables through "
                                 f"{', '.join(ops.info.reaching)}; set allow_cascade: true if that is intended")
        return ops

    def territory(self, source: Source) -> str:
        """The server, database and table (one table listed by two sources is listed twice): a
        SQLite file by its device and inode (a hard link or another path is the same file), a
        server by :func:`~retention_core.host_identity` and port (``localhost`` is ``127.0.0.1``),
        a table without a schema in the dialect's default one (MySQL: the URL's database)."""
        url = self.engine.url
        backend = url.get_backend_name()
        if backend == "sqlite":
            database = url.database or ""
            if database and not database.startswith(("file:", ":memory:")) and os.path.exists(database):
                info = os.stat(database)
                where = f"sqlite dev={info.st_dev} ino={info.st_ino}"
            else:
                where = f"sqlite {database}"
            schema = self.settings.schema or "main"
        else:
            port = url.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(backend)
            server = f"{backend} {host_identity(url.host, port)}"
            if backend == "postgresql":
                where, schema = f"{server} {url.database or ''}", self.settings.schema or "public"
            else:  # MySQL/MariaDB: a schema is a database
                where, schema = server, self.settings.schema or url.database or ""
        return f"{where} {schema}.{self.settings.table}\n"

    def fingerprint(self, source: Source) -> str | None:
        """The territory and the ``where:`` filter: under another filter the source lists other
        rows, so a row's absence then is no evidence that an earlier run deleted it. (The
        territory itself leaves the filter out: two sources on one table may list the same
        row unless the policy says otherwise with ``overlaps:``.)"""
        place = self.territory(source)
        rules = sorted((r.column, r.negated, sorted(map(repr, r.values))) for r in self.settings.row_filter)
        return place if not rules else f"{place}where {json.dumps(rules)}\n"

    def check(self, source: Source) -> None:
        self._destructive()
        if self.ops.anonymizer.hashed:
            self.ops.anonymizer.key()

    def warnings(self, source: Source) -> list[str]:
        try:
            info = self.info
        except Unreachable as exc:  # validate works offline; enforcing (check) still refuses
            return [f"could not inspect table {self.settings.table!r}: {exc.detail}"]
        out = []
        for fk in info.reaching:
            verdict = ("allowed by allow_cascade" if self.settings.allow_cascade
                       else "refused unless allow_cascade: true")
            out.append(f"a delete from {self.settings.table!r} reaches another table through {fk} ({verdict})")
        if info.created.nullable:
            out.append(f"column {info.created.name!r} allows NULL: rows without a created time are reported "
                       "as listing problems and never deleted")
        if self.settings.timezone is not None and not info.clock.naive:
            out.append(f"timezone is ignored: column {info.created.name!r} stores instants, not wall times")
        if self.settings.timezone is not None and info.clock.zone is not self.settings.timezone \
                and info.clock.naive:
            out.append(f"timezone is ignored: column {info.created.name!r} is a TIMESTAMP, which the database "
                       "stores in UTC")
        return out

    def present(self, source: Source, location: str, version: str | None = None) -> bool | None:
        """Whether a live (not anonymized) row has this key, inside the source's ``where:`` or not:
        recovery asks it of a record its scan did not list, so that a row that only left the
        filter (a case reopened) is never taken for one deleted."""
        ops = self.ops
        value = ops.info.key_value(location)
        if value is None:
            return None
        try:
            with self.engine.connect() as conn:
                return bool(ops.present(conn, [value], live=True))
        except SQLAlchemyError as exc:  # never guess: the caller must not infer a deletion
            raise BackendError(f"source {source.name!r}: cannot look up key {location!r}: {first_line(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- listing --------------------------------------------------------------------------------------------
    def scan(self, source: Source) -> Iterator[Record | Problem]:
        return self._scan(source)

    def partitions(self, source: Source) -> list[Partition]:
        """Key ranges of about ``partitions.ROWS_PER_PARTITION`` rows (:mod:`.partitions`)."""
        try:
            return key_partitions(self.engine, self.ops, source)
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: cutting {self.settings.table!r} into key ranges "
                               f"failed: {first_line(exc)}") from None

    def scan_partition(self, source: Source, partition: Partition) -> Iterator[Record | Problem]:
        if partition.token == "":
            return self.scan(source)
        return self._scan(source, *key_range(self.ops, partition))

    def _scan(self, source: Source, within: Any = None, null_keys: bool = True) -> Iterator[Record | Problem]:
        ops = self.ops
        name, category = source.name, source.category
        listed, problems = ops.scan_query(), ops.problem_query()
        if within is not None:  # one key range (scan_partition)
            listed, problems = listed.where(within), problems.where(within)
        try:
            yield from self._rows(ops, listed, lambda rows: ops.listed(name, category, rows))
            yield from self._rows(ops, problems, lambda rows: ops.unusable(name, rows))
            if null_keys and ops.null_keys_possible:
                with self.engine.connect() as conn:
                    yield from ops.null_key_problems(name, conn.execute(ops.null_key_query()).all())
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: listing {self.settings.table!r} failed: "
                               f"{first_line(exc)}") from None

    def _rows(self, ops: TableOps, query: sa.Select[Any], convert: Callable[[Sequence[Row]], Iterator[Any]]
              ) -> Iterator[Any]:
        """*query*'s rows (the key first), streamed through *convert*.

        PostgreSQL and MariaDB stream from a server-side cursor. SQLite reads keyset pages,
        each in its own short transaction, so a long listing never holds the database's lock
        while others (or we) write.
        """
        if self.flavor.name != "sqlite":
            with self.engine.connect() as conn:
                streaming = conn.execution_options(stream_results=True, yield_per=self.batch_size)
                for rows in streaming.execute(query).partitions():
                    yield from convert(rows)
            return
        last: Any = None
        while True:
            page = query.order_by(ops.key).limit(self.batch_size)
            if last is not None:
                page = page.where(ops.key > last)
            with self.engine.connect() as conn:
                rows = conn.execute(page).all()
            yield from convert(rows)
            if len(rows) < self.batch_size:
                return
            last = rows[-1][0]

    # -- per-record deletion and anonymization --------------------------------------------------------------
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._per_record(records, anonymize=False)

    def anonymize(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._per_record(records, anonymize=True)

    def _per_record(self, records: Sequence[Record], *, anonymize: bool) -> Iterator[Outcome]:
        if not records:
            return
        ops = self._destructive()
        key: bytes | None = None
        if anonymize:
            ops.anonymizer.require()
            key = ops.anonymizer.key() if ops.anonymizer.hashed else None
        for batch in chunks(list(records), self.batch_size):
            yield from self._batch(ops, batch, anonymize, key)

    def _batch(self, ops: TableOps, batch: Sequence[Record], anonymize: bool, key: bytes | None) -> Iterator[Outcome]:
        done = Status.ANONYMIZED if anonymize else Status.DELETED
        by_key: dict[Any, list[Record]] = {}
        for record in batch:
            value = ops.info.key_value(record.location)
            if value is None:  # not a value the key column can hold: no such row
                yield Outcome(record, Status.ALREADY_GONE)
            else:
                by_key.setdefault(value, []).append(record)
        if not by_key:
            return
        try:
            affected, changed = self._affect(ops, by_key, anonymize, key)
        except SQLAlchemyError:
            # One statement for the batch failed: find out key by key, so one bad row cannot
            # hide the others' outcomes (a transient fault is retried this way, once).
            for value, records in by_key.items():
                try:
                    affected, changed = self._affect(ops, {value: records}, anonymize, key)
                except SQLAlchemyError as exc:
                    error = first_line(exc)
                    yield from (Outcome(r, Status.FAILED, error) for r in records)
                    continue
                yield from _verdicts(records, affected, changed, done)
            return
        for records in by_key.values():
            yield from _verdicts(records, affected, changed, done)

    def _affect(self, ops: TableOps, by_key: dict[Any, list[Record]], anonymize: bool, key: bytes | None
                ) -> tuple[set[str], set[str]]:
        """Delete or anonymize, in one transaction, the rows of *by_key* that still hold what the
        scan saw (the guard is in the statement's WHERE, so nothing changes in between); return
        the affected locations and those whose row is there but changed since the scan."""
        items = list(by_key.items())
        with self.engine.begin() as conn:
            affected: set[str] = set()
            for part in chunks(items, GUARD_CHUNK):
                where = ops.unchanged(part)
                rows = ops.anonymize_where(conn, where, key) if anonymize else ops.delete_where(conn, where)
                affected.update(str(row[0]) for row in rows)
            rest = [value for value, _ in items if str(value) not in affected]
            # Anonymizing: a row anonymized since is done (already_gone), not changed.
            changed = ops.present(conn, rest, live=anonymize) if rest else set()
        return affected, changed

    # -- set-based --------------------------------------------------------------------------------------------
    def push_down(self, source: Source, plan: PushdownPlan) -> Generator[list[Outcome] | StreamedBatch, None, None]:
        return self._push_down(source, plan)

    def _push_down(self, source: Source, plan: PushdownPlan
                   ) -> Generator[list[Outcome] | StreamedBatch, None, None]:
        ops = self._destructive()
        key: bytes | None = None
        if plan.cutoffs.action is Action.ANONYMIZE:
            ops.anonymizer.require()
            key = ops.anonymizer.key() if ops.anonymizer.hashed else None
        try:
            yield from RangeWalk(ops, self.engine, self.batch_size, key,
                                 self.settings.streamed_batch_size).run(source, plan)
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: set-based deletion failed: {first_line(exc)}") from None

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        """Count the source's rows in the database, selected exactly as :meth:`push_down` selects."""
        try:
            return survey(self.ops, self.engine, cutoffs)
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: counting rows in {self.settings.table!r} failed: "
                               f"{first_line(exc)}") from None


def _verdicts(records: Sequence[Record], affected: set[str], changed: set[str], done: Status) -> Iterator[Outcome]:
    """Each record's outcome: acted on; still there but not as the scan saw it; or gone."""
    for record in records:
        if record.location in affected:
            yield Outcome(record, done)
        elif record.location in changed:
            yield Outcome(record, Status.CHANGED, "the row changed since it was listed (re-created, "
                                                  "re-dated, moved to another subject or updated): kept")
        else:
            yield Outcome(record, Status.ALREADY_GONE)


def _engine(url: str, error: Any) -> sa.Engine:
    """An engine for *url*; nothing connects yet. A missing driver is a config error with a hint."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise error("url", "expected an SQLAlchemy URL like postgresql+psycopg://user@host/db, "
                           "mysql+pymysql://user@host/db or sqlite:///path.db") from None
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise error("url", f"unknown database dialect {parsed.drivername!r}") from None
    except ImportError as exc:
        hint = DRIVER_HINTS.get(parsed.get_backend_name(), "install the driver the URL names")
        raise error("url", f"the driver for {parsed.drivername!r} is not installed ({exc.name}): {hint}") from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise error("url", f"cannot use {parsed.render_as_string(hide_password=True)}: {exc}") from None
