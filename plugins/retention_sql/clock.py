"""Turning a ``created`` column's values into aware UTC instants, and cutoffs back into bounds.

A naive column holds wall-clock times of a declared zone. Around a daylight-saving change
a wall time can occur twice (autumn) or never (spring). We read the repeated hour as its
*later* occurrence (retention is never early) and a time inside the gap as the instant
the clocks jumped. Both choices keep the mapping local → UTC non-decreasing, so
"created <= cutoff" in UTC is exactly "local <= bound" for one bound: the set-based path
compares wall times in the database and selects what the per-record path selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

UTC = timezone.utc
_MICRO = timedelta(microseconds=1)
_SEARCH = timedelta(days=2)

#: Created values outside this range are never read, decided or deleted (see ``Clock.valid_range``).
EARLIEST = datetime(1, 1, 3)
LATEST = datetime(9999, 12, 29)


@dataclass(frozen=True)
class Clock:
    """How one column's values relate to UTC: aware, or naive wall time in ``zone``."""

    zone: tzinfo | None  # None: the driver returns aware values

    @property
    def naive(self) -> bool:
        return self.zone is not None

    def to_utc(self, value: datetime) -> datetime:
        """The aware UTC instant of a value read from the column."""
        if value.tzinfo is UTC:  # already what we want: astimezone cost ~2 µs per row
            return value
        if self.zone is None:
            if value.tzinfo is None:
                raise ValueError(f"expected an aware timestamp, found naive {value.isoformat()}")
            return value.astimezone(UTC)
        if value.tzinfo is not None:  # some drivers attach a zone anyway; it is authoritative
            return value.astimezone(UTC)
        return local_to_utc(value, self.zone)

    def bound(self, cutoff: datetime) -> datetime:
        """The column value V such that ``to_utc(x) <= cutoff`` exactly when ``x <= V``."""
        if self.zone is None:
            return cutoff.astimezone(UTC)
        return latest_local_at_or_before(cutoff, self.zone)

    def due_everything(self, cutoff: datetime) -> bool:
        """Whether *cutoff* lies after every valid value of the column."""
        return cutoff >= (LATEST + timedelta(days=1)).replace(tzinfo=UTC)

    def due_nothing(self, cutoff: datetime) -> bool:
        """Whether *cutoff* lies before every valid value of the column."""
        return cutoff < (EARLIEST - timedelta(days=1)).replace(tzinfo=UTC)


def wall(instant: datetime, zone: tzinfo) -> datetime:
    """The naive wall-clock time *zone* shows at *instant*."""
    return instant.astimezone(zone).replace(tzinfo=None)


def local_to_utc(local: datetime, zone: tzinfo) -> datetime:
    """Aware UTC for a naive wall time of *zone* (repeated hour: later; gap: the jump)."""
    if zone is UTC:
        return local.replace(tzinfo=UTC)
    aware = local.replace(tzinfo=zone)
    offset = aware.utcoffset()
    if offset is not None and offset == aware.replace(fold=1).utcoffset():
        return (local - offset).replace(tzinfo=UTC)  # the common case: one reading
    readings = {local.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    real = [u for u in readings if wall(u, zone) == local]
    if real:
        return max(real)
    # Inside a spring-forward gap: the first instant whose wall time is past *local*.
    lo, hi = min(readings), max(readings)
    while hi - lo > _MICRO:
        mid = lo + (hi - lo) / 2
        if wall(mid, zone) > local:
            hi = mid
        else:
            lo = mid
    return hi


def latest_local_at_or_before(cutoff: datetime, zone: tzinfo) -> datetime:
    """The largest naive wall time L (whole microseconds) with ``local_to_utc(L) <= cutoff``."""
    if zone is UTC:
        return cutoff.astimezone(UTC).replace(tzinfo=None)
    centre = wall(cutoff, zone)
    lo = max(centre - _SEARCH, datetime.min + _SEARCH)
    hi = min(centre + _SEARCH, datetime.max - _SEARCH)
    # Invariant: local_to_utc(lo) <= cutoff < local_to_utc(hi).
    steps_lo, steps_hi = 0, (hi - lo) // _MICRO
    while steps_hi - steps_lo > 1:
        mid = (steps_lo + steps_hi) // 2
        if local_to_utc(lo + mid * _MICRO, zone) <= cutoff:
            steps_lo = mid
        else:
            steps_hi = mid
    return lo + steps_lo * _MICRO
