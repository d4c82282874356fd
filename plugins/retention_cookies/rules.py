"""The rule catalogue: one id, default severity, legal or technical basis and fix hint each.

Kept apart from the checks so every output format (and docs/cookies.md) describes the
same rules, and a finding never carries an id that is not documented here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import Finding

EPRIVACY = "ePrivacy Directive 2002/58/EC Art. 5(3) (consent unless strictly necessary)"
WP194 = "Art. 29 WP Opinion 04/2012 on Cookie Consent Exemption (WP194)"
RFC6265BIS = "RFC 6265bis (draft-ietf-httpbis-rfc6265bis)"


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: its id, default severity, why it matters and how to fix it."""
    id: str
    name: str
    severity: str
    summary: str
    basis: str
    hint: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("CK001", "undeclared", "error",
         "A cookie or storage key was observed that no declaration matches.",
         f"{EPRIVACY}; the policy promises only essential cookies",
         "Declare it in cookies.yaml with its service and exemption basis, or stop setting it."),
    Rule("CK002", "non-essential-declared", "error",
         "A service declared as functional, analytics or marketing while the claim is essential-only.",
         f"{EPRIVACY}; the policy text says the cookies are essential",
         "Remove the service, or change the policy claim and ask for consent before setting it."),
    Rule("CK003", "tracker-declared-essential", "error",
         "A cookie declared strictly necessary is a known analytics or advertising cookie.",
         f"{WP194} §4: analytics and advertising cookies are not strictly necessary",
         "Reclassify it as analytics/marketing (and get consent) or remove the product."),
    Rule("CK004", "lifetime-exceeds-purpose", "error",
         "A strictly necessary cookie lives longer than its exemption basis allows.",
         f"{WP194} §3: authentication, user-input, load-balancing, media-player and social-plugin "
         "cookies are exempt as session cookies",
         "Make it a session cookie (no Expires/Max-Age)."),
    Rule("CK005", "lifetime-mismatch", "error",
         "The observed expiry differs from the declared lifetime (longer, or session vs persistent).",
         "The declaration is what the cookie notice tells visitors; it must match reality",
         "Fix the Expires/Max-Age the server or script sets, or correct the declaration."),
    Rule("CK006", "third-party-essential", "error",
         "A cookie declared strictly necessary is set on a third-party (other registrable) domain.",
         f"{WP194} §4: third-party cookies are usually not strictly necessary to the service requested",
         "Serve it from a first-party domain, or reclassify it and ask for consent."),
    Rule("CK007", "mixed-purpose", "error",
         "A cookie declared strictly necessary also serves a purpose that is not exempt.",
         f"{WP194} §4: a multi-purpose cookie is exempt only if every purpose is",
         "Split it into an essential cookie and a consented one, or drop the extra purpose."),
    Rule("CK008", "missing-secure", "warning",
         "A cookie set over HTTPS without the Secure attribute.",
         f"{RFC6265BIS} §8.6; GDPR Art. 32 (security of processing)",
         "Add Secure so the cookie is never sent over plain HTTP."),
    Rule("CK009", "samesite-none-insecure", "error",
         "SameSite=None without Secure: browsers reject the cookie.",
         f"{RFC6265BIS} §5.7 (a SameSite=None cookie must be Secure)",
         "Add Secure, or use SameSite=Lax."),
    Rule("CK010", "httponly-missing", "warning",
         "An authentication or session cookie readable by JavaScript (no HttpOnly).",
         f"{RFC6265BIS} §8.7; OWASP Session Management Cheat Sheet",
         "Add HttpOnly so an XSS cannot steal the session."),
    Rule("CK011", "prefix-violation", "error",
         "A __Host- or __Secure- cookie that breaks its prefix rules (browsers reject it).",
         f"{RFC6265BIS} §4.1.3 (__Secure-: Secure; __Host-: Secure, no Domain, Path=/)",
         "Set Secure (and for __Host-: Path=/ and no Domain), or rename the cookie."),
    Rule("CK012", "expiry-over-400-days", "warning",
         "An expiry more than 400 days away (browsers cap it at 400 days).",
         f"{RFC6265BIS} §5.5 (user agents limit cookie lifetime to 400 days)",
         "Use a shorter expiry; a long-lived cookie is also hard to justify as essential."),
    Rule("CK013", "attribute-mismatch", "warning",
         "An observed attribute (Secure, HttpOnly, SameSite) differs from the declared one.",
         "The declaration documents the security properties the service relies on",
         "Fix the attribute where the cookie is set, or correct the declaration."),
    Rule("CK014", "stale-declaration", "info",
         "A declared cookie was never observed.",
         "A cookie notice listing cookies that do not exist misleads visitors",
         "Remove the declaration if the cookie is gone, or exercise the page that sets it."),
    Rule("CK015", "parse-anomaly", "warning",
         "A Set-Cookie line a browser would ignore or repair.",
         f"{RFC6265BIS} §5.6 (parsing algorithm)",
         "Fix the header where it is produced."),
    Rule("CK016", "har-sanitized", "error",
         "The HAR file has no cookie data: it was exported sanitized, so nothing can be proven.",
         "Chrome and Firefox strip Cookie/Set-Cookie from HAR exports by default",
         "Re-export with sensitive data (DevTools: 'Export HAR (with sensitive data)'), or use --url."),
    Rule("CK017", "exemption-unreviewed", "error",
         "A strictly necessary service whose exemption basis has not been reviewed (imported).",
         f"{WP194}: the exemption has to be argued per cookie",
         "Set basis to one of the WP194 cases and write a justification."),
    Rule("CK018", "set-before-consent", "error",
         "Before consent, or after the visitor rejected, a cookie or storage key of a service that "
         "needs consent (or of a known tracker) was set, even if it was deleted again.",
         f"{EPRIVACY}; EDPB Guidelines 05/2020 on consent §86: consent must come before the processing",
         "Load the service only after the visitor accepted (block its script until consent)."),
    Rule("CK019", "request-before-consent", "error",
         "Before consent, or after the visitor rejected, the page contacted an endpoint of a service "
         "that needs consent, or a known tracker or beacon.",
         f"{EPRIVACY} (reading or storing on the device, incl. fingerprinting requests); "
         "EDPB Guidelines 2/2023 on the technical scope of Art. 5(3)",
         "Do not load the script, pixel or beacon until the visitor accepted; declare the endpoint of "
         "an exempt service under its `endpoints`."),
    Rule("CK020", "har-blind-to-scripts", "info",
         "A HAR shows only cookies sent in headers: cookies written by scripts and never sent, and web "
         "storage, cannot be seen.",
         "HAR 1.2 records HTTP messages only",
         "Also check with --url (a browser visit sees script cookies and storage)."),
)}


def finding(rule_id: str, subject: str, message: str, *, severity: str | None = None,
            evidence: str = "", file: str | None = None, line: int | None = None,
            **extra: Any) -> Finding:
    """A Finding carrying its rule's basis and hint."""
    rule = RULES[rule_id]
    return Finding(rule=rule_id, severity=severity or rule.severity, subject=subject,
                   message=message, evidence=evidence, basis=rule.basis, hint=rule.hint,
                   file=file, line=line, extra=dict(extra))
