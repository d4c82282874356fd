"""What a scan saw of a row (``Record.stamp``), and the condition that it is still there (the guard).

The stamp holds the values exactly as the driver returned them — the created column as read
(a ``datetime`` with its microseconds, naive or aware as stored; SQLite's text), the subject
as text, and the declared row-version column's raw value — so that comparing them with the
row again in the ``DELETE``'s ``WHERE`` is exact: no time-zone conversion or rounding stands
between what was seen and what is compared.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

#: Python types a row-version column may read back as (checked when the table is reflected).
VERSION_TYPES = (int, str, datetime, date, Decimal, uuid.UUID, bytes)

_DECODERS: dict[str, Callable[[str], Any]] = {
    "t": datetime.fromisoformat,
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
    """The stamp of one row: a short JSON array that decodes to exactly these values."""
    values = [_tag(created), subject]
    if versioned:
        values.append(_tag(version))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def decode(stamp: str | None, *, versioned: bool) -> Seen | None:
    """The values a stamp names, or None when it is missing or not one of ours.

    A stamp written without a version is not accepted by a source that now declares one (and
    the reverse): the option changed since the scan, so the row must be listed again.
    """
    if not stamp:
        return None
    try:
        values = json.loads(stamp)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != (3 if versioned else 2):
        return None
    subject = values[1]
    if subject is not None and not isinstance(subject, str):
        return None
    try:
        return Seen(_untag(values[0]), subject, _untag(values[2]) if versioned else None)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _tag(value: Any) -> Any:
    """A JSON value that :func:`_untag` turns back into *value*, type included."""
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float):  # SQLite may hold one in any column
        return {"f": value.hex()}
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"x": bytes(value).hex()}
    raise TypeError(f"cannot stamp a value of type {type(value).__name__}")


def _untag(value: Any) -> Any:
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        [(tag, text)] = value.items()
        decoder = _DECODERS.get(tag)
        if decoder is not None and isinstance(text, str):
            return decoder(text)
    raise ValueError(f"not a stamped value: {value!r}")
