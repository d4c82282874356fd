"""The built-in ``csv`` subject source: who owns data, their controller, service end, minor flag."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from pathlib import Path

from .errors import ConfigError
from .model import Subject
from .options import Options

COLUMNS = ("subject_id", "controller", "service_ended_at", "minor")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}


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
    return value.astimezone(timezone.utc)


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
    except csv.Error as exc:
        raise ConfigError(f"not a readable CSV file: {exc}", file=str(path)) from None


def _read(path: Path) -> list[Subject]:
    subjects = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("subject_id",) if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"missing column {missing[0]!r} (columns: {', '.join(COLUMNS)})", file=str(path))
        unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
        if unknown:
            raise ConfigError(f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})", file=str(path))
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            where = f"line {line}"
            sid = (row.get("subject_id") or "").strip()
            if not sid:
                raise ConfigError("subject_id is empty", file=str(path), key=where)
            if sid in seen:
                raise ConfigError(f"subject {sid!r} appears twice", file=str(path), key=where)
            seen.add(sid)
            ended_raw = (row.get("service_ended_at") or "").strip()
            try:
                ended = parse_instant(ended_raw) if ended_raw else None
            except ValueError:
                raise ConfigError(f"service_ended_at: expected an ISO date or empty, found {ended_raw!r}",
                                  file=str(path), key=where) from None
            minor_raw = (row.get("minor") or "").strip().lower()
            if minor_raw not in _TRUE | _FALSE:
                raise ConfigError(f"minor: expected true or false, found {minor_raw!r}",
                                  file=str(path), key=where)
            subjects.append(Subject(id=sid, controller=(row.get("controller") or "").strip() or None,
                                    service_ended_at=ended, minor=minor_raw in _TRUE))
    return subjects
