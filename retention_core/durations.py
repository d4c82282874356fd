"""Retention periods ("90d", "18mo", "7y", "P1Y6M") as calendar-aware offsets.

Retention must never end early, so when a calendar date does not exist (Feb 29 + 1y,
Jan 31 + 1mo) the offset lands on the *later* real date (Mar 1), unlike dateutil's
clamping to the earlier one.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_SHORT = re.compile(r"\s*([0-9]+)\s*(d|w|mo|y|h)\s*")  # ASCII digits only: "５d" is not a duration
_ISO = re.compile(
    r"P(?!$)(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)


@dataclass(frozen=True, slots=True)
class Duration:
    """A period of whole months plus an exact time span."""

    months: int = 0
    delta: timedelta = timedelta(0)
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.months}mo+{self.delta}"

    def after(self, start: datetime) -> datetime:
        """The instant this period after *start*; a missing day rolls forward.

        Past the calendar's end (year 9999) the answer is "never": the latest instant there is.
        """
        try:
            return add_months(start, self.months) + self.delta
        except (OverflowError, ValueError):
            return datetime.max.replace(tzinfo=start.tzinfo)

    def latest_start_due_by(self, now: datetime) -> datetime:
        """The latest *start* for which ``self.after(start) <= now``.

        Set-based backends push this cutoff down into storage ("created <= cutoff")
        and must select exactly what the per-record rule selects; ``after`` is
        monotonic, so a binary search around the naive inverse finds the boundary.
        """
        guess = add_months(now - self.delta, -self.months)
        lo, hi = guess - timedelta(days=4), guess + timedelta(days=4)
        if self.after(lo) > now:  # cannot happen for months >= 0, but stay safe
            lo -= timedelta(days=31)
        lo_us, hi_us = 0, int((hi - lo) / timedelta(microseconds=1))
        while lo_us < hi_us:
            mid = (lo_us + hi_us + 1) // 2
            if self.after(lo + timedelta(microseconds=mid)) <= now:
                lo_us = mid
            else:
                hi_us = mid - 1
        return lo + timedelta(microseconds=lo_us)


def add_months(start: datetime, months: int) -> datetime:
    """Add calendar months; a day past the month's end rolls to the next month's first."""
    if months == 0:
        return start
    index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    if start.day <= last:
        return start.replace(year=year, month=month)
    # The day does not exist in the target month: take the later date.
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return start.replace(year=year, month=month, day=1)


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
