"""The plugin's data: what was observed in a browser and what the checks found.

Observations come from three very different sources (HAR files, raw Set-Cookie lines, a
live browser); reducing them to one small record lets every check treat them alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

STORAGES = ("cookie", "localStorage", "sessionStorage")
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True, slots=True)
class Observation:
    """One cookie or web-storage key seen once, with the evidence of where it came from.

    ``lifetime`` is None for a session cookie (and for storage keys, which have no expiry);
    ``attributes_known`` is False when the source cannot tell (a request ``Cookie`` header
    shows names only), so attribute checks skip such sightings instead of guessing.
    """

    name: str
    storage: str = "cookie"
    domain: str | None = None  # cookie domain, or the origin's host for storage keys
    host_only: bool = True
    path: str | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None
    lifetime: timedelta | None = None
    attributes_known: bool = True
    page_url: str | None = None  # the page or request URL whose response/script set it
    https: bool = True  # whether it was set over HTTPS (Secure checks only apply there)
    set_by: str = ""  # "Set-Cookie header of https://…", "script https://…/a.js", …
    source: str = ""  # the input: "har:file.har", "set-cookie:cookies.txt", "browser:URL"
    scenario: str = "initial"  # "initial" or "after click SELECTOR"
    raw: str | None = None

    @property
    def session(self) -> bool:
        """A session cookie ends with the browser session."""
        return self.lifetime is None


@dataclass(frozen=True, slots=True)
class Finding:
    """A single result of the checks: one rule broken by one cookie (or one input)."""

    rule: str
    severity: str
    subject: str
    message: str
    evidence: str = ""
    basis: str = ""
    hint: str = ""
    file: str | None = None
    line: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON report's shape of a finding."""
        data: dict[str, Any] = {
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "evidence": self.evidence,
            "basis": self.basis,
            "hint": self.hint,
        }
        if self.file:
            data["file"] = self.file
        if self.line:
            data["line"] = self.line
        return data


def name_matches(kind: str, pattern: str, name: str) -> bool:
    """Whether cookie *name* matches *pattern* under a match *kind*: exact, prefix or regex
    (a whole-name match). Declarations and the knowledge base share this rule."""
    if kind == "exact":
        return name == pattern
    if kind == "prefix":
        return name.startswith(pattern)
    return re.fullmatch(pattern, name) is not None


def format_lifetime(lifetime: timedelta | None) -> str:
    """A human lifetime: 'session', '30 min', '13 months (396 days)'."""
    if lifetime is None:
        return "session"
    seconds = lifetime.total_seconds()
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    days = seconds / 86400
    return f"{days:.0f} days"
