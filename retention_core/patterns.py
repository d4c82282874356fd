"""A source's ``match``: regular expressions that run in linear time, whatever the name.

Storage names are chosen by whoever writes the data, so a pattern with nested repetition
(``(a+)+``) must not let one hostile name hang a run, as Python's backtracking ``re`` would.
Patterns compile with RE2 (through pyre2); a feature RE2 cannot run in linear time
(backreferences, lookaround) is a configuration error, never a silent fallback to ``re``.
Names that are not UTF-8 (file names carried as surrogate escapes) are matched with each
undecodable byte seen as U+FFFD, and groups are cut from the original name. ``.`` matches any
character, a newline included (dot-all): a location is one name, not lines.
"""

from __future__ import annotations

from typing import Any

import re2

# Never fall back to the backtracking engine: an unsupported feature is an error at load time.
re2.set_fallback_notification(re2.FALLBACK_EXCEPTION)


class PatternError(ValueError):
    """The pattern is not a regular expression RE2 can run in linear time."""


class LinearPattern:
    """A compiled ``match`` with the slice of ``re.Pattern`` the core uses."""

    __slots__ = ("_compiled", "pattern", "groupindex")

    def __init__(self, pattern: str) -> None:
        try:
            # Dot-all: a name is one string, and `.` must not stop at a newline or a carriage
            # return inside it (a key 'a2\nx' fell silently outside `match: '.*'`).
            self._compiled = re2.compile("(?s)" + pattern)
        except Exception as exc:  # pyre2 raises its own error type (and re.error for some input)
            raise PatternError(f"{exc} (patterns run on RE2, in linear time: no backreferences or "
                               "lookaround)") from None
        self.pattern = pattern
        self.groupindex: dict[str, int] = dict(self._compiled.groupindex)

    def fullmatch(self, text: str) -> Any:
        """A match object (``.group(name)``) or None."""
        try:
            return self._compiled.fullmatch(text)
        except UnicodeEncodeError:
            seen = "".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in text)
            found = self._compiled.fullmatch(seen)
            return None if found is None else _Original(found, text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"LinearPattern({self.pattern!r})"


class _Original:
    """A match found on the escaped form of a name, whose groups are cut from the name itself."""

    __slots__ = ("_found", "_text")

    def __init__(self, found: Any, text: str) -> None:
        self._found, self._text = found, text

    def group(self, name: str | int = 0) -> str | None:
        start, end = self._found.span(name)
        return None if start < 0 else self._text[start:end]
