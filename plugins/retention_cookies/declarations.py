"""Load and validate ``config/cookies.yaml``: what the service says it stores, and why.

The file is the written form of the privacy policy's cookie sentence. A typo must never
silently widen what is allowed, so unknown keys are errors and every error is one line
naming the file, the key path and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from retention_core import ConfigError, Duration, Options, describe, key_label, parse_duration
from retention_core.policy import StrictLoader, load_yaml

from .model import STORAGES, name_matches

CLAIMS = ("essential-only", "consent", "none")
CONSENT = ("exempt", "consent-required")
CATEGORIES = ("strictly_necessary", "functional", "analytics", "marketing")
MATCHES = ("exact", "prefix", "regex")
SAME_SITE = ("Strict", "Lax", "None")

#: Exemption bases: the cases of the Article 29 Working Party's Opinion 04/2012 on the
#: cookie consent exemption (WP194), plus the consent record itself. Each maps to the
#: longest lifetime the Opinion accepts for it: "session" or None (a declared maximum).
BASES: dict[str, str | None] = {
    "user_input": "session",        # WP194 §3.1: session-id, shopping cart, form state
    "authentication": "session",    # WP194 §3.2: persistent "remember me" is not exempt
    "security": None,               # WP194 §3.3: user-centric security, may persist
    "multimedia_player": "session",  # WP194 §3.4
    "load_balancing": "session",    # WP194 §3.5
    "ui_customization": None,       # WP194 §3.6: session, or a few hours / persistent on request
    "social_plugin": "session",     # WP194 §3.7: logged-in members sharing content
    "consent_record": None,         # remembering the visitor's cookie choice
}
UNREVIEWED = "unreviewed"  # written by importers; loads, but the check fails until reviewed
#: Purposes that are never exempt from consent.
NON_EXEMPT_PURPOSES = ("analytics", "marketing", "advertising", "personalisation", "functional",
                       "social_tracking")
PURPOSES = tuple(BASES) + NON_EXEMPT_PURPOSES
#: Month starts and ends over a leap and a common year, to measure "6mo" at its longest.
_REFERENCE_STARTS = tuple(datetime(year, month, day, tzinfo=timezone.utc)
                          for year in (2023, 2024) for month in range(1, 13) for day in (1, 28, 31)
                          if not (day == 31 and month in (2, 4, 6, 9, 11)))


@dataclass(frozen=True, slots=True)
class CookieDecl:
    """One declared cookie or storage key, and the facts the browser must agree with."""

    name: str
    match: str = "exact"
    storage: str = "cookie"
    domain: str | None = None
    path: str | None = None
    lifetime: Duration | None = None  # None = session (or no expiry for web storage)
    lifetime_text: str = "session"
    purposes: tuple[str, ...] = ()
    secure: bool | None = None
    http_only: bool | None = None
    same_site: str | None = None
    description: str = ""
    key: str = ""  # key path in the file, e.g. services[0].cookies[1]
    line: int | None = None
    service: str = ""

    def matches(self, name: str, storage: str = "cookie") -> bool:
        """Whether an observed name (in *storage*) is this declaration's."""
        if storage != self.storage:
            return False
        return name_matches(self.match, self.name, name)

    @property
    def session(self) -> bool:
        """True when declared 'session' (no expiry)."""
        return self.lifetime is None

    def max_lifetime(self) -> timedelta | None:
        """The declared maximum as a span: months vary in length, so the longest one any
        start date gives (a cookie within its declared months is never reported)."""
        if self.lifetime is None:
            return None
        lifetime = self.lifetime
        return max(lifetime.after(start) - start for start in _REFERENCE_STARTS)


@dataclass(frozen=True, slots=True)
class Service:
    """A service (an application, a load balancer, a consent tool) that stores cookies."""

    name: str
    category: str
    basis: str | None
    justification: str
    purposes: tuple[str, ...]
    cookies: tuple[CookieDecl, ...]
    third_party: bool = False
    key: str = ""
    line: int | None = None
    consent: str = "exempt"  # "exempt" or "consent-required"
    endpoints: tuple[str, ...] = ()  # hosts or URL prefixes the service's requests go to

    @property
    def essential(self) -> bool:
        """Only strictly necessary services may set cookies without consent."""
        return self.category == "strictly_necessary"

    @property
    def needs_consent(self) -> bool:
        """Whether nothing of this service may be set, stored or requested before consent."""
        return self.consent == "consent-required"

    def contacts(self, url: str) -> bool:
        """Whether *url* is one of the service's endpoints (a host and its subdomains, or a URL prefix)."""
        return any(endpoint_matches(e, url) for e in self.endpoints)


@dataclass(frozen=True, slots=True)
class Declarations:
    """The whole file: the policy claim, first-party domains and services."""

    claim: str
    first_party_domains: tuple[str, ...]
    services: tuple[Service, ...]
    file: str = "cookies.yaml"
    policy_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def cookies(self) -> Iterable[tuple[Service, CookieDecl]]:
        """Every declared cookie with its service, in file order."""
        for service in self.services:
            for cookie in service.cookies:
                yield service, cookie

    def service_of(self, url: str) -> Service | None:
        """The first service whose endpoints cover *url*."""
        return next((s for s in self.services if s.contacts(url)), None)

    def find(self, name: str, storage: str = "cookie") -> list[tuple[Service, CookieDecl]]:
        """Every declaration an observed name matches (exact ones first)."""
        hits = [(s, c) for s, c in self.cookies() if c.matches(name, storage)]
        return sorted(hits, key=lambda sc: MATCHES.index(sc[1].match))


def endpoint_matches(endpoint: str, url: str) -> bool:
    """``host`` covers the host and its subdomains on any scheme and port; a value with a
    scheme is a URL prefix; a value starting with '/' is a path on any host."""
    parts = urlsplit(url)
    if endpoint.startswith("/"):
        return parts.path == endpoint or parts.path.startswith(endpoint.rstrip("/") + "/")
    if "://" in endpoint:
        return url.startswith(endpoint)
    host = (parts.hostname or "").lower()
    endpoint = endpoint.lower().lstrip(".")
    return host == endpoint or host.endswith("." + endpoint)


class _LineLoader(StrictLoader):
    """The policy's strict loader (no duplicate keys, bounded nesting) that also remembers the
    line of every mapping, so findings can point at it."""


class _LineDict(dict):  # type: ignore[type-arg]
    line: int | None = None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    result = _LineDict(loader.construct_mapping(node, deep=True))
    result.line = node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_declarations(path: str | Path) -> Declarations:
    """Read and validate a declarations file; raise a one-line ConfigError on any problem."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read declarations: {exc.strerror or exc}", file=name) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                          file=name) from None
    data = load_yaml(text, name, _LineLoader)  # a second `claim: none` must not silently win
    try:
        return parse_declarations(data, file=name)
    except ConfigError as exc:
        raise exc.located(file=name) from None


def parse_declarations(data: Any, *, file: str = "cookies.yaml") -> Declarations:
    """Validate an already-loaded mapping (tests and importers use this directly)."""
    try:
        return _parse(data, file)
    except ConfigError as exc:
        key = exc.key.lstrip(".") if exc.key else exc.key
        raise ConfigError(exc.detail, file=file, key=key) from None


def _parse(data: Any, file: str) -> Declarations:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, found {describe(data)}", file=file)
    _reject_unknown(data, ("version", "claim", "policy_text", "first_party_domains", "services"), "")
    top = Options(data, where="")
    version = top.int("version", 1)
    if version != 1:
        raise _err("version", f"expected 1, found {version}")
    claim = top.choice("claim", CLAIMS)
    policy_text = top.str("policy_text", "")
    domains_raw = top.raw("first_party_domains", [])
    if not isinstance(domains_raw, list) or not all(isinstance(d, str) and d for d in domains_raw):
        raise _err("first_party_domains", f"expected a list of domain names, found {describe(domains_raw)}")
    domains = tuple(d.lower().lstrip(".") for d in domains_raw)
    services_raw = top.raw("services")
    if not isinstance(services_raw, list):
        raise _err("services", f"expected a list of services, found {describe(services_raw)}")
    top.done()
    # The items as loaded (not Options' copies), so each mapping keeps its line number.
    services = tuple(_service(item, f"services[{i}]") for i, item in enumerate(data["services"]))
    names: dict[str, str] = {}
    for service in services:
        if service.name in names:
            raise _err(f"{service.key}.name",
                       f"expected a unique service name, found {service.name!r} again "
                       f"(first at {names[service.name]})")
        names[service.name] = service.key
    return Declarations(claim=claim, first_party_domains=domains, services=services, file=file,
                        policy_text=policy_text)


def _service(data: Any, where: str) -> Service:
    opts = _opts(data, where)
    _reject_unknown(data, ("name", "description", "category", "basis", "justification", "third_party",
                           "purposes", "consent", "endpoints", "cookies"), where)
    name = opts.str("name")
    category = opts.choice("category", CATEGORIES)
    basis = opts.raw("basis", None)
    if basis is not None and not isinstance(basis, str):
        raise _err(f"{where}.basis", f"expected one of {', '.join(BASES)}, found {describe(basis)}")
    justification = opts.str("justification", "")
    opts.str("description", "")
    third_party = opts.bool("third_party", False)
    if category == "strictly_necessary":
        if basis is None:
            raise _err(f"{where}.basis", "is required for a strictly_necessary service (expected one of "
                       f"{', '.join(BASES)})")
        if basis not in BASES and basis != UNREVIEWED:
            raise _err(f"{where}.basis", f"expected one of {', '.join(BASES)}, found {describe(basis)}")
        if not justification:
            raise _err(f"{where}.justification",
                       "is required for a strictly_necessary service: say why the service cannot work without it")
    elif basis is not None:
        raise _err(f"{where}.basis", f"only strictly_necessary services have an exemption basis; "
                   f"this one is {category}")
    consent = opts.choice("consent", CONSENT, "exempt" if category == "strictly_necessary" else "consent-required")
    endpoints_raw = opts.raw("endpoints", [])
    if not isinstance(endpoints_raw, list) or not all(isinstance(e, str) and e.strip() for e in endpoints_raw):
        raise _err(f"{where}.endpoints", "expected a list of hosts, URL prefixes or /paths, found "
                   f"{describe(endpoints_raw)}")
    purposes = _purposes(opts, "purposes", where)
    if not purposes:
        purposes = (basis,) if basis in BASES else ((category,) if category != "strictly_necessary" else ())
    cookies_raw = opts.raw("cookies", [])
    if not isinstance(cookies_raw, list):
        raise _err(f"{where}.cookies", f"expected a list of cookies, found {describe(cookies_raw)}")
    opts.done()
    cookies = tuple(_cookie(item, f"{where}.cookies[{i}]", name, purposes)
                    for i, item in enumerate(data.get("cookies") or []))
    return Service(name=name, category=category, basis=basis, justification=justification,
                   purposes=purposes, cookies=cookies, third_party=third_party, key=where,
                   line=getattr(data, "line", None), consent=consent,
                   endpoints=tuple(e.strip() for e in endpoints_raw))


def _cookie(data: Any, where: str, service: str, service_purposes: tuple[str, ...]) -> CookieDecl:
    opts = _opts(data, where)
    _reject_unknown(data, ("name", "match", "storage", "domain", "path", "lifetime", "purposes",
                           "attributes", "description"), where)
    name = opts.str("name")
    match = opts.choice("match", MATCHES, "exact")
    if match == "regex":
        try:
            re.compile(name)
        except re.error as exc:
            raise _err(f"{where}.name", f"expected a regular expression, found {name!r} ({exc})") from None
    storage = opts.choice("storage", STORAGES, "cookie")
    domain = opts.str("domain", None)
    path = opts.str("path", None)
    if path is not None and not path.startswith("/"):
        raise _err(f"{where}.path", f"expected a path starting with '/', found {path!r}")
    lifetime_raw = opts.raw("lifetime", "session" if storage != "cookie" else None)
    if lifetime_raw is None:
        raise _err(f"{where}.lifetime", "is required: 'session' or a maximum like 30d, 6mo, 1y")
    if lifetime_raw == "session":
        lifetime = None
    else:
        try:
            lifetime = parse_duration(lifetime_raw)
        except ValueError as exc:
            raise _err(f"{where}.lifetime", f"expected 'session' or a duration: {exc}") from None
    purposes = _purposes(opts, "purposes", where) or service_purposes
    attrs = opts.mapping("attributes", {})
    a = Options(attrs, where=f"{where}.attributes")
    secure = a.bool("secure", None)
    http_only = a.bool("http_only", None)
    same_site = a.choice("same_site", SAME_SITE, None) if "same_site" in a else None
    a.done()
    description = opts.str("description", "")
    opts.done()
    if storage != "cookie" and (secure is not None or http_only is not None or same_site is not None):
        raise _err(f"{where}.attributes", f"only cookies have attributes; this is {storage}")
    if storage != "cookie" and domain and not _looks_like_host(domain):
        raise _err(f"{where}.domain", f"expected a host name, found {domain!r}")
    return CookieDecl(name=name, match=match, storage=storage,
                      domain=domain.lower().lstrip(".") if domain else None, path=path,
                      lifetime=lifetime, lifetime_text=str(lifetime_raw), purposes=purposes,
                      secure=secure, http_only=http_only, same_site=same_site,
                      description=description, key=where, line=getattr(data, "line", None),
                      service=service)


def _purposes(opts: Options, key: str, where: str) -> tuple[str, ...]:
    raw = opts.raw(key, [])
    if not isinstance(raw, list):
        raise _err(f"{where}.{key}", f"expected a list of purposes, found {describe(raw)}")
    for i, item in enumerate(raw):
        if item not in PURPOSES:
            raise _err(f"{where}.{key}[{i}]", f"expected one of {', '.join(PURPOSES)}, found {describe(item)}")
    return tuple(raw)


def _opts(data: Any, where: str) -> Options:
    if not isinstance(data, dict):
        raise _err(where, f"expected a mapping, found {describe(data)}")
    return Options(data, where=where)


def _reject_unknown(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Unknown keys first, so a misspelt key is named rather than reported as 'missing'."""
    for key in data:
        if key not in allowed:
            raise _err(f"{where}.{key_label(key)}" if where else key_label(key),
                       f"unknown key (expected one of {', '.join(allowed)})")


def _err(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


def _looks_like_host(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", text) is not None
