"""The built-in ``csv`` subject source: who owns data, their controller, service end, minor flag."""

from __future__ import annotations

import csv
import functools
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, timezone, tzinfo
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model import Subject
from .options import Options
from .sqlread import ReadFailed, Table, open_table, read_zone

COLUMNS = ("subject_id", "controller", "service_ended_at", "minor")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}

#: The years a person may name on the command line (``--as-of``, ``--received``): any real use
#: fits, and they stay far enough from datetime's limits (years 1 and 9999) that adding a
#: retention period, the erasure deadline or a plan window to them cannot overflow.
EARLIEST_YEAR, LATEST_YEAR = 1970, 9000

#: Subjects held in a dict; beyond this many they move to a temporary SQLite file (:class:`SubjectIndex`).
SPILL_AT = 50_000
#: Subjects looked up once spilled that stay in memory (a run meets a subject's records together).
CACHE_SIZE = 20_000


def parse_instant(text: str) -> datetime:
    """An ISO date or datetime as aware UTC; a bare date means that day's start in UTC.

    Naive datetimes are taken as UTC. Raises ValueError for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty date")
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=timezone.utc)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past datetime.max in UTC
        raise ValueError(f"{text!r} is out of range in UTC") from None


def parse_given_date(text: str) -> datetime:
    """A date a person gave (``--as-of``): :func:`parse_instant`, from 1970 to 9000.

    Raises ValueError (saying the range) for a date outside it.
    """
    value = parse_instant(text)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"expected a date from {EARLIEST_YEAR}-01-01 to {LATEST_YEAR}-12-31, found {text.strip()!r}")
    return value


class SubjectIndex(Mapping[str, Subject]):
    """Subjects by id, in memory up to :data:`SPILL_AT`, beyond that in a temporary SQLite file.

    A system of record can list millions of subjects; a dict of them all would make a run's
    memory grow with the customer base. Past the threshold every subject goes to an indexed file
    and lookups go through a small cache, so memory stays flat. A later duplicate id replaces an
    earlier one, as a dict would (the built-in sources refuse duplicates before this).
    """

    def __init__(self) -> None:
        self._dict: dict[str, Subject] | None = {}
        self._db: sqlite3.Connection | None = None
        self._count = 0
        self._cleanup: weakref.finalize[Any, SubjectIndex] | None = None
        self._cached = functools.lru_cache(maxsize=CACHE_SIZE)(self._lookup)

    @classmethod
    def build(cls, subjects: Iterable[Subject]) -> SubjectIndex:
        """Consume *subjects* (a stream) into an index."""
        index = cls()
        chunk: list[Subject] = []
        for subject in subjects:
            if index._dict is not None:
                index._dict[subject.id] = subject
                if len(index._dict) > SPILL_AT:
                    index._spill()
                continue
            chunk.append(subject)
            if len(chunk) >= 10_000:
                index._insert(chunk)
                chunk = []
        if chunk:
            index._insert(chunk)
        if index._db is not None:
            index._count = index._db.execute("SELECT count(*) FROM subjects").fetchone()[0]
        return index

    def _spill(self) -> None:
        """Move the subjects held so far into a new temporary SQLite file."""
        folder = tempfile.TemporaryDirectory(prefix="retention-subjects-")
        db = sqlite3.connect(Path(folder.name) / "subjects.db", check_same_thread=False)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE subjects (id TEXT PRIMARY KEY, controller TEXT, ended TEXT, minor INTEGER) "
                   "WITHOUT ROWID")
        self._db = db
        self._cleanup = weakref.finalize(self, _drop, db, folder)
        held, self._dict = self._dict or {}, None
        self._insert(list(held.values()))

    def _insert(self, chunk: list[Subject]) -> None:
        assert self._db is not None
        self._db.executemany("INSERT OR REPLACE INTO subjects VALUES (?, ?, ?, ?)", [
            (s.id, s.controller, s.service_ended_at.isoformat() if s.service_ended_at else None, int(s.minor))
            for s in chunk])
        self._db.commit()

    def _lookup(self, key: str) -> Subject | None:
        assert self._db is not None
        row = self._db.execute("SELECT * FROM subjects WHERE id = ?", (key,)).fetchone()
        return _row_subject(row) if row is not None else None

    def __getitem__(self, key: str) -> Subject:
        if self._dict is not None:
            return self._dict[key]
        found = self._cached(key) if isinstance(key, str) else None
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        if self._dict is not None:
            return key in self._dict
        return isinstance(key, str) and self._cached(key) is not None

    def __len__(self) -> int:
        return len(self._dict) if self._dict is not None else self._count

    def __iter__(self) -> Iterator[str]:
        if self._dict is not None:
            return iter(self._dict)
        assert self._db is not None
        return (row[0] for row in self._db.execute("SELECT id FROM subjects ORDER BY id"))

    def values(self) -> Any:
        """Every subject, streamed from the file once spilled (no lookup per id)."""
        if self._dict is not None:
            return self._dict.values()
        assert self._db is not None
        return (_row_subject(row) for row in self._db.execute("SELECT * FROM subjects ORDER BY id"))

    @property
    def spilled(self) -> bool:
        """Whether the subjects live in the temporary file (more than :data:`SPILL_AT`)."""
        return self._db is not None


def _row_subject(row: tuple[Any, ...]) -> Subject:
    return Subject(id=row[0], controller=row[1], service_ended_at=datetime.fromisoformat(row[2]) if row[2] else None,
                   minor=bool(row[3]))


def _drop(db: sqlite3.Connection, folder: tempfile.TemporaryDirectory[str]) -> None:
    db.close()
    folder.cleanup()


def csv_subjects(options: Options) -> Iterator[Subject]:
    """Read subjects from ``path`` (relative to the config file) eagerly validated.

    ``timezone`` declares the zone of datetimes written without an offset; without it such a
    datetime is an error (its hour would be a guess).
    """
    path = options.path("path")
    zone = read_zone(options)
    options.done()
    if not path.is_file():
        raise options.error("path", f"expected an existing CSV file, found {str(path)!r}")
    try:
        return iter(_read(path, zone))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                          file=str(path)) from None
    except OSError as exc:  # /proc files, a disk error: one line, not a traceback
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def sql_subjects(options: Options) -> Iterator[Subject]:
    """Subjects from a table or view of the system of record (a CRM's customers), streamed.

    Options: ``url`` (``${VAR}`` from the environment), ``table``, ``schema``, ``columns``
    (field → column; a field not mapped uses the column of its name if the table has one),
    ``timezone`` (of timestamps stored without a zone). The connection, the table and its
    columns, and duplicate ids (counted by the database) are checked now; rows are checked as
    they stream, each error naming the table and the row's id.
    """
    zone = read_zone(options)
    table = open_table(options, COLUMNS, required=("subject_id",))
    options.done()
    try:
        duplicate = table.first_duplicate("subject_id")
    except ReadFailed as exc:
        table.close()
        raise options.error("table", f"cannot read {table.label}: {exc}") from None
    if duplicate is not None:
        table.close()
        raise options.error("table", f"{table.label}: subject {str(duplicate[0])!r} appears {duplicate[1]} times "
                                     f"(column {table.columns['subject_id'].name})")
    return _stream_subjects(table, zone, options)


def _stream_subjects(table: Table, zone: tzinfo | None, options: Options) -> Iterator[Subject]:
    """The rows as Subjects; a bad value or a lost connection is a ConfigError naming the table."""
    names = {field: column.name for field, column in table.columns.items()}
    try:
        for n, row in enumerate(table.stream(), start=1):
            sid = row.get("subject_id")
            where = f"{table.label}, row {n}" + (f" ({names['subject_id']} {str(sid)!r})" if sid is not None else "")
            try:
                yield subject_from(row, zone, names)
            except ValueError as exc:
                raise options.error("table", f"{where}: {exc}") from None
    except ReadFailed as exc:
        raise options.error("table", f"cannot read {table.label}: {exc}") from None
    finally:
        table.close()


def subject_from(row: Mapping[str, Any], zone: tzinfo | None, names: Mapping[str, str] | None = None) -> Subject:
    """One row's values (text from a file, or native values from a database) as a Subject.

    The one validation every subjects source shares. Raises ValueError saying which field
    (and, when *names* maps it, which column) holds what.
    """
    def label(field: str) -> str:
        column = (names or {}).get(field, field)
        return field if column == field else f"{field} (column {column})"

    raw_id = row.get("subject_id")
    sid = str(raw_id).strip() if raw_id is not None else ""
    if not sid:
        raise ValueError(f"{label('subject_id')} is empty")
    controller = row.get("controller")
    controller = str(controller).strip() if controller is not None else ""
    for field, value in (("subject_id", sid), ("controller", controller)):  # echoed in listings: no forged lines
        if not value.isprintable():
            raise ValueError(f"{label(field)}: expected printable text, found {value!r}")
    return Subject(id=sid, controller=controller or None,
                   service_ended_at=instant_cell(row.get("service_ended_at"), zone, label("service_ended_at"),
                                                 "subjects"),
                   minor=_minor(row.get("minor"), label("minor")))


def instant_cell(value: Any, zone: tzinfo | None, label: str, owner: str) -> datetime | None:
    """A date or timestamp cell (CSV text or a database value) as aware UTC, or None when empty:
    a date is that day's start (in *zone*, else UTC); a time of day without an offset needs
    *zone*, declared with the ``timezone`` option of *owner* (``subjects``, ``hold source``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (date.fromisoformat(text) if len(text) == 10
                     else datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"{label}: expected an ISO date or datetime, or empty, found {text!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            if zone is None:
                raise ValueError(f"{label}: {value.isoformat(sep=' ')} has no time zone; declare the zone it is "
                                 f"written in with the {owner} option timezone (e.g. timezone: UTC)")
            value = value.replace(tzinfo=zone)
    elif isinstance(value, date):
        value = datetime.combine(value, time(), tzinfo=zone or timezone.utc)
    else:
        raise ValueError(f"{label}: expected a date or timestamp, found {type(value).__name__} {value!r}")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{label}: {value.isoformat()} is out of range in UTC") from None


def _minor(value: Any, label: str) -> bool:
    """The minor flag: booleans, 0/1, or true/false/yes/no/y/n text; empty or NULL is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(f"{label}: expected true or false, found {text!r}")
    return text in _TRUE


def _read(path: Path, zone: tzinfo | None) -> list[Subject]:
    """Every row as a Subject; a malformed file is an error naming its line, never a guess.

    ``strict`` makes an unclosed quote an error instead of swallowing the rest of the file
    into one field; a row with more fields than the header, or a header naming a column
    twice, would otherwise load with values silently dropped or shifted.
    """
    subjects = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, strict=True)
        start = 1  # the line the record being read starts on: where an unclosed quote opened
        try:
            fieldnames = _header(reader, path)
            seen: set[str] = set()
            start = reader.line_num + 1
            for row in reader:
                where = f"line {start}"
                if None in row:  # DictReader's restkey: fields past the header's
                    raise ConfigError(f"expected {len(fieldnames)} fields as in the header, found "
                                      f"{len(fieldnames) + len(row[None])}", file=str(path), key=where)
                try:
                    subject = subject_from(row, zone)
                except ValueError as exc:
                    raise ConfigError(str(exc), file=str(path), key=where) from None
                if subject.id in seen:
                    raise ConfigError(f"subject {subject.id!r} appears twice", file=str(path), key=where)
                seen.add(subject.id)
                subjects.append(subject)
                start = reader.line_num + 1
        except csv.Error as exc:
            hint = " (a quote opened and never closed)" if "end of data" in str(exc) else ""
            raise ConfigError(f"not a readable CSV file: {exc}{hint}", file=str(path), key=f"line {start}") from None
    return subjects


def _header(reader: csv.DictReader[str], path: Path) -> list[str]:
    """The header's column names, checked: known, unique, ``subject_id`` present."""
    fieldnames = list(reader.fieldnames or [])
    if "subject_id" not in fieldnames:
        raise ConfigError(f"missing column 'subject_id' (columns: {', '.join(COLUMNS)})", file=str(path))
    unknown = [c for c in fieldnames if c not in COLUMNS]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})", file=str(path))
    twice = [c for c in COLUMNS if fieldnames.count(c) > 1]
    if twice:
        raise ConfigError(f"column {twice[0]!r} appears twice in the header", file=str(path), key="line 1")
    return fieldnames
