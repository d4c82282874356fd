"""The statements both paths share: which rows count, and deleting or anonymizing a set of them.

The per-record path (``delete(records)``) and the set-based path (``push_down``) differ only
in the ``WHERE`` they pass here; what "a usable row" is, how a row becomes a
:class:`~retention_core.Record` (or a :class:`~retention_core.Problem`), how deleted keys are
reported, and the guard that a row still holds what the scan saw are defined once. Every
statement reads or changes the configured table's own rows only (PostgreSQL ``ONLY``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from retention_core import BackendError, Problem, Record

from .anonymizer import Anonymizer
from .clock import EARLIEST, LATEST
from .dialects import Flavor
from .schema import TableInfo
from .stamp import decode, encode

#: Most keys bound into one ``IN (...)``: well under every driver's parameter limit.
IN_CHUNK = 1000
#: Most rows one guarded statement names, each with its own scanned values (an ``OR`` of them).
GUARD_CHUNK = 200


#: What is reported for an affected row: (key, subject text, raw created value), as the
#: driver returned it (the first three of :meth:`TableOps.columns`). Not an object per row:
#: on a push-down batch that construction cost as much as reading the row.
Row = Sequence[Any]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class UnreadableRow(BackendError):
    """A row the set-based path selected whose created value Python cannot represent."""


class TableOps:
    """Statements on one reflected table, for one dialect."""

    def __init__(self, info: TableInfo, flavor: Flavor, anonymizer: Anonymizer, returning: bool) -> None:
        self.info = info
        self.flavor = flavor
        self.anonymizer = anonymizer
        self.returning = returning
        self.table = info.table
        self.key = info.key
        self.versioned = info.version is not None

    # -- statements on this table alone ---------------------------------------------------------
    def select(self, *columns: Any) -> sa.Select[Any]:
        return self.flavor.only(sa.select(*columns).select_from(self.table), self.table)

    def delete(self) -> sa.Delete:
        return self.flavor.only(sa.delete(self.table), self.table)

    def update(self) -> sa.Update:
        return self.flavor.only(sa.update(self.table), self.table)

    # -- which rows exist for us ---------------------------------------------------------------
    def usable(self) -> ColumnElement[bool]:
        """Rows with a key and a created value that is a usable timestamp (NULL: not usable)."""
        return sa.and_(self.key.is_not(None), self.flavor.created_valid(self.info.created, self.info.clock.naive))

    def live(self) -> ColumnElement[bool]:
        """Rows not anonymized yet (all of them without anonymize rules): anonymized rows are done with."""
        return sa.not_(self.anonymizer.done()) if self.anonymizer.configured else sa.true()

    def scope(self) -> ColumnElement[bool]:
        """The rows this source governs: inside its ``where:`` filter and live. Every statement
        that lists, counts, deletes or anonymizes rows requires it, so a row outside the filter
        is never listed, counted or touched."""
        parts = self._scope_parts()
        return sa.and_(*parts) if parts else sa.true()

    def _scope_parts(self) -> list[ColumnElement[bool]]:
        parts = []
        if self.info.row_filter is not None:
            parts.append(self.info.row_filter)
        if self.anonymizer.configured:
            parts.append(self.live())
        return parts

    def valid(self) -> ColumnElement[bool]:
        """The rows scan lists as records and push-down may act on: usable and in scope."""
        return sa.and_(self.usable(), *self._scope_parts())

    def columns(self) -> list[ColumnElement[Any]]:
        """key, subject as text, created as read: the columns every Row is built from."""
        return [self.key, self.flavor.text(self.info.subject).label("subject"),
                self.flavor.created(self.info.created).label("created")]

    # -- listing ---------------------------------------------------------------------------------
    def scan_query(self) -> sa.Select[Any]:
        """The rows scan lists as records: key, subject, created as read, and the version
        column's raw value where one is declared (for the stamp)."""
        columns = self.columns()
        if self.info.version is not None:
            columns.append(sa.type_coerce(self.info.version, sa.types.NullType()).label("version"))
        return self.select(*columns).where(self.valid())

    def problem_query(self) -> sa.Select[Any]:
        """Rows in scope with a key whose created value is NULL or not a usable timestamp: key,
        subject and created as text (never as a timestamp, which a driver may fail to read:
        PostgreSQL ``infinity``, MariaDB zero dates). A separate statement, so the listing of
        the usable rows stays as cheap as the set-based path's own test."""
        usable = self.flavor.created_valid(self.info.created, self.info.clock.naive)
        return (self.select(self.key, self.flavor.text(self.info.subject), self.flavor.text(self.info.created))
                .where(self.key.is_not(None), self.scope(), sa.not_(sa.func.coalesce(usable, sa.false()))))

    @property
    def null_keys_possible(self) -> bool:
        """Whether the key column can hold NULL (a unique column; SQLite even lets a non-integer
        primary key hold it, while an INTEGER PRIMARY KEY is the rowid and never NULL)."""
        key = self.key
        if self.flavor.name == "sqlite" and key.primary_key and self.info.key_type is int:
            return False
        return bool(key.nullable)

    def null_key_query(self) -> sa.Select[Any]:
        """Rows in scope whose key is NULL: they cannot be named, so they are problems, never records."""
        return self.select(self.flavor.text(self.info.subject)).where(self.key.is_(None), self.scope())

    def listed(self, source: str, category: str | None, rows: Iterable[Row]) -> Iterator[Record | Problem]:
        """A :class:`Record` with its stamp for each row of :meth:`scan_query`, or a
        :class:`Problem` where Python cannot represent its created value (one bad row never
        stops a scan)."""
        to_utc, read = self.info.clock.to_utc, self.flavor.read_created
        versioned = self.versioned
        for row in rows:
            key, subject, created = row[0], row[1], row[2]
            if subject is not None and subject.__class__ is not str:
                subject = str(subject)
            try:
                when = to_utc(read(created))
                stamp = encode(created, subject, row[3] if versioned else None, versioned=versioned)
            except (ValueError, OverflowError, TypeError) as exc:
                yield Problem(source, str(key), f"created column {self.info.created.name!r} holds {created!r}, "
                                                f"which cannot be read as a UTC instant: {exc}", subject)
                continue
            # (positional: keyword arguments cost a tenth more per row)
            yield Record(source, str(key), when, None, None, subject, category, stamp)

    def unusable(self, source: str, rows: Iterable[Row]) -> Iterator[Problem]:
        """A :class:`Problem` for each row of :meth:`problem_query`, naming the value found."""
        column = self.info.created.name
        for key, subject, text in rows:
            reason = (f"created column {column!r} is NULL" if text is None else
                      f"created column {column!r} holds {text!r}, not a timestamp between "
                      f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
            yield Problem(source, str(key), reason, None if subject is None else str(subject))

    def null_key_problems(self, source: str, rows: Iterable[Row]) -> Iterator[Problem]:
        reason = f"key column {self.key.name!r} is NULL: the row cannot be named, listed or deleted"
        for row in rows:
            subject = row[0]
            yield Problem(source, "", reason, None if subject is None else str(subject))

    def record(self, source: str, category: str | None, row: Row) -> Record:
        return self.records(source, category, (row,))[0]

    def records(self, source: str, category: str | None, rows: Iterable[Row]) -> list[Record]:
        """One :class:`Record` per row, in order: the rows a push-down batch acted on.

        Every row a push-down batch reads passes here, so the loop keeps its lookups in
        locals and UTC values skip the time-zone conversion (see ``Clock.to_utc``). Raises
        :class:`UnreadableRow` for a created value Python cannot represent (the batch then
        goes row by row, and that row is kept).
        """
        to_utc, read = self.info.clock.to_utc, self.flavor.read_created
        out: list[Record] = []
        append = out.append
        for row in rows:
            key, subject, created = row[0], row[1], row[2]
            try:
                when = to_utc(read(created))
            except (ValueError, OverflowError, TypeError) as exc:
                raise UnreadableRow(f"table {self.table.name!r}, key {key!r}: cannot read created value "
                                    f"{created!r}: {exc}") from None
            # (positional: keyword arguments cost a tenth more per row)
            append(Record(source, str(key), when, None, None,
                          subject if subject is None or subject.__class__ is str else str(subject), category))
        return out

    # -- naming rows by key, exactly -------------------------------------------------------------
    def keys_equal(self, keys: Sequence[Any]) -> ColumnElement[bool]:
        """``key IN (...)`` by the index, plus an exact text match where collations are loose."""
        clause: ColumnElement[bool] = self.key.in_(keys)
        if self.info.key_type is str:
            clause = sa.and_(clause, self.flavor.probe(self.key).in_([self.flavor.probe_value(k) for k in keys]))
        return clause

    # -- the guard: the row still holds what the scan saw -------------------------------------------
    def unchanged(self, records: Sequence[tuple[Any, Sequence[Record]]]) -> ColumnElement[bool]:
        """Rows among *records* (key value, records of that key) that still hold what their scan saw.

        For each record: the same key, the same created value and the same subject as its stamp
        (NULL-safe, compared exactly), the same version where the source declares one, still
        inside the ``where:`` filter, and not anonymized since. A record without a stamp of ours
        matches nothing. Written as row-value ``IN`` lists (one per pattern of NULLs), whose
        compiled form SQLAlchemy caches: an ``OR`` of one condition per record cost a millisecond a row
        to build and compile.
        """
        groups: dict[tuple[bool, bool], list[tuple[Any, ...]]] = {}
        exact, text_key = self.flavor.exact_value, self.info.key_type is str
        for value, group in records:
            for record in group:
                seen = decode(record.stamp, versioned=self.versioned)
                if seen is None:
                    continue
                row = [exact(value) if text_key else value, seen.created]
                if seen.subject is not None:
                    row.append(exact(seen.subject))
                if seen.version is not None:
                    row.append(exact(str(seen.version)) if self.info.version_is_text else seen.version)
                groups.setdefault((seen.subject is None, seen.version is None), []).append(tuple(row))
        if not groups:
            return sa.false()
        clauses = [self._seen_in(no_subject, no_version, rows) for (no_subject, no_version), rows in groups.items()]
        return sa.and_(self.keys_equal([value for value, _ in records]), self.scope(), sa.or_(*clauses))

    def _seen_in(self, no_subject: bool, no_version: bool, rows: list[tuple[Any, ...]]) -> ColumnElement[bool]:
        """``(key, created[, subject][, version]) IN (rows)``, with ``IS NULL`` for the parts rows lack."""
        info, flavor = self.info, self.flavor
        columns: list[ColumnElement[Any]] = [flavor.probe(self.key) if info.key_type is str else self.key,
                                             flavor.created(info.created)]
        nulls: list[ColumnElement[bool]] = []
        if no_subject:
            nulls.append(info.subject.is_(None))
        else:
            columns.append(flavor.probe(info.subject))
        if info.version is not None:
            if no_version:
                nulls.append(info.version.is_(None))
            else:
                columns.append(flavor.probe(info.version) if info.version_is_text else info.version)
        return sa.and_(sa.tuple_(*columns).in_(rows), *nulls)

    def present(self, conn: sa.Connection, keys: Sequence[Any], *, live: bool) -> set[str]:
        """The locations among *keys* that have a row (a live one when *live*), in *conn*'s transaction."""
        found: set[str] = set()
        for part in chunks(keys, IN_CHUNK):
            where = sa.and_(self.keys_equal(part), self.live()) if live else self.keys_equal(part)
            found.update(str(k) for k in conn.execute(self.select(self.key).where(where)).scalars())
        return found

    # -- deleting ---------------------------------------------------------------------------------
    def delete_where(self, conn: sa.Connection, where: ColumnElement[bool]) -> list[Row]:
        """Delete the rows matching *where*; return each deleted row."""
        if self.returning:
            # all(): one fetch for the batch; iterating the result fetched row by row.
            return conn.execute(self.delete().where(where).returning(*self.columns())).all()
        rows = self._select_for_update(conn, where)
        for part in chunks([r[0] for r in rows], IN_CHUNK):
            conn.execute(self.delete().where(self.keys_equal(part)))
        return rows

    def _select_for_update(self, conn: sa.Connection, where: ColumnElement[bool],
                           extra: Iterable[ColumnElement[Any]] = ()) -> list[Any]:
        """The Row columns (and *extra*) of matching rows, locked until the transaction ends."""
        query = self.select(*self.columns(), *extra).where(where)
        if self.flavor.for_update:
            query = query.with_for_update()
        return conn.execute(query).all()

    # -- anonymizing ------------------------------------------------------------------------------
    def anonymize_where(self, conn: sa.Connection, where: ColumnElement[bool], key: bytes | None) -> list[Row]:
        """Anonymize the rows matching *where* that are not anonymized yet; return each."""
        hashed = self.anonymizer.hashed
        selected = self._select_for_update(conn, sa.and_(where, sa.not_(self.anonymizer.done())), extra=hashed)
        rows = [r[:3] for r in selected] if hashed else selected
        fixed = self.anonymizer.fixed_values()
        if not hashed:
            for part in chunks([r[0] for r in rows], IN_CHUNK):
                conn.execute(self.update().where(self.keys_equal(part)).values(fixed))
            return rows
        assert key is not None
        key_param = _free_name("retention_key", self.table)
        names = [_free_name(f"retention_hash_{i}", self.table) for i in range(len(hashed))]
        statement = (self.update().where(self.key == sa.bindparam(key_param))
                     .values({**fixed, **{c.key: sa.bindparam(n) for c, n in zip(hashed, names, strict=True)}}))
        params = [{key_param: r[0], **{n: self.anonymizer.hash_value(key, value)
                                       for n, value in zip(names, r[3:], strict=True)}}
                  for r in selected]
        for part in chunks(params, IN_CHUNK):
            conn.execute(statement, list(part))
        return rows


def _free_name(base: str, table: sa.Table) -> str:
    """A bind-parameter name no column of *table* uses (SQLAlchemy reserves column names)."""
    name = base
    while name in table.c:
        name += "_"
    return name
