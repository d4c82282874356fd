"""Evidence lookup: what the audit trail says became of a location, a subject or a run.

The trail journals deletions one batch per line; "was this file deleted, when, by which
run" needs the per-record view (:func:`retention_core.audit.expand`), a filter, and the
intent that never got an outcome (a run that died mid-batch) told apart from an outcome.
``retention audit find`` and ``retention explain`` (for a record storage no longer holds)
both read the trail through :func:`find`.

Locations are given as people have them — an absolute path, an ``s3://bucket/key`` URI — or
as a source lists them; :func:`locate` turns the first two into (source, location) pairs
using each source's :meth:`~retention_core.backend.Backend.territory`, so only the sources
that can hold the location are asked.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .audit import expand, walk
from .backend import Backend
from .errors import ConfigError
from .model import Source, TrailOutcome
from .report import csv_cell
from .text import from_entry, printable

#: Outcomes after which storage no longer holds the record as it was.
GONE = frozenset({TrailOutcome.DELETED.value, TrailOutcome.ALREADY_GONE.value})
#: What a finding whose intent never got an outcome line shows as its outcome.
NO_OUTCOME = "intent-only"

FIELDS = ("time", "run_id", "source", "location", "version", "subject", "category", "action", "outcome",
          "error", "reason", "batch", "audit_seq", "trail")


@dataclass(frozen=True)
class Query:
    """What to look for; every given criterion must match.

    *location* matches exactly, or as a prefix when it ends with ``*``; *places* (from
    :func:`locate`) are exact (source, location) pairs, any of which may match.
    """

    location: str | None = None
    places: tuple[tuple[str, str], ...] = ()
    subject: str | None = None
    run: str | None = None
    source: str | None = None
    since: datetime | None = None

    def wants_line(self, entry: dict[str, Any]) -> bool:
        """Whether a batch line may hold a match, judged on the keys the line has for all its rows
        (so that most lines are skipped without expanding them)."""
        if entry.get("event") not in ("intent", "outcome"):
            return False
        if self.run is not None and entry.get("run_id") != self.run:
            return False
        if self.source is not None and entry.get("source") != self.source:
            return False
        if self.places and entry.get("source") not in {s for s, _ in self.places}:
            return False
        if self.since is None:
            return True
        when = _when(entry.get("time"))
        return when is not None and when >= self.since

    def wants(self, row: dict[str, Any]) -> bool:
        """Whether one record of a batch line matches."""
        if self.subject is not None and row.get("subject") != self.subject:
            return False
        names = {row.get("location"), from_entry(str(row.get("location")), row.get("location_hex"))}
        if self.places and not any((row.get("source"), loc) in self.places for loc in names):
            return False
        if self.location is None:
            return True
        if self.location.endswith("*"):
            return any(str(n).startswith(self.location[:-1]) for n in names)
        return self.location in names


@dataclass(frozen=True)
class Finding:
    """One record's line in the trail: the outcome of a deletion, or an intent without one."""

    time: str
    run_id: str
    source: str
    location: str
    version: str | None
    subject: str | None
    category: str | None
    action: str | None
    outcome: str
    error: str | None
    reason: str | None
    batch: str | None
    audit_seq: int | None
    trail: str

    @property
    def gone(self) -> bool:
        return self.outcome in GONE

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def find(trails: Sequence[Path], query: Query) -> Iterator[Finding]:
    """Every record line of *trails* (in order) that *query* matches.

    Outcome lines are yielded as read; an intent whose outcome line never came (a run that
    died mid-batch, not yet settled) is yielded after its trail, with outcome ``intent-only``.
    """
    for trail in trails:
        if not trail.exists():
            raise ConfigError("the audit trail does not exist (no enforcing run has written it yet)",
                              file=str(trail))
        waiting: dict[tuple[Any, ...], Finding] = {}
        for line in walk(trail):  # through segments; expand() reads evidence files through
            entry = line.entry
            if not query.wants_line(entry):
                continue
            for row in expand(entry, line.base):
                if not query.wants(row):
                    continue
                found = _finding(row, trail)
                key = (found.run_id, found.source, found.location, found.version)
                if row.get("event") == "intent":
                    waiting[key] = found
                else:
                    waiting.pop(key, None)
                    yield found
        yield from waiting.values()


def _finding(row: dict[str, Any], trail: Path) -> Finding:
    location = printable(from_entry(str(row.get("location")), row.get("location_hex")))
    outcome = str(row.get("outcome")) if row.get("event") == "outcome" else NO_OUTCOME
    return Finding(time=str(row.get("time")), run_id=str(row.get("run_id")), source=str(row.get("source")),
                   location=location, version=row.get("version"), subject=row.get("subject"),
                   category=row.get("category"), action=row.get("action"), outcome=outcome,
                   error=row.get("error"), reason=row.get("reason"), batch=row.get("batch"),
                   audit_seq=row.get("seq"), trail=str(trail))


def _when(value: Any) -> datetime | None:
    """A line's time (the writer's ISO timestamp, in UTC), or None if it has none that reads."""
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


# -- where a location lives ---------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """A source that can hold the location, and the location as that source lists it.

    ``present`` is False when the source can tell cheaply that nothing is there now (fs: no
    such path under its root), so it need not be listed; None when only a scan can tell.
    """

    source: Source
    location: str
    present: bool | None = None


def locate(location: str, sources: Iterable[Source], backend: Callable[[Source], Backend], *,
           key: str = "LOCATION") -> list[Place]:
    """The sources that can hold *location*, each with the location as it lists it.

    An absolute path or an ``s3://bucket/key`` URI belongs to the sources whose backend maps it
    to one of their locations (:meth:`~retention_core.backend.Backend.address`: an fs root that
    contains the path, a bucket and prefix that contain the key). Any other text is a location
    as the sources list it: every source may hold it. An address no source can hold is a
    :class:`ConfigError` naming where each source lists.
    """
    chosen = list(sources)
    if not (location.startswith("s3://") or os.path.isabs(location)):
        return [Place(s, location, backend(s).present(s, location)) for s in chosen]
    found = []
    for source in chosen:
        store = backend(source)
        if (listed := store.address(source, location)) is not None:
            found.append(Place(source, listed, store.present(source, listed)))
    if not found:
        known = ", ".join(f"{s.name}: {t.strip()}" for s in chosen if (t := backend(s).territory(s))) or "none can tell"
        raise ConfigError(f"no source can hold {printable(location)!r} (sources: {known})", key=key)
    return found


# -- output ---------------------------------------------------------------------------------------
def text_line(f: Finding) -> str:
    """One finding as a line: when, what became of it, where, whose, by which run."""
    version = f" (version {f.version})" if f.version else ""
    what = "intent journalled, no outcome yet" if f.outcome == NO_OUTCOME else f.outcome
    error = f": {printable(f.error)}" if f.error else ""
    batch = f", batch {f.batch}" if f.batch else ""
    return (f"{_short_time(f.time)}  {what}{error}  {f.source}:{f.location}{version}  "
            f"subject {f.subject or '-'}  run {f.run_id}{batch}, audit seq {f.audit_seq}")


def _short_time(value: str) -> str:
    try:
        return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return value


def write_csv(findings: Iterable[Finding], out: IO[str]) -> None:
    """Findings as CSV, every cell through :func:`~retention_core.report.csv_cell` (no formula runs
    when a location someone chose is opened in a spreadsheet)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for f in findings:
        data = f.as_json()
        writer.writerow([csv_cell(data[name]) for name in FIELDS])


__all__ = ["FIELDS", "GONE", "NO_OUTCOME", "Finding", "Place", "Query", "find", "locate", "text_line", "write_csv"]
