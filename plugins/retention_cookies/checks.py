"""The checks: compare declarations with observations and the knowledge base.

A pure function of its arguments (no I/O, no clock reads), so every rule is tested
without a browser. Rules and their legal or technical basis live in ``rules.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .declarations import BASES, NON_EXEMPT_PURPOSES, UNREVIEWED, CookieDecl, Declarations, Service
from .domains import is_first_party
from .knowledge import Fact, KnowledgeBase
from .model import SEVERITIES, Finding, Observation, Request, format_lifetime
from .rules import finding

MAX_LIFETIME = timedelta(days=400)
#: Clock skew and rounding between when a cookie was set and when it was read.
TOLERANCE = timedelta(minutes=5)
_SESSIONISH = re.compile(r"sess|^sid$|_sid$|auth|login|jsessionid|phpsessid", re.I)
#: Suffixes tried on a known prefix (``_ga_``) to see whether a declared regex covers it.
_PROBE_TAILS = ("x", "X", "1", "ABC123", "G-ABC123", "_1", "x.y")
_NOT_SESSION = re.compile(r"csrf|xsrf|consent", re.I)
#: Scenarios in which nothing that needs consent may happen.
NO_CONSENT = ("before-consent", "after-reject")


@dataclass(frozen=True, slots=True)
class CheckInput:
    """Everything the checks look at."""

    declarations: Declarations
    observations: tuple[Observation, ...]
    knowledge: KnowledgeBase
    extra_first_party: tuple[str, ...] = ()  # e.g. the host of --url
    storages_observed: frozenset[str] = frozenset()  # which storages the inputs could see
    requests: tuple[Request, ...] = ()  # with third_party and tracker filled by classify_requests


def run_checks(data: CheckInput) -> list[Finding]:
    """All findings, most severe first, without duplicates."""
    decls = data.declarations
    first_party = decls.first_party_domains + data.extra_first_party
    findings: list[Finding] = []
    for service in decls.services:
        findings += _check_service(service, decls, data.knowledge, first_party)
    seen: dict[str, int] = {}
    for obs in data.observations:
        matches = [(s, c) for s, c in decls.find(obs.name, obs.storage) if _scope_matches(c, obs)]
        for _, cookie in matches[:1]:
            seen[cookie.key] = seen.get(cookie.key, 0) + 1
        findings += _check_observation(obs, matches, decls, data.knowledge, first_party)
        findings += _check_consent(obs, matches, decls, data.knowledge)
    for request in data.requests:  # classified by classify_requests
        findings += _check_request(request, decls)
    for service, cookie in decls.cookies():
        if cookie.key not in seen and cookie.storage in data.storages_observed:
            findings.append(finding(
                "CK014", _decl_subject(cookie), f"declared {cookie.storage} {cookie.name!r} "
                f"({cookie.match}) of service {service.name!r} was never observed",
                evidence=f"{len(data.observations)} observation(s) from the given inputs",
                file=decls.file, line=cookie.line))
    return dedupe(findings)


# --------------------------------------------------------------------------------------
# Declarations alone
# --------------------------------------------------------------------------------------


def _check_service(service: Service, decls: Declarations, kb: KnowledgeBase,
                   first_party: tuple[str, ...]) -> list[Finding]:
    out: list[Finding] = []
    file = decls.file
    if decls.claim == "essential-only" and (not service.essential or service.needs_consent):
        what = service.category if not service.essential else "consent-required"
        out.append(finding(
            "CK002", f"service {service.name}", f"service {service.name!r} is declared {what}, "
            "but the policy claims every cookie is essential", evidence=f"{service.key}.category",
            file=file, line=service.line))
    if service.essential and service.basis == UNREVIEWED:
        out.append(finding("CK017", f"service {service.name}",
                           f"service {service.name!r} has basis 'unreviewed' (written by an importer)",
                           evidence=f"{service.key}.basis", file=file, line=service.line))
    if not service.essential:
        return out
    for cookie in service.cookies:
        subject = _decl_subject(cookie)
        for fact in _declared_facts(cookie, kb):
            out.append(finding(
                "CK003", subject, f"{cookie.name!r} is declared strictly necessary but is a known "
                f"{fact.category} cookie of {fact.product}", evidence=fact.describe(),
                file=file, line=cookie.line))
        bad = [p for p in cookie.purposes if p in NON_EXEMPT_PURPOSES]
        if bad:
            several = len(cookie.purposes) > 1
            out.append(finding(
                "CK007", subject,
                (f"{cookie.name!r} serves {len(cookie.purposes)} purposes ({', '.join(cookie.purposes)}); "
                 if several else f"{cookie.name!r} serves ") + f"{', '.join(bad)}, which is not exempt",
                evidence=f"{cookie.key}.purposes", file=file, line=cookie.line))
        limit = BASES.get(service.basis or "")
        if limit == "session" and (cookie.lifetime is not None or cookie.storage == "localStorage"):
            lifetime = cookie.lifetime_text if cookie.storage == "cookie" else "no expiry (localStorage)"
            out.append(finding(
                "CK004", subject, f"basis {service.basis} is exempt only for session storage, but "
                f"{cookie.name!r} is declared with lifetime {lifetime}",
                evidence=f"{cookie.key}.lifetime", file=file, line=cookie.line))
        if service.third_party or (cookie.domain and not is_first_party(cookie.domain, first_party)):
            where = cookie.domain or "a third-party service"
            out.append(finding(
                "CK006", subject, f"{cookie.name!r} is declared strictly necessary on {where}, "
                f"outside the first-party domains ({', '.join(first_party) or 'none declared'})",
                evidence=f"{cookie.key}.domain", file=file, line=cookie.line))
        max_life = cookie.max_lifetime()
        if max_life is not None and max_life > MAX_LIFETIME:
            out.append(finding("CK012", subject, f"declared lifetime {cookie.lifetime_text} exceeds 400 days",
                               evidence=f"{cookie.key}.lifetime", file=file, line=cookie.line))
        if cookie.same_site == "None" and cookie.secure is False:
            out.append(finding("CK009", subject, "declared SameSite=None with secure: false",
                               evidence=f"{cookie.key}.attributes", file=file, line=cookie.line))
        if cookie.match == "exact" and _prefix(cookie.name) and cookie.secure is False:
            out.append(finding("CK011", subject, f"{cookie.name!r} has a {_prefix(cookie.name)} prefix "
                               "but is declared with secure: false", evidence=f"{cookie.key}.attributes",
                               file=file, line=cookie.line))
        if service.basis == "authentication" and cookie.storage == "cookie" and cookie.http_only is False:
            out.append(finding("CK010", subject, f"authentication cookie {cookie.name!r} is declared "
                               "with http_only: false", evidence=f"{cookie.key}.attributes",
                               file=file, line=cookie.line))
    return out


def _declared_facts(cookie: CookieDecl, kb: KnowledgeBase) -> list[Fact]:
    """Known trackers a declaration covers, whether it names them exactly or by pattern."""
    storage = cookie.storage
    hits = []
    for fact in kb.facts:
        if fact.storage != "any" and fact.storage != storage:
            continue
        if cookie.match == "exact":
            hit = fact.matches(cookie.name, storage)
        elif cookie.match == "prefix":
            hit = (fact.matches(cookie.name, storage)
                   or (fact.match in ("exact", "prefix") and fact.name.startswith(cookie.name))
                   or (fact.match == "prefix" and cookie.name.startswith(fact.name)))
        else:
            probes = [fact.name + tail for tail in _PROBE_TAILS] if fact.match == "prefix" else [fact.name]
            hit = fact.match != "regex" and any(re.fullmatch(cookie.name, p) for p in probes)
        if hit:
            hits.append(fact)
    return hits


# --------------------------------------------------------------------------------------
# One observation
# --------------------------------------------------------------------------------------


def _check_observation(obs: Observation, matches: list[tuple[Service, CookieDecl]],
                       decls: Declarations, kb: KnowledgeBase,
                       first_party: tuple[str, ...]) -> list[Finding]:
    out: list[Finding] = []
    subject = _obs_subject(obs)
    evidence = _evidence(obs)
    facts = kb.lookup(obs.name, obs.storage)
    if not matches:
        known = f"; it is a known {facts[0].category} cookie of {facts[0].product}" if facts else ""
        out.append(finding("CK001", subject, f"{obs.storage} {obs.name!r} is not declared{known}",
                           evidence=evidence + (f"; {facts[0].describe()}" if facts else ""),
                           file=_obs_file(obs, decls)))
    else:
        service, cookie = matches[0]
        where: dict[str, Any] = {"file": decls.file, "line": cookie.line}
        if service.essential:
            for fact in facts:
                out.append(finding("CK003", subject, f"{obs.name!r} matches strictly necessary declaration "
                                   f"{cookie.key} but is a known {fact.category} cookie of {fact.product}",
                                   evidence=f"{evidence}; {fact.describe()}", **where))
            if obs.domain and not is_first_party(obs.domain, first_party):
                out.append(finding("CK006", subject, f"{obs.name!r} (strictly necessary, {cookie.key}) is "
                                   f"set on third-party domain {obs.domain}", evidence=evidence, **where))
            limit = BASES.get(service.basis or "")
            if (limit == "session" and obs.storage == "cookie" and obs.attributes_known
                    and obs.lifetime is not None and obs.lifetime > TOLERANCE):
                out.append(finding("CK004", subject, f"basis {service.basis} is exempt only for session "
                                   f"cookies, but {obs.name!r} expires in {format_lifetime(obs.lifetime)}",
                                   evidence=evidence, **where))
        if obs.storage == "cookie" and obs.attributes_known:
            out += _lifetime_mismatch(obs, cookie, subject, evidence, where)
            out += _attribute_mismatch(obs, cookie, subject, evidence, where)
        if (service.basis == "authentication" and obs.storage == "cookie" and obs.attributes_known
                and not obs.http_only and cookie.http_only is not False):
            out.append(finding("CK010", subject, f"authentication cookie {obs.name!r} has no HttpOnly",
                               evidence=evidence, **where))
    if obs.storage == "cookie" and obs.attributes_known:
        out += _attribute_rules(obs, subject, evidence, decls, matches)
    return out


def _lifetime_mismatch(obs: Observation, cookie: CookieDecl, subject: str, evidence: str,
                       where: dict[str, Any]) -> list[Finding]:
    observed = format_lifetime(obs.lifetime)
    if obs.lifetime is not None and obs.lifetime <= timedelta(0):
        return []  # a deletion (Max-Age=0 / past Expires) stores nothing
    if cookie.session and obs.lifetime is not None:
        return [finding("CK005", subject, f"{obs.name!r} is declared session but is persistent "
                        f"(expires in {observed})", evidence=evidence, **where)]
    if not cookie.session and obs.lifetime is None:
        return [finding("CK005", subject, f"{obs.name!r} is declared {cookie.lifetime_text} but is a "
                        "session cookie", severity="warning", evidence=evidence, **where)]
    limit = cookie.max_lifetime()
    if limit is not None and obs.lifetime is not None and obs.lifetime > limit + TOLERANCE:
        return [finding("CK005", subject, f"{obs.name!r} expires in {observed}, longer than the declared "
                        f"maximum {cookie.lifetime_text}", evidence=evidence, **where)]
    return []


def _attribute_mismatch(obs: Observation, cookie: CookieDecl, subject: str, evidence: str,
                        where: dict[str, Any]) -> list[Finding]:
    out = []
    for label, declared, observed in (("Secure", cookie.secure, obs.secure),
                                      ("HttpOnly", cookie.http_only, obs.http_only)):
        if declared is not None and declared != observed:
            out.append(finding("CK013", subject, f"{obs.name!r}: {label} declared {str(declared).lower()}, "
                               f"observed {str(observed).lower()}", evidence=evidence, **where))
    if cookie.same_site is not None and cookie.same_site != obs.same_site:
        seen = obs.same_site or "not set (browsers default to Lax)"
        out.append(finding("CK013", subject, f"{obs.name!r}: SameSite declared {cookie.same_site}, "
                           f"observed {seen}", evidence=evidence, **where))
    return out


def _attribute_rules(obs: Observation, subject: str, evidence: str, decls: Declarations,
                     matches: list[tuple[Service, CookieDecl]]) -> list[Finding]:
    """Rules every cookie must follow, declared or not."""
    out = []
    where: dict[str, Any] = ({"file": decls.file, "line": matches[0][1].line} if matches
                             else {"file": _obs_file(obs, decls)})
    if obs.https and not obs.secure:
        out.append(finding("CK008", subject, f"{obs.name!r} was set over HTTPS without Secure",
                           evidence=evidence, **where))
    if obs.same_site == "None" and not obs.secure:
        out.append(finding("CK009", subject, f"{obs.name!r} has SameSite=None without Secure",
                           evidence=evidence, **where))
    prefix = _prefix(obs.name)
    if prefix:
        broken = []
        if not obs.secure:
            broken.append("no Secure")
        if not obs.https:
            broken.append("set from an insecure origin")
        if prefix == "__Host-" and not obs.host_only:
            broken.append(f"Domain={obs.domain}")
        if prefix == "__Host-" and obs.path not in (None, "/"):
            broken.append(f"Path={obs.path}")
        if broken:
            out.append(finding("CK011", subject, f"{obs.name!r} breaks the {prefix} prefix rules: "
                               f"{', '.join(broken)}", evidence=evidence, **where))
    if obs.lifetime is not None and obs.lifetime > MAX_LIFETIME + TOLERANCE:
        out.append(finding("CK012", subject, f"{obs.name!r} expires in {format_lifetime(obs.lifetime)} "
                           "(over 400 days)", evidence=evidence, **where))
    if (not matches and not obs.http_only and _SESSIONISH.search(obs.name)
            and not _NOT_SESSION.search(obs.name)):
        out.append(finding("CK010", subject, f"{obs.name!r} looks like a session cookie but has no HttpOnly",
                           evidence=evidence, **where))
    return out


# --------------------------------------------------------------------------------------
# Consent scenarios and requests
# --------------------------------------------------------------------------------------


def _check_consent(obs: Observation, matches: list[tuple[Service, CookieDecl]], decls: Declarations,
                   kb: KnowledgeBase) -> list[Finding]:
    """CK018: before consent and after a rejection nothing that needs consent may be set or
    stored, not even for a moment (a cookie deleted again was still written to the device)."""
    if obs.scenario not in NO_CONSENT or obs.state == "rejected":
        return []
    if matches:
        service, cookie = matches[0]
        if not service.needs_consent:
            return []
        why = f"service {service.name!r} needs consent ({cookie.key})"
        where: dict[str, Any] = {"file": decls.file, "line": cookie.line}
    else:
        facts = kb.lookup(obs.name, obs.storage)
        if not facts:
            return []  # CK001 already reports it; nothing says it needs consent
        why = f"it is a known {facts[0].category} cookie of {facts[0].product}"
        where = {"file": _obs_file(obs, decls)}
    done = "set and deleted again" if obs.state == "deleted" else "set"
    message = f"{obs.storage} {obs.name!r} was {done} in scenario {obs.scenario}, but {why}"
    return [finding("CK018", _obs_subject(obs), message, evidence=_evidence(obs), **where)]


def classify_requests(requests: Iterable[Request], first_party: tuple[str, ...],
                      kb: KnowledgeBase) -> list[Request]:
    """Requests with their first/third-party status and the tracker they go to, if known."""
    from urllib.parse import urlsplit

    out = []
    for request in requests:
        host = urlsplit(request.url).hostname or ""
        known = kb.endpoint(request.url)
        out.append(replace(request, third_party=bool(host) and not is_first_party(host, first_party),
                           tracker=known.describe() if known else ""))
    return out


def _check_request(request: Request, decls: Declarations) -> list[Finding]:
    """CK019: a consent-required service's endpoint (or a known tracker that no exempt
    service claims) contacted before consent or after a rejection."""
    if request.scenario not in NO_CONSENT:
        return []
    service = decls.service_of(request.url)
    if service is not None and not service.needs_consent:
        return []
    if service is None and not request.tracker:
        return []
    why = f"service {service.name!r} needs consent" if service else request.tracker
    where: dict[str, Any] = {"file": decls.file, "line": service.line} if service else {"file": decls.file}
    target = request.url.split("?", 1)[0]
    initiator = f"; initiator {request.initiator}" if request.initiator else ""
    message = f"{request.method} {target} was requested in scenario {request.scenario}: {why}"
    party = "third" if request.third_party else "first"
    evidence = f"{request.resource_type or 'request'} {request.url[:300]}{initiator}; {party} party"
    return [finding("CK019", f"request {target}", message, evidence=evidence, **where)]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _scope_matches(cookie: CookieDecl, obs: Observation) -> bool:
    """A declaration with a domain or path only covers cookies in that scope."""
    if cookie.domain and obs.domain:
        d = obs.domain.lower().lstrip(".")
        if d != cookie.domain and not d.endswith("." + cookie.domain):
            return False
    if cookie.path and obs.path and obs.attributes_known and obs.path != cookie.path:
        return False
    return True


def _prefix(name: str) -> str | None:
    lower = name.lower()
    if lower.startswith("__host-"):
        return "__Host-"
    if lower.startswith("__secure-"):
        return "__Secure-"
    return None


def _decl_subject(cookie: CookieDecl) -> str:
    return f"{cookie.storage} {cookie.name}" + (f" ({cookie.domain})" if cookie.domain else "")


def _obs_subject(obs: Observation) -> str:
    return f"{obs.storage} {obs.name or '(nameless)'}" + (f" ({obs.domain})" if obs.domain else "")


def _obs_file(obs: Observation, decls: Declarations) -> str:
    kind, _, path = obs.source.partition(":")
    return path if kind in ("har", "set-cookie") and path else decls.file


def _evidence(obs: Observation) -> str:
    parts = [obs.set_by or obs.source]
    if obs.scenario:
        parts.append(f"scenario: {obs.scenario}")
    if obs.state != "stored" or obs.reason:
        parts.append(f"{obs.state}" + (f" ({obs.reason})" if obs.reason else ""))
    if obs.partitioned:
        parts.append(f"Partitioned (CHIPS, jar of {obs.partition or 'the top-level site'})")
    if obs.storage == "cookie" and obs.attributes_known:
        attrs = [f"lifetime {format_lifetime(obs.lifetime)}"]
        attrs += [a for a, on in (("Secure", obs.secure), ("HttpOnly", obs.http_only)) if on]
        if obs.same_site:
            attrs.append(f"SameSite={obs.same_site}")
        if not obs.host_only:
            attrs.append(f"Domain={obs.domain}")
        parts.append(", ".join(attrs))
    if obs.raw:
        parts.append(f"raw: {obs.raw[:200]}")
    return "; ".join(parts)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """The same finding from many sightings is reported once; most severe first."""
    unique: dict[tuple[str, str, str], Finding] = {}
    for f in findings:
        unique.setdefault((f.rule, f.subject, f.message), f)
    return sorted(unique.values(), key=lambda f: (SEVERITIES.index(f.severity), f.rule, f.subject))


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any error-level finding, else 0."""
    return 1 if any(f.severity == "error" for f in findings) else 0
