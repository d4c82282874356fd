"""What a scan saw of a row (``Record.stamp``), and the condition that it is still there (the guard).

The stamp holds the values exactly as the driver returned them — the created column as read
(a ``datetime`` with its microseconds, naive or aware as stored; SQLite's text), the subject
as text, and the declared row-version column's raw value — so that comparing them with the
row again in the ``DELETE``'s ``WHERE`` is exact: no time-zone conversion or rounding stands
between what was seen and what is compared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

#: Python types a row-version column may read back as (checked when the table is reflected).
VERSION_TYPES = (int, str, datetime, date, Decimal, uuid.UUID, bytes)

_MICRO = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=timezone.utc)

#: How each tagged value is read back from its text.
_DECODERS: dict[str, Callable[[str], Any]] = {
    "s": str,
    "i": int,
    "t": datetime.fromisoformat,
    "N": lambda text: _EPOCH + int(text) * _MICRO,
    "T": lambda text: _EPOCH_UTC + int(text) * _MICRO,
    "d": date.fromisoformat,
    "n": Decimal,
    "u": uuid.UUID,
    "x": bytes.fromhex,
    "f": float.fromhex,
}


@dataclass(frozen=True)
class Seen:
    """The decoded stamp: the created value as read, the subject text, the version (if declared)."""

    created: Any
    subject: str | None
    version: Any = None


def encode(created: Any, subject: str | None, version: Any = None, *, versioned: bool = False) -> str:
    """The stamp of one row: tokens that decode to exactly these values, types included.

    Each token is ``<tag><length>:<text>`` (``-`` for NULL), so any text — a subject with
    separators or newlines in it — reads back unchanged. A timestamp is its count of
    microseconds since 1970 (naive: of wall time; aware: of UTC, the instant it names), exact
    and cheap: a scan stamps every row, and ``json.dumps`` or ``isoformat`` cost more than the
    rest of reading a row.
    """
    if created.__class__ is datetime:
        micros = str((created - _EPOCH) // _MICRO if created.tzinfo is None else (created - _EPOCH_UTC) // _MICRO)
        head = f"{'N' if created.tzinfo is None else 'T'}{len(micros)}:{micros}"
    else:
        head = _token(created)
    if versioned:
        head += _token(version)
    if subject is None:
        return head + "-"
    return f"{head}s{len(subject)}:{subject}"


def decode(stamp: str | None, *, versioned: bool) -> Seen | None:
    """The values a stamp names, or None when it is missing or not one of ours.

    A stamp written without a version is not accepted by a source that now declares one (and
    the reverse): the option changed since the scan, so the row must be listed again.
    """
    if not stamp:
        return None
    values: list[Any] = []
    at = 0
    try:
        while at < len(stamp):
            tag = stamp[at]
            if tag == "-":
                values.append(None)
                at += 1
                continue
            colon = stamp.index(":", at)
            length = int(stamp[at + 1:colon])
            end = colon + 1 + length
            if length < 0 or end > len(stamp):
                return None
            values.append(_DECODERS[tag](stamp[colon + 1:end]))
            at = end
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    if len(values) != (3 if versioned else 2) or not (values[-1] is None or isinstance(values[-1], str)):
        return None
    return Seen(values[0], values[-1], values[1] if versioned else None)


def _token(value: Any) -> str:
    """One value as a token :func:`decode` turns back into it, type included."""
    if value is None:
        return "-"
    if isinstance(value, str):
        tag, text = "s", value
    elif isinstance(value, bool):
        raise TypeError("cannot stamp a boolean")
    elif isinstance(value, int):
        tag, text = "i", str(value)
    elif isinstance(value, float):  # SQLite may hold one in any column
        tag, text = "f", value.hex()
    elif isinstance(value, datetime):
        tag, text = "t", value.isoformat()
    elif isinstance(value, date):
        tag, text = "d", value.isoformat()
    elif isinstance(value, Decimal):
        tag, text = "n", str(value)
    elif isinstance(value, uuid.UUID):
        tag, text = "u", str(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        tag, text = "x", bytes(value).hex()
    else:
        raise TypeError(f"cannot stamp a value of type {type(value).__name__}")
    return f"{tag}{len(text)}:{text}"
