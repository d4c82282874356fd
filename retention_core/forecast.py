"""What becomes due when: records and bytes per week and category, from decisions.

Shared by ``retention plan`` and the HTML report's forecast chart. Weeks are counted from
the evaluation instant (week 0 is the seven days after ``now``), so "the next 26 weeks" is
exactly 26 buckets, whatever weekday the run falls on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .engine import BEYOND_CALENDAR
from .model import Action, Decision, Record
from .report import csv_cell

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

    @property
    def number(self) -> int:
        """The week as people count it, in every output: week 1 is the seven days after ``now``."""
        return self.week + 1


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
            # No date: the clock has not started — or retention ends beyond the calendar (year
            # 9999), which is later, not undated.
            (self.later if decision.reason.endswith(BEYOND_CALENDAR) else self.undated).add(record)
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


# -- plan output: what ``retention plan`` prints -------------------------------------------------------
def plan_json(forecast: Forecast, within: str) -> dict[str, object]:
    def vol(v: Volume) -> dict[str, int]:
        return {"records": v.records, "bytes": v.bytes, "unsized": v.unsized}

    return {
        "as_of": forecast.now.isoformat(), "within": within, "until": forecast.until.isoformat(),
        "due_now": [{"category": c, **vol(v)} for c, v in sorted(forecast.due_now.items())],
        "weeks": [{"week": r.number, "start": r.start.date().isoformat(), "end": r.end.date().isoformat(),
                   "category": r.category, **vol(r.volume)} for r in forecast.rows()],
        "later": vol(forecast.later), "not_started": vol(forecast.undated), "held": vol(forecast.held),
        "skipped": vol(forecast.skipped),
    }


def plan_csv(forecast: Forecast) -> str:
    """One row per (bucket, category): ``due_now`` first, then each week with something due.

    Category names can come from a ``match`` group (storage chooses them): neutralised as in
    every CSV report.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["bucket", "start", "end", "category", "records", "bytes"])
    today = forecast.now.date().isoformat()
    for category, v in sorted(forecast.due_now.items()):
        writer.writerow(["due_now", today, today, csv_cell(category), v.records, v.bytes])
    for r in forecast.rows():
        writer.writerow([f"week {r.number}", r.start.date().isoformat(), r.end.date().isoformat(), csv_cell(r.category),
                         r.volume.records, r.volume.bytes])
    return out.getvalue()


def plan_text(forecast: Forecast, within: str) -> Iterator[str]:
    yield (f"retention plan as of {forecast.now:%Y-%m-%d %H:%M} UTC, within {within} "
           f"(until {forecast.until:%Y-%m-%d})")
    now = forecast.total_due_now()
    if now.records:
        parts = ", ".join(f"{c} {v.records:,}" for c, v in sorted(forecast.due_now.items()))
        yield f"  due now: {now.records:,} records ({size_text(now)}) — {parts}"
    else:
        yield "  due now: nothing"
    rows = list(forecast.rows())
    if rows:
        width = max(len(r.category) for r in rows)
        yield f"  {'week':>4}  {'from':10}  {'to':10}  {'category':{width}}  {'records':>9}  {'bytes':>12}"
        for r in rows:
            yield (f"  {r.number:>4}  {r.start:%Y-%m-%d}  {r.end:%Y-%m-%d}  {r.category:{width}}  "
                   f"{r.volume.records:>9,}  {size_text(r.volume):>12}")
        total = forecast.total_in_window()
        yield f"  in the window: {total.records:,} records ({size_text(total)})"
    else:
        yield "  nothing else becomes due in the window"
    yield (f"  later: {forecast.later.records:,}; clock not started (service active): {forecast.undated.records:,}; "
           f"held: {forecast.held.records:,}; skipped: {forecast.skipped.records:,}")


def _sum(volumes: Iterable[Volume]) -> Volume:
    out = Volume()
    for v in volumes:
        out.records += v.records
        out.bytes += v.bytes
        out.unsized += v.unsized
    return out


def size_text(volume: Volume) -> str:
    """The bytes of *volume* as a person reads them, never "0 B" for records of unknown size
    (an SQL table has none): "size unknown", or the known part and how many are unsized."""
    if volume.records and volume.unsized == volume.records:
        return "size unknown"
    if volume.unsized:
        return f"{human_bytes(volume.bytes)} + {volume.unsized:,} unsized"
    return human_bytes(volume.bytes)


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB': sizes a person can compare at a glance."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


__all__ = ["Forecast", "UNKNOWN", "Volume", "WEEK", "WeekRow", "human_bytes", "plan_csv", "plan_json", "plan_text",
           "size_text"]
