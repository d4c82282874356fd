"""The plugin's data: what was observed in a browser and what the checks found.

Observations come from three very different sources (HAR files, raw Set-Cookie lines, a
live browser); reducing them to one small record lets every check treat them alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
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
    scenario: str = ""  # a browser visit's scenario: "before-consent", "after-reject", …
    raw: str | None = None
    #: "stored" (in the jar or storage at the end of the scenario), "deleted" (written, then
    #: gone again before the end) or "rejected" (the browser refused it, see ``reason``).
    state: str = "stored"
    reason: str = ""
    partitioned: bool = False  # CHIPS: the Partitioned attribute was set
    partition: str | None = None  # the top-level site of a partitioned cookie's jar

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The browser's identity of a cookie: (name, domain, path, partition); storage keys
        are told apart by origin host instead."""
        return (self.name, self.domain or "", self.path or "", self.partition or "")

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


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a browser visit: the evidence that a service was contacted."""

    url: str
    method: str = "GET"
    resource_type: str = ""  # Document, Script, Image, XHR, Ping, …
    initiator: str = ""  # the script or document URL that caused it, or the initiator type
    frame_url: str = ""
    third_party: bool = False
    scenario: str = ""
    status: int | None = None
    redirected_from: str | None = None
    tracker: str = ""  # "Product (vendor) category" when the tracker list knows the endpoint


def observation_to_dict(o: Observation) -> dict[str, Any]:
    """The JSON form of an observation (reports and saved visits)."""
    data = {f.name: getattr(o, f.name) for f in fields(Observation)}
    data["lifetime_seconds"] = None if o.lifetime is None else int(o.lifetime.total_seconds())
    del data["lifetime"]
    return data


def observation_from_dict(data: dict[str, Any]) -> Observation:
    """Inverse of observation_to_dict; unknown keys are an error (raised as TypeError)."""
    data = dict(data)
    seconds = data.pop("lifetime_seconds", None)
    return Observation(**data, lifetime=None if seconds is None else timedelta(seconds=seconds))


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
