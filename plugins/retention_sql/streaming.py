"""Streamed push-down batches: a batch's deleted rows go to an evidence file as bytes.

When the core hands a push-down an evidence directory (the source was surveyed, no
``--report``), each batch is one ``DELETE … WHERE <range, guard, hold exclusions, cutoffs>
RETURNING <location, subject>`` whose rows are written to a per-batch file in ``COPY`` text
format (:mod:`retention_core.audit`) instead of becoming one Python object each:

* PostgreSQL: ``COPY (DELETE … RETURNING …) TO STDOUT`` through psycopg's ``cursor.copy()``
  on the transaction's own connection: the server formats the rows, Python only copies blocks.
* MariaDB and SQLite: ``DELETE … RETURNING`` read unbuffered (pymysql's ``SSCursor`` on
  MariaDB), each row encoded once.

The file is fsynced (and its directory) before the batch is yielded, so it is durable before
the core journals the intent naming it; the transaction commits when the core resumes the
generator, as for a list of outcomes. Only keys whose text the database gives exactly as
Python's ``str()`` of the driver's value (integers, text) are streamed: the location in the
file must be the location the per-record path journals.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from retention_core.audit import EvidenceWriter, copy_text_row
from retention_core.backend import StreamedBatch

from .rows import TableOps

#: Rows fetched per round trip from an unbuffered cursor.
FETCH = 10_000


class Streamer(Protocol):
    def delete(self, conn: sa.Connection, where: ColumnElement[bool], path: Path) -> StreamedBatch: ...


def streamer_for(ops: TableOps) -> Streamer | None:
    """How this table's batches stream, or None (the per-record list path)."""
    if ops.info.key_type not in (int, str):
        return None
    if ops.flavor.name == "postgresql":
        return CopyStreamer(ops)
    if ops.returning and ops.flavor.name in ("mysql", "sqlite"):
        return ReturningStreamer(ops)
    return None


def evidence_columns(ops: TableOps) -> list[ColumnElement[Any]]:
    """location (the key as exact text), subject as text: :data:`retention_core.audit.STREAMED_FIELDS`."""
    return [ops.flavor.text(ops.key).label("location"), ops.flavor.text(ops.info.subject).label("subject")]


def _fill(path: Path, fill: Any) -> StreamedBatch:
    """Run *fill(writer)*, make the file durable; on any failure close it and remove it (no
    line names it yet: the batch rolls back)."""
    writer = EvidenceWriter(path)
    try:
        fill(writer)
        rows, digest = writer.finish()
    except BaseException:
        writer.abandon()
        path.unlink(missing_ok=True)
        raise
    return StreamedBatch(path, rows, digest)


class CopyStreamer:
    """PostgreSQL: ``COPY (DELETE … RETURNING …) TO STDOUT`` into the file."""

    def __init__(self, ops: TableOps) -> None:
        self.ops = ops
        self.columns = evidence_columns(ops)

    def delete(self, conn: sa.Connection, where: ColumnElement[bool], path: Path) -> StreamedBatch:
        statement = self.ops.delete().where(where).returning(*self.columns)
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        sql = f"COPY ({compiled.string}) TO STDOUT"
        params = compiled.construct_params()
        raw: Any = conn.connection.dbapi_connection  # the transaction's own connection

        def fill(writer: EvidenceWriter) -> None:
            # psycopg binds a COPY's parameters client-side (COPY takes none), so the plan is
            # made for these values: never a generic plan scanning a whole index per batch.
            try:
                with raw.cursor() as cursor, cursor.copy(sql, params) as copy:
                    for block in copy:
                        writer.write(block)
            except Exception as exc:  # psycopg's own errors: give the walk the kind it handles
                if type(exc).__module__.startswith("psycopg"):
                    raise DBAPIError.instance(sql, params, exc, type(exc)) from None
                raise

        return _fill(path, fill)


class ReturningStreamer:
    """MariaDB, SQLite: ``DELETE … RETURNING`` read unbuffered, each row encoded into the file."""

    def __init__(self, ops: TableOps) -> None:
        self.ops = ops
        self.columns = evidence_columns(ops)

    def delete(self, conn: sa.Connection, where: ColumnElement[bool], path: Path) -> StreamedBatch:
        statement = self.ops.delete().where(where).returning(*self.columns)

        def fill(writer: EvidenceWriter) -> None:
            result = conn.execution_options(stream_results=True, yield_per=FETCH).execute(statement)
            for part in result.partitions(FETCH):
                writer.write(encode_rows(part))

        return _fill(path, fill)


#: Characters COPY text format escapes: a part without any (and without NULL) is written as is.
_SPECIAL = ("\\", "\t", "\n", "\r", "\b", "\f", "\v")


def encode_rows(part: Sequence[Any]) -> bytes:
    """(location, subject) rows in ``COPY`` text format. Most parts hold only plain text: then
    one join (checked at C speed for NULLs, non-text values and characters needing escapes);
    otherwise row by row through :func:`~retention_core.audit.copy_text_row`."""
    try:
        flat = "\x00".join(itertools.chain.from_iterable(part))  # TypeError: a NULL, bytes or a number
    except TypeError:
        flat = None
    if flat is not None and not any(c in flat for c in _SPECIAL):
        return "".join([f"{key}\t{subject}\n" for key, subject in part]).encode("utf-8")
    return b"".join([copy_text_row(_texts(row)) for row in part])


def _texts(row: Any) -> tuple[str | None, str | None]:
    """A row's values as text (a driver may hand back bytes for a binary-collated CAST)."""
    key, subject = row[0], row[1]
    if key is not None and key.__class__ is not str:
        key = key.decode("utf-8") if isinstance(key, (bytes, bytearray)) else str(key)
    if subject is not None and subject.__class__ is not str:
        subject = subject.decode("utf-8") if isinstance(subject, (bytes, bytearray)) else str(subject)
    return key, subject
