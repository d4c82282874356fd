"""A run's decisions, kept on disk so memory stays flat however many records a run sees.

The scheduler writes every decided record here during the scan, reads the due ones back in
batches to delete them, and the report writers stream the items from here at the end.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .model import Action, Decision, Outcome, Record, Status
from .text import exact_hex, from_entry, printable

_SCHEMA = """
CREATE TABLE items (
  idx INTEGER PRIMARY KEY,
  source TEXT NOT NULL, location TEXT NOT NULL, location_hex TEXT, version TEXT,
  created INTEGER NOT NULL, size INTEGER, subject TEXT, subject_hex TEXT, category TEXT, stamp TEXT,
  action TEXT NOT NULL, reason TEXT NOT NULL, holds TEXT NOT NULL, due INTEGER,
  outcome TEXT, error TEXT
);
"""


# Instants are stored as exact integer microseconds since the epoch: isoformat() per record
# was the largest single cost of spooling, and floats lose microseconds far in the future.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

#: Rows buffered before one executemany; small enough to be no memory at all.
_BUFFERED = 2000


@dataclass(frozen=True)
class Item:
    """One decided record as the report shows it."""

    idx: int
    record: Record
    decision: Decision
    outcome: str | None
    error: str | None


class Spool:
    """An SQLite file in a private temporary directory, removed on close."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="retention-run-")
        self._db = sqlite3.connect(Path(self._dir.name) / "spool.db", isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        self._db.execute("BEGIN")
        self._rows: list[tuple[object, ...]] = []
        #: Whether the buffered rows are of the short shape (see :meth:`add`).
        self._short = False
        self._uncommitted = 0
        self._indexed = False

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def add(self, record: Record, decision: Decision) -> None:
        # Called once per scanned record: rows are buffered and inserted with executemany.
        holds = decision.holds
        location, subject, version = record.location, record.subject, record.version
        # Names that are not UTF-8 use the audit trail's encoding (text.exact_hex): the hex
        # column, not a prefix in the text, so no key can be mistaken for an escape code.
        location_hex = None if location.isascii() else exact_hex(location)
        due = (decision.due - _EPOCH) // _US if decision.due else None
        if location_hex is None and subject is None and version is None:
            # The common shape (an fs file, an unversioned key without subject): the four
            # columns that are NULL are left to their default. Binding them cost as much as
            # the other ten together (executemany of 50,000 rows: 0.10 s → 0.05 s).
            row: tuple[object, ...] = (
                record.source, location, (record.created - _EPOCH) // _US, record.size, record.category, record.stamp,
                decision.action, decision.reason, json.dumps(list(holds)) if holds else "[]", due)
            if not self._short:
                self._flush()
                self._short = True
        else:
            subject_hex = None if subject is None or subject.isascii() else exact_hex(subject)
            row = (
                record.source, printable(location) if location_hex else location, location_hex, version,
                (record.created - _EPOCH) // _US, record.size,
                printable(subject) if subject is not None and subject_hex else subject, subject_hex,
                record.category, record.stamp,
                decision.action, decision.reason, json.dumps(list(holds)) if holds else "[]", due)
            if self._short:
                self._flush()
                self._short = False
        self._rows.append(row)
        if len(self._rows) >= _BUFFERED:
            self._uncommitted += len(self._rows)
            self._flush()
            if self._uncommitted >= 50_000:
                self.commit()

    def _flush(self) -> None:
        """Insert the buffered rows (all of one shape, in the order they were added); every
        reader calls this first, so reads see every add."""
        if self._rows:
            if self._short:
                self._db.executemany(
                    "INSERT INTO items (source, location, created, size, category, stamp, action, reason, holds, due)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)", self._rows)
            else:
                self._db.executemany(
                    "INSERT INTO items (source, location, location_hex, version, created, size, subject, subject_hex,"
                    " category, stamp, action, reason, holds, due) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", self._rows)
            self._rows = []

    def commit(self) -> None:
        self._flush()
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._uncommitted = 0

    def _index(self) -> None:
        if not self._indexed:
            self.commit()
            self._db.execute("CREATE INDEX IF NOT EXISTS by_key ON items (source, location, location_hex, version)")
            self._indexed = True

    def due(self, source: str, batch_size: int) -> Iterator[list[Item]]:
        """The source's delete/anonymize items in batches, walking the primary key."""
        self.commit()
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT * FROM items WHERE source = ? AND action IN ('delete', 'anonymize') AND idx > ?"
                " ORDER BY idx LIMIT ?", (source, last, batch_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [_item(row) for row in rows]

    def redecide(self, idx: int, decision: Decision) -> None:
        self._flush()
        self._db.execute("UPDATE items SET action = ?, reason = ?, holds = ? WHERE idx = ?",
                         (decision.action.value, decision.reason, json.dumps(list(decision.holds)), idx))

    def set_outcomes(self, outcomes: Iterable[tuple[int, Outcome]]) -> None:
        """One batch's outcomes in one statement."""
        self._flush()
        self._db.executemany("UPDATE items SET outcome = ?, error = ? WHERE idx = ?",
                             [(o.status, o.error, idx) for idx, o in outcomes])

    def record_pushed_batch(self, outcomes: Sequence[Outcome], decision: Decision) -> None:
        """A push-down batch's outcomes in one UPDATE statement for the batch; records the scan
        did not see — rare — are found and added afterwards."""
        self._index()
        before = self._db.total_changes
        self._db.executemany(
            # A record the scan already found due keeps its specific reason ("erasure request R-1");
            # SQLite evaluates every SET expression on the row's old values.
            "UPDATE items SET outcome = ?, error = ?,"
            " reason = CASE WHEN action IN ('delete', 'anonymize') THEN reason ELSE ? END, action = ?"
            " WHERE idx = (SELECT idx FROM items WHERE source = ? AND location = ? AND location_hex IS ?"
            " AND version IS ? LIMIT 1)",
            [(o.status, o.error, decision.reason, decision.action, o.record.source, *_key_text(o.record.location),
              o.record.version) for o in outcomes])
        if self._db.total_changes - before == len(outcomes):
            return
        for outcome in outcomes:
            r = outcome.record
            if not self.contains(r.source, r.location, r.version):
                self.add(r, decision)
                self._flush()
                self._db.execute("UPDATE items SET outcome = ?, error = ? WHERE idx = last_insert_rowid()",
                                 (outcome.status, outcome.error))

    def contains(self, source: str, location: str, version: str | None) -> bool:
        """Whether this run's scan saw the record (used to settle a crashed run's intents)."""
        self._index()
        return self._db.execute(
            "SELECT 1 FROM items WHERE source = ? AND location = ? AND location_hex IS ? AND version IS ?",
            (source, *_key_text(location), version)).fetchone() is not None

    def items(self, limit: int | None = None) -> Iterator[Item]:
        self.commit()
        query = "SELECT * FROM items ORDER BY idx" + (f" LIMIT {int(limit)}" if limit is not None else "")
        for row in self._db.execute(query):
            yield _item(row)

    def subject_status(self, subject: str) -> tuple[int, int, int]:
        """Records of *subject*: (still owed: to delete and not yet gone; held: under a hold or
        refused by storage; kept: decided keep or skip — an unknown category, a subject the
        subjects source no longer lists —, which an erasure request cannot be done with)."""
        self._flush()
        owed, held, kept = self._db.execute(
            "SELECT"
            " COALESCE(SUM(action IN ('delete','anonymize') AND (outcome IS NULL OR outcome IN ('failed', 'changed'))"
            "     AND outcome IS NOT 'refused'), 0),"
            " COALESCE(SUM(action = 'hold' OR outcome = 'refused'), 0),"
            " COALESCE(SUM(action IN ('keep', 'skip')), 0)"
            " FROM items WHERE subject = ? AND subject_hex IS ?", _key_text(subject)).fetchone()
        return int(owed), int(held), int(kept)


def _key_text(value: str) -> tuple[str, str | None]:
    """(text, hex) as stored: the exact text when it is UTF-8, else its printable form and its bytes."""
    raw = None if value.isascii() else exact_hex(value)
    return (printable(value) if raw else value), raw


_ACTIONS = {a.value: a for a in Action}


def _item(row: tuple) -> Item:  # type: ignore[type-arg]
    # Runs once per item read back (every record deleted): positional arguments, checks inlined.
    (idx, source, location, location_hex, version, created, size, subject, subject_hex, category, stamp,
     action, reason, holds, due, outcome, error) = row
    if location_hex is not None:
        location = from_entry(location, location_hex)
    if subject_hex is not None:
        subject = from_entry(subject, subject_hex)
    record = Record(source, location, _EPOCH + timedelta(0, 0, created), size, version, subject, category, stamp)
    decision = Decision(_ACTIONS[action], reason, tuple(json.loads(holds)) if holds != "[]" else (),
                        _EPOCH + timedelta(0, 0, due) if due is not None else None)
    return Item(idx, record, decision, outcome, error)


__all__ = ["Item", "Spool", "Status"]
