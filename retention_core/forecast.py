"""What becomes due when: records and bytes per week and category, from decisions.

Shared by ``retention plan`` and the HTML report's forecast chart. Weeks are counted from
the evaluation instant (week 0 is the seven days after ``now``), so "the next 26 weeks" is
exactly 26 buckets, whatever weekday the run falls on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .model import Action, Decision, Record

WEEK = timedelta(days=7)
UNKNOWN = "(unknown)"
_TICK = timedelta(microseconds=1)


@dataclass
class Volume:
    """How many records, and how many bytes (records of unknown size count 0 bytes)."""

    records: int = 0
    bytes: int = 0
    unsized: int = 0

    def add(self, record: Record) -> None:
        self.records += 1
        if record.size is None:
            self.unsized += 1
        else:
            self.bytes += record.size


@dataclass(frozen=True)
class WeekRow:
    """One row of the forecast: a week, a category and what becomes due in it."""

    week: int
    start: datetime
    end: datetime
    category: str
    volume: Volume


@dataclass
class Forecast:
    """Tally of decisions by when they make records due, from ``now`` up to ``until``.

    Records already due at ``now`` (delete/anonymize) are ``due_now``; kept records with a
    date inside the window go to their week; later dates to ``later``; kept records whose
    clock has not started (service still active) to ``undated``; holds and skips are counted
    apart, because nothing about them is due until a person acts.
    """

    now: datetime
    until: datetime
    due_now: dict[str, Volume] = field(default_factory=dict)
    weekly: dict[tuple[int, str], Volume] = field(default_factory=dict)
    later: Volume = field(default_factory=Volume)
    undated: Volume = field(default_factory=Volume)
    held: Volume = field(default_factory=Volume)
    skipped: Volume = field(default_factory=Volume)

    @classmethod
    def for_weeks(cls, now: datetime, weeks: int) -> Forecast:
        return cls(now=now, until=now + weeks * WEEK)

    @property
    def weeks(self) -> int:
        """Number of week buckets the window spans (the last may be partial)."""
        span = self.until - self.now
        return max(0, -(-span // WEEK))

    def add(self, record: Record, decision: Decision) -> None:
        category = record.category or UNKNOWN
        action = decision.action
        if action in (Action.DELETE, Action.ANONYMIZE):
            self.due_now.setdefault(category, Volume()).add(record)
        elif action is Action.HOLD:
            self.held.add(record)
        elif action is Action.SKIP:
            self.skipped.add(record)
        elif decision.due is None:
            self.undated.add(record)
        elif decision.due <= self.now:  # only if the caller mixes clocks; it is due, not future
            self.due_now.setdefault(category, Volume()).add(record)
        elif decision.due > self.until:
            self.later.add(record)
        else:
            # Buckets are (start, end]: a record due exactly at a week's end belongs to it.
            week = (decision.due - self.now - _TICK) // WEEK
            self.weekly.setdefault((week, category), Volume()).add(record)

    def add_all(self, decided: Iterable[tuple[Record, Decision]]) -> Forecast:
        for record, decision in decided:
            self.add(record, decision)
        return self

    def week_start(self, week: int) -> datetime:
        return self.now + week * WEEK

    def rows(self) -> Iterator[WeekRow]:
        """Non-empty (week, category) cells in week order, then category name order."""
        for (week, category), volume in sorted(self.weekly.items()):
            yield WeekRow(week, self.week_start(week), min(self.week_start(week + 1), self.until), category,
                          volume)

    def per_week(self) -> list[Volume]:
        """Totals per week over every category, one entry per week bucket (empty weeks too)."""
        totals = [Volume() for _ in range(self.weeks)]
        for (week, _), volume in self.weekly.items():
            total = totals[week]
            total.records += volume.records
            total.bytes += volume.bytes
            total.unsized += volume.unsized
        return totals

    def categories(self) -> list[str]:
        return sorted({c for _, c in self.weekly} | set(self.due_now))

    def total_due_now(self) -> Volume:
        return _sum(self.due_now.values())

    def total_in_window(self) -> Volume:
        return _sum(self.weekly.values())


def _sum(volumes: Iterable[Volume]) -> Volume:
    out = Volume()
    for v in volumes:
        out.records += v.records
        out.bytes += v.bytes
        out.unsized += v.unsized
    return out


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB': sizes a person can compare at a glance."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


__all__ = ["Forecast", "UNKNOWN", "Volume", "WEEK", "WeekRow", "human_bytes"]
