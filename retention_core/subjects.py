"""The built-in ``csv`` subject source: who owns data, their controller, service end, minor flag."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model import Subject
from .options import Options

COLUMNS = ("subject_id", "controller", "service_ended_at", "minor")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}

#: The years a person may name on the command line (``--as-of``, ``--received``): any real use
#: fits, and they stay far enough from datetime's limits (years 1 and 9999) that adding a
#: retention period, the erasure deadline or a plan window to them cannot overflow.
EARLIEST_YEAR, LATEST_YEAR = 1970, 9000


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


def csv_subjects(options: Options) -> Iterator[Subject]:
    """Read subjects from ``path`` (relative to the config file) eagerly validated."""
    path = options.path("path")
    options.done()
    if not path.is_file():
        raise options.error("path", f"expected an existing CSV file, found {str(path)!r}")
    try:
        return iter(_read(path))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                          file=str(path)) from None


def _read(path: Path) -> list[Subject]:
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
                subject = _subject(row, fieldnames, f"line {start}", path)
                if subject.id in seen:
                    raise ConfigError(f"subject {subject.id!r} appears twice", file=str(path), key=f"line {start}")
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


def _subject(row: dict[str | None, str | Any], fieldnames: list[str], where: str, path: Path) -> Subject:
    """One row as a Subject, or a ConfigError naming the line."""
    if None in row:  # DictReader's restkey: fields past the header's
        raise ConfigError(f"expected {len(fieldnames)} fields as in the header, found "
                          f"{len(fieldnames) + len(row[None])}", file=str(path), key=where)
    sid = (row.get("subject_id") or "").strip()
    if not sid:
        raise ConfigError("subject_id is empty", file=str(path), key=where)
    for column in ("subject_id", "controller"):  # echoed in listings and summaries: no forged lines
        if not (row.get(column) or "").isprintable():
            raise ConfigError(f"{column}: expected printable text, found {row[column]!r}", file=str(path), key=where)
    ended_raw = (row.get("service_ended_at") or "").strip()
    try:
        ended = parse_instant(ended_raw) if ended_raw else None
    except ValueError:
        raise ConfigError(f"service_ended_at: expected an ISO date or empty, found {ended_raw!r}",
                          file=str(path), key=where) from None
    minor_raw = (row.get("minor") or "").strip().lower()
    if minor_raw not in _TRUE | _FALSE:
        raise ConfigError(f"minor: expected true or false, found {minor_raw!r}", file=str(path), key=where)
    return Subject(id=sid, controller=(row.get("controller") or "").strip() or None,
                   service_ended_at=ended, minor=minor_raw in _TRUE)
