"""Retention periods ("90d", "18mo", "7y", "P1Y6M") as calendar-aware offsets.

Retention must never end early, so when a calendar date does not exist (Feb 29 + 1y,
Jan 31 + 1mo) the offset lands on the *later* real date (Mar 1), unlike dateutil's
clamping to the earlier one. It lands at the start of that day: the period then runs to
the end of the short month, and an offset is monotonic (a later start never ends earlier),
which is what lets a set of records be selected by one ``created <= cutoff`` comparison.

Arithmetic saturates instead of raising: past the calendar's end (year 9999) a period
"never" ends, before its start (year 1) there is no instant.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

_SHORT = re.compile(r"\s*([0-9]+)\s*(d|w|mo|y|h)\s*")  # ASCII digits only: "５d" is not a duration
_ISO = re.compile(
    r"P(?!$)(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)
_MICROSECOND = timedelta(microseconds=1)
#: How far around the naive inverse the exact cutoff is looked for before searching the calendar.
_BRACKET = timedelta(days=4)


@dataclass(frozen=True, slots=True)
class Duration:
    """A period of whole months plus an exact time span."""

    months: int = 0
    delta: timedelta = timedelta(0)
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.months}mo+{self.delta}"

    def end(self, start: datetime) -> datetime | None:
        """The instant this period after *start*; None when that is past the calendar (never)."""
        try:
            if not self.months:
                return start + self.delta
            return _add_months(start, self.months) + self.delta
        except (OverflowError, ValueError):
            return None

    def after(self, start: datetime) -> datetime:
        """The instant this period after *start*; a missing day rolls forward.

        Past the calendar's end (year 9999) the answer is "never": the latest instant there is.
        """
        end = self.end(start)
        return end if end is not None else datetime.max.replace(tzinfo=start.tzinfo)

    def latest_start_due_by(self, now: datetime) -> datetime | None:
        """The latest *start* for which ``self.after(start) <= now``; None when no start is.

        Set-based backends push this cutoff down into storage ("created <= cutoff")
        and must select exactly what the per-record rule selects: ``end`` is monotonic,
        so every start up to the returned one is due and every later one is not.
        """
        return latest_start(self.end, now, self.naive_start(now))

    def naive_start(self, now: datetime) -> datetime:
        """About the latest start due by *now* (``now`` minus the period), saturating at year 1."""
        try:
            return add_months(now - self.delta, -self.months)
        except OverflowError:
            return datetime.min.replace(tzinfo=now.tzinfo)


def latest_start(end: Callable[[datetime], datetime | None], now: datetime, guess: datetime) -> datetime | None:
    """The latest *start* with ``end(start) <= now``, to the microsecond; None when no start has.

    *end* must be monotonic (a later start never ends earlier; None, "never", comes last).
    The search brackets *guess* first (a few calls) and falls back to the whole calendar
    (about sixty calls), so it is exact whatever the guess.
    """
    def due(start: datetime) -> bool:
        finish = end(start)
        return finish is not None and finish <= now

    first, last = datetime.min.replace(tzinfo=now.tzinfo), datetime.max.replace(tzinfo=now.tzinfo)
    if not due(first):
        return None
    if due(last):
        return last
    lo, hi = _saturating_add(guess, -_BRACKET), _saturating_add(guess, _BRACKET)
    if not due(lo):
        lo = first
    if due(hi):
        hi = last
    # due(lo) and not due(hi): find the last due microsecond in [lo, hi).
    lo_us, hi_us = 0, (hi - lo) // _MICROSECOND - 1
    while lo_us < hi_us:
        mid = (lo_us + hi_us + 1) // 2
        if due(lo + mid * _MICROSECOND):
            lo_us = mid
        else:
            hi_us = mid - 1
    return lo + lo_us * _MICROSECOND


def add_months(start: datetime, months: int) -> datetime:
    """Add calendar months; a day past the month's end rolls to the start of the next month's first.

    Saturates: past year 9999 the latest instant there is, before year 1 the earliest.
    """
    try:
        return _add_months(start, months)
    except ValueError:
        limit = datetime.max if months > 0 else datetime.min
        return limit.replace(tzinfo=start.tzinfo)


def _add_months(start: datetime, months: int) -> datetime:
    """:func:`add_months`, raising ValueError outside the calendar."""
    if months == 0:
        return start
    index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError(f"year {year} is out of range")
    last = calendar.monthrange(year, month)[1]
    if start.day <= last:
        return start.replace(year=year, month=month)
    # The day does not exist in the target month: the later date, from its first instant.
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return start.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)


def _saturating_add(start: datetime, delta: timedelta) -> datetime:
    try:
        return start + delta
    except OverflowError:
        limit = datetime.max if delta > timedelta(0) else datetime.min
        return limit.replace(tzinfo=start.tzinfo)


#: Longer than any retention period anyone keeps; beyond it dates overflow the calendar.
MAX_MONTHS = 12 * 1000
MAX_DELTA = timedelta(days=366 * 1000)


def parse_duration(text: object) -> Duration:
    """Parse ``90d``, ``12w``, ``18mo``, ``7y``, ``36h`` or ISO 8601 ``P1Y6M``/``P90D``.

    Raises ValueError with a message that says what is accepted.
    """
    duration = _parse(text)
    if duration.months > MAX_MONTHS or duration.delta > MAX_DELTA:
        raise ValueError(f"expected a duration of at most 1000 years, found {text!r}")
    return duration


def _parse(text: object) -> Duration:
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 90d, 18mo, 7y or P1Y6M, found {text!r}")
    raw = text.strip()
    short = _SHORT.fullmatch(raw)
    iso = None if short else _ISO.fullmatch(raw.upper())
    if short:
        n, unit = int(short.group(1)), short.group(2)
        months = {"mo": n, "y": 12 * n}.get(unit, 0)
        seconds = {"d": 86400 * n, "w": 7 * 86400 * n, "h": 3600 * n}.get(unit, 0)
    elif iso:
        y, m, w, d, h, mi, sec = (int(g) if g else 0 for g in iso.groups())
        months = 12 * y + m
        seconds = ((w * 7 + d) * 24 + h) * 3600 + mi * 60 + sec
    else:
        raise ValueError(f"expected a duration like 90d, 12w, 18mo, 7y or P1Y6M, found {text!r}")
    # Checked as plain integers, before timedelta could overflow on them.
    if months > MAX_MONTHS or seconds > MAX_DELTA.total_seconds():
        raise ValueError(f"expected a duration of at most 1000 years, found {text!r}")
    return Duration(months=months, delta=timedelta(seconds=seconds), text=raw)
