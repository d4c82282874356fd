"""Locations as people and JSON see them.

File names need not be UTF-8; the fs backend carries such bytes as surrogate escapes. Reports
show them with backslash escapes; the audit trail keeps the exact bytes too, so a crashed
run's intents can be matched against storage again.
"""

from __future__ import annotations


def printable(value: str) -> str:
    """*value* with undecodable bytes shown as ``\\xNN`` (safe for JSON, HTML and terminals)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def exact_hex(value: str) -> str | None:
    """The raw bytes as hex when *value* is not plain UTF-8, else None."""
    try:
        value.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").hex()


def from_entry(location: str, raw_hex: str | None) -> str:
    """Undo :func:`printable`/:func:`exact_hex` for an audit entry."""
    return bytes.fromhex(raw_hex).decode("utf-8", "surrogateescape") if raw_hex else location
