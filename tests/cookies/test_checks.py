"""Each rule fires on the case it is for, and stays quiet on the compliant twin."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from retention_cookies.checks import CheckInput, exit_code, run_checks
from retention_cookies.declarations import load_declarations, parse_declarations
from retention_cookies.knowledge import Fact, KnowledgeBase, builtin
from retention_cookies.model import Observation

pytest.importorskip("tldextract")

BASE = """
version: 1
claim: essential-only
first_party_domains: [contact.example.com]
services:
  - name: app
    category: strictly_necessary
    basis: authentication
    justification: keeps users signed in
    cookies:
      - {name: __Host-session, lifetime: session, attributes: {secure: true, http_only: true, same_site: Lax}}
  - name: consent
    category: strictly_necessary
    basis: consent_record
    justification: remembers the answer to the cookie notice
    cookies:
      - {name: cookie_consent, lifetime: 6mo, attributes: {secure: true, http_only: false}}
"""

GOOD_SESSION = Observation(name="__Host-session", domain="app.contact.example.com", path="/", secure=True,
                           http_only=True, same_site="Lax", set_by="test")
GOOD_CONSENT = Observation(name="cookie_consent", domain="app.contact.example.com", path="/", secure=True,
                           same_site="Lax", lifetime=timedelta(days=30), set_by="test")


def check(yaml_text: str = BASE, *observations: Observation, storages: set[str] | None = None,
          knowledge: KnowledgeBase | None = None) -> list[Any]:
    decls = parse_declarations(yaml.safe_load(yaml_text), file="cookies.yaml")
    return run_checks(CheckInput(decls, tuple(observations), knowledge or builtin(),
                                 storages_observed=frozenset(storages if storages is not None else {"cookie"})))


def rules(findings: list[Any]) -> list[str]:
    return sorted({f.rule for f in findings})


def test_compliant_site_has_no_findings() -> None:
    findings = check(BASE, GOOD_SESSION, GOOD_CONSENT)
    assert findings == []
    assert exit_code(findings) == 0


def test_undeclared_cookie_and_storage_key() -> None:
    findings = check(BASE, GOOD_SESSION, GOOD_CONSENT,
                     Observation(name="_ga", domain="contact.example.com", secure=True, lifetime=timedelta(days=300)),
                     Observation(name="draft", storage="localStorage", domain="app.contact.example.com"),
                     storages={"cookie", "localStorage"})
    ck001 = [f for f in findings if f.rule == "CK001"]
    assert {f.subject for f in ck001} == {"cookie _ga (contact.example.com)",
                                          "localStorage draft (app.contact.example.com)"}
    assert any("Google Analytics" in f.message for f in ck001)
    assert exit_code(findings) == 1


def test_declared_non_essential_service_while_claim_is_essential_only() -> None:
    text = BASE + """
  - name: ga
    category: analytics
    cookies: [{name: _ga, lifetime: 13mo}]
"""
    findings = check(text, GOOD_SESSION, GOOD_CONSENT)
    assert rules(findings) == ["CK002", "CK014"]
    assert rules(check(text.replace("claim: essential-only", "claim: none"), GOOD_SESSION, GOOD_CONSENT)) == ["CK014"]


def test_tracker_declared_essential_by_exact_name_prefix_or_regex() -> None:
    for entry in ("{name: _ga, lifetime: session}", "{name: _g, match: prefix, lifetime: session}",
                  "{name: '_ga_[A-Z0-9]+', match: regex, lifetime: session}",
                  "{name: _hjSessionUser_1, lifetime: session}"):
        text = BASE.replace("{name: __Host-session,", entry + "\n      - {name: __Host-session,")
        assert "CK003" in rules(check(text)), entry


def test_tracker_observed_under_a_broad_essential_pattern() -> None:
    text = BASE.replace("{name: __Host-session,",
                        "{name: '.*', match: regex, lifetime: session}\n      - {name: __Host-session,")
    findings = check(text, GOOD_SESSION, Observation(name="_fbp", domain="contact.example.com", secure=True,
                                                     http_only=True, same_site="Lax"))
    assert any(f.rule == "CK003" and "Meta Pixel" in f.message for f in findings)


def test_session_only_basis_with_persistent_lifetime() -> None:
    text = BASE.replace("{name: __Host-session, lifetime: session,", "{name: __Host-session, lifetime: 30d,")
    assert "CK004" in rules(check(text))
    # Declared session, observed persistent: both the exemption and the declaration are broken.
    persistent = Observation(**{**_fields(GOOD_SESSION), "lifetime": timedelta(days=30)})
    assert {"CK004", "CK005"} <= set(rules(check(BASE, persistent, GOOD_CONSENT)))


def test_observed_expiry_longer_than_declared_or_session_mismatch() -> None:
    too_long = Observation(**{**_fields(GOOD_CONSENT), "lifetime": timedelta(days=365)})
    findings = check(BASE, GOOD_SESSION, too_long)
    assert [f.rule for f in findings] == ["CK005"] and "6mo" in findings[0].message
    session_instead = Observation(**{**_fields(GOOD_CONSENT), "lifetime": None})
    findings = check(BASE, GOOD_SESSION, session_instead)
    assert [(f.rule, f.severity) for f in findings] == [("CK005", "warning")]
    within = Observation(**{**_fields(GOOD_CONSENT), "lifetime": timedelta(days=180)})
    assert check(BASE, GOOD_SESSION, within) == []


def test_third_party_cookie_declared_essential() -> None:
    declared_foreign = BASE.replace("- {name: cookie_consent,", "- {name: cookie_consent, domain: consent-vendor.io,")
    assert "CK006" in rules(check(declared_foreign))
    foreign = Observation(**{**_fields(GOOD_CONSENT), "domain": "consent-vendor.io"})
    assert "CK006" in rules(check(BASE, GOOD_SESSION, foreign))
    sibling = Observation(**{**_fields(GOOD_CONSENT), "domain": "www.contact.example.com"})
    assert check(BASE, GOOD_SESSION, sibling) == []


def test_multi_purpose_cookie_with_a_non_exempt_purpose() -> None:
    text = BASE.replace("{name: __Host-session, lifetime: session,",
                        "{name: __Host-session, purposes: [authentication, analytics], lifetime: session,")
    findings = [f for f in check(text) if f.rule == "CK007"]
    assert len(findings) == 1 and "analytics" in findings[0].message
    exempt_only = BASE.replace("{name: __Host-session, lifetime: session,",
                               "{name: __Host-session, purposes: [authentication, security], lifetime: session,")
    assert "CK007" not in rules(check(exempt_only))


def test_secure_samesite_httponly_and_prefix_rules() -> None:
    text = BASE + """
  - name: lb
    category: strictly_necessary
    basis: load_balancing
    justification: sticky sessions
    cookies: [{name: lb, lifetime: session}, {name: __Secure-x, lifetime: session}]
"""
    insecure = Observation(name="lb", domain="contact.example.com", same_site="None", http_only=True)
    broken_host = Observation(**{**_fields(GOOD_SESSION), "host_only": False, "domain": "contact.example.com"})
    no_secure = Observation(name="__Secure-x", domain="contact.example.com", http_only=True)
    readable = Observation(**{**_fields(GOOD_SESSION), "http_only": False})
    findings = check(text, insecure, broken_host, no_secure, GOOD_CONSENT)
    got = {(f.rule, f.subject.split()[1]) for f in findings}
    assert {("CK008", "lb"), ("CK009", "lb"), ("CK011", "__Host-session"), ("CK011", "__Secure-x")} <= got
    assert any(f.rule == "CK010" for f in check(text, readable))
    # Plain HTTP (a local test server) is not "HTTPS without Secure".
    local = Observation(name="lb", domain="contact.example.com", http_only=True, https=False)
    assert "CK008" not in rules(check(text, local))


def test_undeclared_session_cookie_without_httponly() -> None:
    php = Observation(name="PHPSESSID", domain="contact.example.com", secure=True)
    findings = check(BASE, GOOD_SESSION, GOOD_CONSENT, php)
    assert {"CK001", "CK010"} <= set(rules(findings))


def test_expiry_over_400_days() -> None:
    text = BASE.replace("lifetime: 6mo", "lifetime: 2y")
    assert "CK012" in rules(check(text))
    old = Observation(**{**_fields(GOOD_CONSENT), "lifetime": timedelta(days=401)})
    assert "CK012" in rules(check(text, GOOD_SESSION, old))


def test_attribute_mismatch_with_the_declaration() -> None:
    lax_missing = Observation(**{**_fields(GOOD_SESSION), "same_site": None})
    findings = check(BASE, lax_missing, GOOD_CONSENT)
    assert [f.rule for f in findings] == ["CK013"] and "SameSite declared Lax" in findings[0].message


def test_stale_declaration_only_for_storages_the_inputs_could_see() -> None:
    findings = check(BASE, GOOD_SESSION)
    assert [(f.rule, f.severity, f.subject) for f in findings] == [("CK014", "info", "cookie cookie_consent")]
    assert exit_code(findings) == 0
    assert check(BASE, storages=set()) == []


def test_unreviewed_basis_fails() -> None:
    text = BASE.replace("basis: consent_record", "basis: unreviewed")
    assert rules(check(text, GOOD_SESSION, GOOD_CONSENT)) == ["CK017"]


def test_names_only_sightings_skip_attribute_rules() -> None:
    seen = Observation(name="__Host-session", domain="app.contact.example.com", attributes_known=False)
    assert check(BASE, seen, GOOD_CONSENT) == []


def test_extra_knowledge_is_used() -> None:
    extra = builtin().extended([Fact("cookie_consent", "exact", "marketing", "Example", "Vendor", "test")])
    assert "CK003" in rules(check(BASE, GOOD_SESSION, GOOD_CONSENT, knowledge=extra))


def test_findings_point_at_the_declaration_line(tmp_path: Path) -> None:
    path = tmp_path / "cookies.yaml"
    path.write_text(BASE.replace("lifetime: 6mo", "lifetime: 2y"), encoding="utf-8")
    decls = load_declarations(path)
    findings = run_checks(CheckInput(decls, (), builtin()))
    finding = next(f for f in findings if f.rule == "CK012")
    assert finding.file == str(path)
    assert path.read_text().splitlines()[finding.line - 1].strip().startswith("- {name: cookie_consent")


def _fields(obs: Observation) -> dict[str, Any]:
    return {name: getattr(obs, name) for name in obs.__slots__}  # type: ignore[attr-defined]


def test_declared_months_are_measured_at_their_longest() -> None:
    decls = parse_declarations(yaml.safe_load(BASE.replace("lifetime: 6mo", "lifetime: 1mo")), file="c.yaml")
    cookie = next(c for _, c in decls.cookies() if c.name == "cookie_consent")
    longest = cookie.max_lifetime()
    assert longest is not None and timedelta(days=31) <= longest <= timedelta(days=32)
    text = BASE.replace("lifetime: 6mo", "lifetime: 1mo")
    at_31_days = Observation(**{**_fields(GOOD_CONSENT), "lifetime": timedelta(days=31)})
    assert check(text, GOOD_SESSION, at_31_days) == []
    at_33_days = Observation(**{**_fields(GOOD_CONSENT), "lifetime": timedelta(days=33)})
    assert rules(check(text, GOOD_SESSION, at_33_days)) == ["CK005"]
