"""Issue 18 without a browser: consent rules, requests, the tracker list, saved visits, SARIF."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from retention_cookies import refresh_trackers
from retention_cookies.checks import CheckInput, classify_requests, run_checks
from retention_cookies.cli import cookies
from retention_cookies.declarations import endpoint_matches, parse_declarations
from retention_cookies.knowledge import builtin
from retention_cookies.model import Finding, Observation, Request
from retention_cookies.output import fingerprint, render_sarif
from retention_cookies.record import Evidence, save
from retention_cookies.setcookie import parse_set_cookie
from retention_core import ConfigError

pytest.importorskip("tldextract")

CONSENT = """
version: 1
claim: consent
first_party_domains: [shop.example]
services:
  - name: consent-record
    category: strictly_necessary
    basis: consent_record
    justification: remembers the choice
    endpoints: [consent.shop.example]
    cookies:
      - {name: klaro, lifetime: 30d}
  - name: matomo
    category: analytics
    endpoints: [/matomo.php]
    cookies:
      - {name: _pk_id., match: prefix, lifetime: 13mo}
"""


def decls(text: str = CONSENT) -> Any:
    return parse_declarations(yaml.safe_load(text))


def check(observations: tuple[Observation, ...] = (), requests: tuple[Request, ...] = (),
          text: str = CONSENT) -> list[Finding]:
    d = decls(text)
    classified = classify_requests(requests, d.first_party_domains, builtin())
    return run_checks(CheckInput(d, observations, builtin(), requests=tuple(classified)))


def pk(scenario: str, state: str = "stored") -> Observation:
    return Observation(name="_pk_id.1.abc", domain="shop.example", lifetime=timedelta(days=390), secure=True,
                       scenario=scenario, state=state, set_by="script https://shop.example/m.js")


def test_consent_defaults_follow_the_category() -> None:
    services = {s.name: s for s in decls().services}
    assert not services["consent-record"].needs_consent and services["matomo"].needs_consent
    with pytest.raises(ConfigError, match="services\\[1\\].consent: expected one of exempt, consent-required"):
        decls(CONSENT.replace("    endpoints: [/matomo.php]", "    consent: maybe"))
    with pytest.raises(ConfigError, match="services\\[1\\].endpoints"):
        decls(CONSENT.replace("[/matomo.php]", "/matomo.php"))


@pytest.mark.parametrize(("scenario", "state", "fires"), [
    ("before-consent", "stored", True),
    ("before-consent", "deleted", True),  # set and deleted again: still written to the device
    ("after-reject", "stored", True),
    ("after-accept", "stored", False),
    ("before-consent", "rejected", False),  # the browser never stored it
    ("", "stored", False),  # a HAR has no scenario
])
def test_consent_required_cookie_before_consent(scenario: str, state: str, fires: bool) -> None:
    found = [f for f in check((pk(scenario, state),)) if f.rule == "CK018"]
    assert bool(found) is fires
    if found and state == "deleted":
        assert "set and deleted again" in found[0].message


def test_consent_required_storage_key_before_consent() -> None:
    """'Nothing consent-required may be stored': web storage counts like cookies."""
    text = CONSENT + "      - {name: _pk_queue, storage: localStorage}\n"
    queue = Observation(name="_pk_queue", storage="localStorage", domain="shop.example", scenario="after-reject",
                        state="deleted", set_by="script https://shop.example/m.js")
    [found] = [f for f in check((queue,), text=text) if f.rule == "CK018"]
    assert "localStorage '_pk_queue' was set and deleted again in scenario after-reject" in found.message


def test_exempt_cookie_before_consent_is_fine() -> None:
    klaro = Observation(name="klaro", domain="shop.example", lifetime=timedelta(days=30), secure=True,
                        scenario="after-reject")
    assert [f.rule for f in check((klaro,)) if f.rule in ("CK018", "CK001")] == []


def test_undeclared_known_tracker_before_consent_is_ck018_too() -> None:
    fbp = Observation(name="_fbp", domain="shop.example", lifetime=timedelta(days=90), secure=True,
                      scenario="before-consent")
    rules = {f.rule for f in check((fbp,))}
    assert {"CK001", "CK018"} <= rules


def test_requests_before_consent() -> None:
    beacon = Request(url="https://stats.shop.example/matomo.php?rec=1", scenario="before-consent",
                     initiator="https://shop.example/")
    pixel = Request(url="https://www.facebook.com/tr?id=1", scenario="after-reject")
    listed = Request(url="https://cdn.mmtro.com/x.js", scenario="before-consent")  # only in trackers.json
    exempt = Request(url="https://consent.shop.example/api", scenario="before-consent")
    later = Request(url="https://www.facebook.com/tr?id=1", scenario="after-accept")
    found = {f.subject: f for f in check(requests=(beacon, pixel, listed, exempt, later)) if f.rule == "CK019"}
    assert set(found) == {"request https://stats.shop.example/matomo.php", "request https://www.facebook.com/tr",
                          "request https://cdn.mmtro.com/x.js"}
    assert "service 'matomo' needs consent" in found["request https://stats.shop.example/matomo.php"].message
    assert "Meta Pixel" in found["request https://www.facebook.com/tr"].message
    assert "CC-BY-SA-4.0" in found["request https://cdn.mmtro.com/x.js"].message


def test_requests_are_classified_first_or_third_party() -> None:
    first, third = classify_requests((Request(url="https://www.shop.example.com/a.js"),
                                      Request(url="https://www.google-analytics.com/g/collect")),
                                     ("shop.example.com",), builtin())
    assert not first.third_party and not first.tracker
    assert third.third_party and "Google Analytics" in third.tracker


def test_endpoint_syntax() -> None:
    assert endpoint_matches("example.com", "https://a.example.com:8443/x")
    assert not endpoint_matches("example.com", "https://notexample.com/")
    assert endpoint_matches("/matomo.php", "https://x.example/matomo.php?x=1")
    assert not endpoint_matches("/matomo.php", "https://x.example/matomo.phpx")
    assert endpoint_matches("https://www.facebook.com/tr", "https://www.facebook.com/tr?id=1")


def test_shipped_tracker_list_carries_its_licence_and_source() -> None:
    data = json.loads((Path(refresh_trackers.__file__).with_name("trackers.json")).read_text())
    assert data["license"] == "CC-BY-SA-4.0" and "companiesdb" in data["source"] and data["updated"]
    assert len(data["domains"]) > 1000
    assert {v[2] for v in data["domains"].values()} == {"marketing", "analytics"}


def test_refresh_keeps_only_categories_that_need_consent() -> None:
    source = {"timeUpdated": "2026-01-01", "categories": {"4": "advertising", "5": "essential", "6": "site_analytics"},
              "trackers": {"ads": {"name": "Ads", "categoryId": 4, "companyId": "adco"},
                           "cdn": {"name": "CDN", "categoryId": 5, "companyId": "cdnco"},
                           "stats": {"name": "Stats", "categoryId": 6}},
              "trackerDomains": {"ads.example": "ads", "cdn.example": "cdn", "Stats.example": "stats"}}
    subset = refresh_trackers.convert(source, "abc")
    assert subset["domains"] == {"ads.example": ["Ads", "adco", "marketing", "advertising"],
                                 "stats.example": ["Stats", "", "analytics", "site_analytics"]}
    assert json.loads(refresh_trackers.dump(subset)) == subset


def test_comma_folded_set_cookie_names_the_hidden_cookie() -> None:
    """Issue 18 observation 6 (the parser's part): Expires' own comma is not a fold."""
    [anomaly] = parse_set_cookie("uid=1, _fbc=fb.1.1700000000.AbC; Path=/").anomalies
    assert anomaly.kind == "comma-folded" and "'_fbc'" in anomaly.message
    assert parse_set_cookie("a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/").anomalies == []


def test_sarif_fingerprints_are_stable_and_no_placeholder_url() -> None:
    a = Finding("CK005", "error", "cookie x (a.example)", "'x' expires in 399 days, longer than 30d", file="c.yaml")
    b = Finding("CK005", "error", "cookie x (a.example)", "'x' expires in 400 days, longer than 30d", file="c.yaml")
    other = Finding("CK005", "error", "cookie y (a.example)", "'y' expires in 399 days, longer than 30d")
    assert fingerprint(a) == fingerprint(b) != fingerprint(other)
    sarif = json.loads(render_sarif([a], default_file="c.yaml"))
    driver = sarif["runs"][0]["tool"]["driver"]
    assert "retention/retention" not in json.dumps(driver)  # the old placeholder URL
    assert sarif["runs"][0]["results"][0]["partialFingerprints"] == {"retentionCookieFinding/v1": fingerprint(a)}


def test_saved_observations_are_judged_again(tmp_path: Path) -> None:
    decl = tmp_path / "cookies.yaml"
    decl.write_text(CONSENT)
    evidence = Evidence(observations=[pk("before-consent", "deleted")], inputs=["browser https://shop.example/"],
                        storages={"cookie"}, first_party_hosts=["shop.example"],
                        requests=[Request(url="https://shop.example/matomo.php", scenario="before-consent")],
                        visits=[{"url": "https://shop.example/", "browser": "Chrome/1", "settle_seconds": 2}])
    saved = tmp_path / "visit.json"
    save(evidence, saved)
    result = CliRunner().invoke(cookies, ["check", "-d", str(decl), "--observations", str(saved), "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert {"CK018", "CK019"} <= {f["rule"] for f in report["findings"]}
    assert report["visits"][0]["browser"] == "Chrome/1"


@pytest.mark.parametrize(("text", "words"), [
    ("{", "invalid JSON"),
    ('{"format": "other"}', "format"),
    ('{"format": "retention-cookies-observations", "version": 1, "observations": [{"nom": 1}]}', "observations"),
])
def test_bad_saved_observations_are_one_line_exit_2(tmp_path: Path, text: str, words: str) -> None:
    decl = tmp_path / "cookies.yaml"
    decl.write_text(CONSENT)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    result = CliRunner().invoke(cookies, ["check", "-d", str(decl), "--observations", str(bad)])
    assert result.exit_code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_format_and_output_must_pair(tmp_path: Path) -> None:
    decl = tmp_path / "cookies.yaml"
    decl.write_text(CONSENT)
    result = CliRunner().invoke(cookies, ["check", "-d", str(decl), "--format", "json", "--format", "sarif"])
    assert result.exit_code == 2 and "--output-dir" in result.stderr
    result = CliRunner().invoke(cookies, ["check", "-d", str(decl), "--format", "json", "--format", "sarif",
                                          "-o", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.sarif")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.sarif").read_text())["version"] == "2.1.0"
