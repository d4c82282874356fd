"""A lenient Set-Cookie parser following RFC 6265bis §5.6, written for auditing.

Python's ``http.cookies`` drops every cookie of a header when one is malformed, and
browsers do not: a parser that hides cookies would let a tracker slip past the check.
Here each line is parsed on its own, nothing is split on commas (``Expires`` has one),
and whatever a browser would ignore is kept as an *anomaly* so it can be reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# RFC 6265bis §5.6 step 1: a line with a control character (other than HTAB) is ignored.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_NAME_VALUE = 4096
_MAX_ATTRIBUTE_VALUE = 1024
_DELIMITER = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:[^\d]|$)")
_DAY = re.compile(r"^(\d{1,2})(?:[^\d]|$)")
_YEAR = re.compile(r"^(\d{2,4})(?:[^\d]|$)")
#: ", name=" inside a line: several Set-Cookie headers folded into one with commas (RFC 9110
#: §5.3 allows that for other headers, never for Set-Cookie). A browser stores the first
#: cookie with the rest inside its value, so the folded cookies are hidden, not set.
_FOLDED = re.compile(r",\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=")
KNOWN_ATTRIBUTES = ("expires", "max-age", "domain", "path", "secure", "httponly", "samesite",
                    "partitioned")


#: Seconds; a larger Max-Age is read as this (browsers cap lifetimes at 400 days anyway).
MAX_AGE_CLAMP = 10**10

@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something a browser would silently ignore or repair; reported as a finding."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One parsed Set-Cookie line: what the browser would store, plus what it ignored."""

    name: str
    value: str
    raw: str
    expires: datetime | None = None
    max_age: int | None = None
    domain: str | None = None
    path: str | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None  # "Strict", "Lax", "None" or None when absent/invalid
    partitioned: bool = False
    anomalies: tuple[Anomaly, ...] = ()

    @property
    def persistent(self) -> bool:
        """Max-Age wins over Expires (RFC 6265bis §5.7 step 3)."""
        return self.max_age is not None or self.expires is not None

    def lifetime(self, received: datetime) -> timedelta | None:
        """How long the cookie lives from *received*; None for a session cookie."""
        if self.max_age is not None:
            # Clamped to ~300 years so an absurd Max-Age stays comparable (and over 400 days).
            return timedelta(seconds=min(max(self.max_age, 0), MAX_AGE_CLAMP))
        if self.expires is not None:
            return self.expires - received
        return None


@dataclass(slots=True)
class ParseResult:
    """A parsed line, or None with the anomalies that made the browser ignore it."""

    cookie: SetCookie | None
    anomalies: list[Anomaly] = field(default_factory=list)


def parse_set_cookie(line: str) -> ParseResult:
    """Parse one Set-Cookie header value (without the ``Set-Cookie:`` name).

    Never raises: an unusable line yields ``cookie=None`` and the reason as an anomaly.
    """
    anomalies: list[Anomaly] = []
    raw = line
    if _CTL.search(line):
        return ParseResult(None, [Anomaly("control-character",
                                          "contains a control character; browsers ignore the whole line")])
    if ";" in line:
        pair, _, rest = line.partition(";")
    else:
        pair, rest = line, ""
    if "=" in pair:
        name, _, value = pair.partition("=")
    else:
        # §5.6 step 3: no '=' means an empty name and the whole pair as value.
        name, value = "", pair
        anomalies.append(Anomaly("nameless", f"no '=' in {pair.strip()!r}: stored with an empty name"))
    name, value = name.strip(" \t"), value.strip(" \t")
    if not name and not value:
        return ParseResult(None, anomalies + [Anomaly("empty", "empty name and value; ignored")])
    if len(name) + len(value) > _MAX_NAME_VALUE:
        return ParseResult(None, anomalies + [Anomaly(
            "too-long", f"name plus value is {len(name) + len(value)} characters (> 4096); ignored")])
    if not _is_ascii(name) or not _is_ascii(value):
        anomalies.append(Anomaly("non-ascii", "name or value contains non-ASCII characters"))

    attrs: dict[str, object] = {}
    seen: set[str] = set()
    for chunk in rest.split(";") if rest else ():
        if not chunk.strip(" \t"):
            continue
        key, has_eq, val = chunk.partition("=")
        key, val = key.strip(" \t"), val.strip(" \t")
        lower = key.lower()
        if len(val) > _MAX_ATTRIBUTE_VALUE:
            anomalies.append(Anomaly("attribute-too-long", f"{key} value longer than 1024; ignored"))
            continue
        if lower in seen and lower in KNOWN_ATTRIBUTES:
            anomalies.append(Anomaly("duplicate-attribute", f"{key} given twice; the last one wins"))
        seen.add(lower)
        if lower == "expires":
            when = parse_cookie_date(val)
            if when is None:
                anomalies.append(Anomaly("bad-expires", f"Expires={val!r} is not a cookie date; ignored"))
            else:
                attrs["expires"] = when
        elif lower == "max-age":
            if re.fullmatch(r"-?\d+", val):
                attrs["max_age"] = int(val)
            else:
                anomalies.append(Anomaly("bad-max-age", f"Max-Age={val!r} is not an integer; ignored"))
        elif lower == "domain":
            if not val:
                anomalies.append(Anomaly("empty-domain", "Domain without a value; ignored"))
                continue
            attrs["domain"] = val.lstrip(".").lower()
        elif lower == "path":
            if not val.startswith("/"):
                anomalies.append(Anomaly("bad-path", f"Path={val!r} does not start with '/'; default path used"))
                attrs.pop("path", None)
            else:
                attrs["path"] = val
        elif lower in ("secure", "httponly", "partitioned"):
            if has_eq and val:
                anomalies.append(Anomaly("flag-with-value", f"{key}={val!r}: the value is ignored"))
            attrs[{"secure": "secure", "httponly": "http_only", "partitioned": "partitioned"}[lower]] = True
        elif lower == "samesite":
            canonical = {"strict": "Strict", "lax": "Lax", "none": "None"}.get(val.lower())
            if canonical is None:
                anomalies.append(Anomaly("bad-samesite", f"SameSite={val!r} is not Strict, Lax or None; "
                                                         "browsers treat it as absent (Lax by default)"))
                attrs.pop("same_site", None)
            else:
                attrs["same_site"] = canonical
        else:
            anomalies.append(Anomaly("unknown-attribute", f"unknown attribute {key!r}; ignored"))
    folded = [m.group(1) for m in _FOLDED.finditer(line)]
    if folded:
        anomalies.append(Anomaly("comma-folded", "several Set-Cookie headers folded into one line with "
                                 f"commas: {', '.join(repr(f) for f in folded)} hidden inside {name!r}'s "
                                 "value or attributes, never stored as cookies of their own"))
    cookie = SetCookie(name=name, value=value, raw=raw, anomalies=tuple(anomalies), **attrs)  # type: ignore[arg-type]
    return ParseResult(cookie, anomalies)


def split_header_value(value: str) -> list[str]:
    """Split a Set-Cookie value some tools joined with newlines; never on commas."""
    return [part for part in re.split(r"\r?\n", value) if part.strip()]


def parse_cookie_date(text: str) -> datetime | None:
    """The cookie-date algorithm of RFC 6265 §5.1.1 (what browsers accept for Expires)."""
    hour = minute = second = day = month = year = None
    for token in _DELIMITER.split(text):
        if not token:
            continue
        if hour is None and (m := _TIME.match(token)):
            hour, minute, second = (int(g) for g in m.groups())
            continue
        if day is None and (m := _DAY.match(token)):
            day = int(m.group(1))
            continue
        if month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS.index(token[:3].lower()) + 1
            continue
        if year is None and (m := _YEAR.match(token)):
            year = int(m.group(1))
            continue
    if year is not None:
        if 70 <= year <= 99:
            year += 1900
        elif 0 <= year <= 69:
            year += 2000
    if None in (hour, day, month, year):
        return None
    assert hour is not None and minute is not None and second is not None
    assert day is not None and month is not None and year is not None
    if not (1 <= day <= 31) or year < 1601 or hour > 23 or minute > 59 or second > 59:
        return None
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:  # 31 February and friends
        return None


def _is_ascii(text: str) -> bool:
    return all(ord(ch) < 128 for ch in text)
