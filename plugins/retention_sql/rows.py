"""The statements both paths share: which rows count, and deleting or anonymizing a set of them.

The per-record path (``delete(records)``) and the set-based path (``push_down``) differ only
in the ``WHERE`` they pass here; what "a usable row" is, how a row becomes a
:class:`~retention_core.Record`, and how deleted keys are reported is defined once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from retention_core import BackendError, Record

from .anonymizer import Anonymizer
from .dialects import Flavor
from .schema import TableInfo

#: Most keys bound into one ``IN (...)``: well under every driver's parameter limit.
IN_CHUNK = 1000


#: What is reported for an affected row: (key, subject text, raw created value), as the
#: driver returned it (the first three of :meth:`TableOps.columns`). Not an object per row:
#: on a push-down batch that construction cost as much as reading the row.
Row = Sequence[Any]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class TableOps:
    """Statements on one reflected table, for one dialect."""

    def __init__(self, info: TableInfo, flavor: Flavor, anonymizer: Anonymizer, returning: bool) -> None:
        self.info = info
        self.flavor = flavor
        self.anonymizer = anonymizer
        self.returning = returning
        self.table = info.table
        self.key = info.key

    # -- which rows exist for us ---------------------------------------------------------------
    def valid(self) -> ColumnElement[bool]:
        """Rows with a key and a usable created value; anonymized rows are done with."""
        parts = [self.key.is_not(None), self.flavor.created_valid(self.info.created, self.info.clock.naive)]
        if self.anonymizer.configured:
            parts.append(sa.not_(self.anonymizer.done()))
        return sa.and_(*parts)

    def columns(self) -> list[ColumnElement[Any]]:
        """key, subject as text, created as read: the columns every Row is built from."""
        return [self.key, self.flavor.text(self.info.subject).label("subject"),
                self.flavor.created(self.info.created).label("created")]

    def scan_query(self) -> sa.Select[Any]:
        return sa.select(*self.columns()).where(self.valid())

    def record(self, source: str, category: str | None, row: Row) -> Record:
        return self.records(source, category, (row,))[0]

    def records(self, source: str, category: str | None, rows: Iterable[Row]) -> list[Record]:
        """One :class:`Record` per row, in order.

        Every row a scan or a push-down batch reads passes here, so the loop keeps its
        lookups in locals and UTC values skip the time-zone conversion (see ``Clock.to_utc``).
        """
        to_utc, read = self.info.clock.to_utc, self.flavor.read_created
        out: list[Record] = []
        append = out.append
        for row in rows:
            key, subject, created = row[0], row[1], row[2]
            try:
                when = to_utc(read(created))
            except (ValueError, OverflowError) as exc:
                raise BackendError(f"table {self.table.name!r}, key {key!r}: cannot read created value "
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

    # -- deleting ---------------------------------------------------------------------------------
    def delete_where(self, conn: sa.Connection, where: ColumnElement[bool]) -> list[Row]:
        """Delete the rows matching *where*; return each deleted row."""
        if self.returning:
            # all(): one fetch for the batch; iterating the result fetched row by row.
            return conn.execute(sa.delete(self.table).where(where).returning(*self.columns())).all()
        rows = self._select_for_update(conn, where)
        for part in chunks([r[0] for r in rows], IN_CHUNK):
            conn.execute(sa.delete(self.table).where(self.keys_equal(part)))
        return rows

    def _select_for_update(self, conn: sa.Connection, where: ColumnElement[bool],
                           extra: Iterable[ColumnElement[Any]] = ()) -> list[Any]:
        """The Row columns (and *extra*) of matching rows, locked until the transaction ends."""
        query = sa.select(*self.columns(), *extra).where(where)
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
                conn.execute(sa.update(self.table).where(self.keys_equal(part)).values(fixed))
            return rows
        assert key is not None
        key_param = _free_name("retention_key", self.table)
        names = [_free_name(f"retention_hash_{i}", self.table) for i in range(len(hashed))]
        statement = (sa.update(self.table).where(self.key == sa.bindparam(key_param))
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
