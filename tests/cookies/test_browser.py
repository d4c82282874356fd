"""Real Chromium visits of local HTTPS sites (first party 127.0.0.1, third party 127.0.0.2).

Skips without Chromium or Playwright, except in CI (CI=true), where that is a failure.
Each test names the observation of issue 18 it pins down.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from retention_cookies.cli import cookies

FIRST, THIRD = "127.0.0.1", "127.0.0.2"  # the `sites` fixture's first and third party (conftest.py)
Sites = Any

pytestmark = pytest.mark.browser

TRACKED = """<!doctype html><html><body>
<img src="{tp}/px.gif"><img src="/hop">
<iframe src="{tp}/frame"></iframe>
<script src="/app.js"></script>
</body></html>"""
APP_JS = "document.cookie = '_ga=GA1.1.42.42; Max-Age=63072000; Path=/; Secure; SameSite=Lax';\n" \
         "sessionStorage.setItem('draft_reply', 'hello');\n"
FRAME = "<!doctype html><script>localStorage.setItem('tp_key', '1');</script>"
FIRST_PARTY_UID = """\
version: 1
claim: essential-only
first_party_domains: [127.0.0.1]
services:
  - name: app
    category: strictly_necessary
    basis: security
    justification: remembers the device for fraud checks
    cookies:
      - {name: uid, domain: 127.0.0.1, lifetime: 1d, attributes: {secure: true, http_only: true, same_site: Lax}}
"""


def tracked_site(sites: Sites) -> None:
    """A page with a third-party pixel, a third-party iframe using storage, a script cookie,
    a redirect to the third party, a rejected __Host- cookie and a comma-folded header."""
    sites.route(FIRST, "/", TRACKED,
                ("Set-Cookie", "uid=1; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax"),
                ("Set-Cookie", "__Host-sid=1; Path=/app; Secure"),
                ("Set-Cookie", "pref=1, _fbc=fb.1.1700000000.AbC; Path=/; Secure"))
    sites.route(FIRST, "/app.js", APP_JS)
    sites.route(FIRST, "/hop", "", ("Location", "{tp}/landing.gif"), status=302)
    sites.route(THIRD, "/px.gif", b"GIF89a",
                ("Set-Cookie", "fr=abc; Max-Age=7776000; Path=/; Secure; SameSite=None"),
                ("Set-Cookie", "uid=tp; Max-Age=34560000; Path=/; Secure; SameSite=None"),
                ("Set-Cookie", "chips=1; Path=/; Secure; SameSite=None; Partitioned"),
                ("Content-Type", "image/gif"))
    sites.route(THIRD, "/landing.gif", b"GIF89a", ("Content-Type", "image/gif"))
    sites.route(THIRD, "/frame", FRAME)


def run(sites: Sites, *args: str, settle: str = "0.5") -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cookies, ["check", *args, "--settle", settle, "--format", "json",
                                          *sites.cli_args()])
    assert result.exit_code in (0, 1), (result.output, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout)


def by_rule(report: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["rule"] == rule]


def observed(report: dict[str, Any], name: str, domain: str) -> dict[str, Any]:
    [obs] = [o for o in report["observations"] if o["name"] == name and o["domain"] == domain]
    return obs


def test_third_party_cookies_and_frame_storage_are_seen_by_default(sites: Sites, write_decl: Any) -> None:
    """Observation 1: the pixel's fr cookie and a third-party iframe's storage are visible,
    and the report names the browser and the settle time."""
    tracked_site(sites)
    code, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    fr = observed(report, "fr", THIRD)
    assert fr["state"] == "stored" and fr["set_by"] == f"Set-Cookie header of {sites.tp}/px.gif"
    assert observed(report, "tp_key", THIRD)["storage"] == "localStorage"
    [undeclared_fr] = [f for f in by_rule(report, "CK001") if f["subject"] == f"cookie fr ({THIRD})"]
    assert "Facebook advertising" in undeclared_fr["message"]
    [visit] = report["visits"]
    assert visit["browser"].startswith("Chrome/") and visit["settle_seconds"] == 0.5
    assert visit["third_party_cookies"] == "allow"
    assert code == 1


def test_blocking_third_party_cookies_still_reports_what_was_refused(sites: Sites, write_decl: Any) -> None:
    """Observation 1 with --third-party-cookies block: fr is refused, with Chromium's reason."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/",
                    "--third-party-cookies", "block")
    fr = observed(report, "fr", THIRD)
    assert fr["state"] == "rejected" and fr["reason"]  # e.g. "ThirdPartyPhaseout" or "UserPreferences"
    assert observed(report, "uid", FIRST)["state"] == "stored"  # first-party cookies are unaffected
    assert report["visits"][0]["third_party_cookies"] == "block"


def test_same_name_cookies_are_kept_apart_by_domain(sites: Sites, write_decl: Any) -> None:
    """Observation 3: the first-party uid (1 day, Lax) is judged with its own attributes,
    not with those of the third party's uid (400 days, SameSite=None)."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    first = observed(report, "uid", FIRST)
    assert first["same_site"] == "Lax" and first["lifetime_seconds"] <= 86400
    assert observed(report, "uid", THIRD)["same_site"] == "None"
    wrong = [f for f in report["findings"]
             if f["rule"] in ("CK005", "CK013") and f["subject"] == f"cookie uid ({FIRST})"]
    assert wrong == []
    assert [f for f in by_rule(report, "CK001") if f["subject"] == f"cookie uid ({THIRD})"]


def test_script_cookie_is_judged_by_its_requested_expiry(sites: Sites, write_decl: Any) -> None:
    """Observation 5: _ga asks for 730 days; the jar caps it at 400, CK012 still fires."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    ga = observed(report, "_ga", FIRST)
    assert ga["set_by"] == f"script {sites.fp}/app.js" and ga["lifetime_seconds"] > 729 * 86400
    assert [f for f in by_rule(report, "CK012") if f["subject"] == f"cookie _ga ({FIRST})"]


def test_rejected_host_cookie_and_folded_header_are_findings(sites: Sites, write_decl: Any) -> None:
    """Observation 6: __Host-sid with Path=/app is refused by Chromium and gets CK011 (not
    just "never observed"); the comma-folded header that hides _fbc is a CK015 warning."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    host = observed(report, "__Host-sid", FIRST)
    assert host["state"] == "rejected" and "InvalidPrefix" in host["reason"]
    [prefix] = by_rule(report, "CK011")
    assert "Path=/app" in prefix["message"] and "rejected (InvalidPrefix)" in prefix["evidence"]
    [folded] = [f for f in by_rule(report, "CK015") if "comma-folded" in f["message"]]
    assert "'_fbc'" in folded["message"] and folded["severity"] == "warning"


def test_partitioned_cookie_is_recorded_with_its_partition(sites: Sites, write_decl: Any) -> None:
    """CHIPS: a Partitioned third-party cookie is recorded with the top-level site's jar."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    chips = observed(report, "chips", THIRD)
    assert chips["partitioned"] is True and chips["partition"] == f"https://{FIRST}"
    assert chips["state"] == "stored"


def test_requests_are_recorded_with_initiator_party_and_redirects(sites: Sites, write_decl: Any) -> None:
    """Observation 7: every request, first or third party, who caused it, and the redirect chain."""
    tracked_site(sites)
    _, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--url", f"{sites.fp}/")
    requests = {r["url"]: r for r in report["requests"]}
    pixel = requests[f"{sites.tp}/px.gif"]
    assert pixel["third_party"] is True and pixel["initiator"] == f"{sites.fp}/"
    assert pixel["scenario"] == "before-consent"
    assert requests[f"{sites.fp}/app.js"]["third_party"] is False
    assert requests[f"{sites.tp}/landing.gif"]["redirected_from"] == f"{sites.fp}/hop"
    assert requests[f"{sites.fp}/hop"]["status"] == 302 and requests[f"{sites.tp}/landing.gif"]["status"] == 200


# --------------------------------------------------------------------------------------
# Consent scenarios (observation 2)
# --------------------------------------------------------------------------------------

KLARO_LIKE = """<!doctype html><html><body>
<div id="banner"><button id="reject">Decline</button><button id="accept">Accept all</button></div>
<script>
function analytics() {
  document.cookie = '_pk_id.1.1fff=abc.1700000000; Max-Age=34128000; Path=/; Secure; SameSite=Lax';
  new Image().src = '{tp}/matomo.php?idsite=1&rec=1';
}
function remember(choice) {
  document.cookie = 'klaro=' + encodeURIComponent(JSON.stringify({matomo: choice})) +
    '; Max-Age=2592000; Path=/; Secure; SameSite=Lax';
}
document.getElementById('reject').onclick = function () { remember(false); };
document.getElementById('accept').onclick = function () { remember(true); analytics(); };
/*EARLY*/
</script></body></html>"""
# What the faulty site does: the tag fires before the banner is answered, and the consent
# tool deletes the cookie again 150 ms later.
EARLY = """analytics();
setTimeout(function () { document.cookie = '_pk_id.1.1fff=; Max-Age=0; Path=/; Secure'; }, 150);"""
CONSENT_DECL = """\
version: 1
claim: consent
first_party_domains: [127.0.0.1]
services:
  - name: load-balancer
    category: strictly_necessary
    basis: load_balancing
    justification: keeps a visitor on the node that holds the session
    cookies:
      - {name: lb_affinity, lifetime: session}
  - name: klaro-consent-record
    category: strictly_necessary
    basis: consent_record
    justification: Stores the visitor's answer to the consent notice so it is respected.
    cookies:
      - {name: klaro, lifetime: 30d}
  - name: matomo
    category: analytics
    consent: consent-required
    endpoints: [/matomo.php]
    cookies:
      - {name: _pk_id, match: prefix, lifetime: 395d}
"""


def consent_site(sites: Sites, early: bool) -> None:
    sites.route(FIRST, "/", KLARO_LIKE.replace("/*EARLY*/", EARLY if early else ""),
                ("Set-Cookie", "lb_affinity=n1; Path=/; Secure; HttpOnly; SameSite=Lax"))
    sites.route(THIRD, "/matomo.php", b"GIF89a", ("Content-Type", "image/gif"))


def scenario_args(sites: Sites) -> list[str]:
    return ["--url", f"{sites.fp}/", "--reject", "#reject", "--accept", "#accept"]


def test_consent_respecting_site_passes_all_three_scenarios(sites: Sites, write_decl: Any) -> None:
    """Analytics only after accept: every scenario is visited, nothing fails."""
    consent_site(sites, early=False)
    code, report = run(sites, "-d", str(write_decl(CONSENT_DECL)), *scenario_args(sites))
    assert report["visits"][0]["scenarios"] == ["before-consent", "after-reject", "after-accept"]
    scenarios = {(o["name"], o["scenario"]) for o in report["observations"]}
    assert ("klaro", "after-reject") in scenarios and ("_pk_id.1.1fff", "after-accept") in scenarios
    assert [r for r in report["requests"] if "matomo.php" in r["url"]][0]["scenario"] == "after-accept"
    assert code == 0, report["findings"]
    unknown = [o for o in report["observations"] if o["set_by"].startswith("unknown")]
    assert unknown == []  # the accept profile's earlier state is not re-reported as "unknown" writes


def test_analytics_set_and_deleted_before_consent_is_reported(sites: Sites, write_decl: Any) -> None:
    """Observation 2: Matomo's cookie, set before consent and deleted 150 ms later, and its
    beacon are both reported, every run."""
    consent_site(sites, early=True)
    code, report = run(sites, "-d", str(write_decl(CONSENT_DECL)), *scenario_args(sites))
    [cookie] = [f for f in by_rule(report, "CK018") if "before-consent" in f["message"]]
    assert "set and deleted again" in cookie["message"] and "'matomo' needs consent" in cookie["message"]
    [beacon] = [f for f in by_rule(report, "CK019") if "before-consent" in f["message"]]
    assert "matomo.php" in beacon["subject"]
    assert code == 1


def test_essential_only_claim_keeps_its_meaning(sites: Sites, write_decl: Any) -> None:
    """claim: essential-only: a consent-required service fails in every scenario (CK002)."""
    consent_site(sites, early=False)
    decl = write_decl(CONSENT_DECL.replace("claim: consent", "claim: essential-only"))
    code, report = run(sites, "-d", str(decl), *scenario_args(sites))
    assert [f for f in by_rule(report, "CK002") if "matomo" in f["subject"]]
    assert code == 1


def test_click_scenario_still_names_itself(sites: Sites, write_decl: Any) -> None:
    """--click keeps working: the accepted cookie is reported with its scenario."""
    consent_site(sites, early=False)
    decl = write_decl(CONSENT_DECL.replace("claim: consent", "claim: none").replace(
        "      - {name: _pk_id, match: prefix, lifetime: 395d}\n", ""))
    _, report = run(sites, "-d", str(decl), "--url", f"{sites.fp}/", "--click", "#accept")
    [pk] = [f for f in by_rule(report, "CK001") if "_pk_id" in f["subject"]]
    assert "scenario: after click #accept" in pk["evidence"] and "Matomo" in pk["message"]


# --------------------------------------------------------------------------------------
# One visit, every format (observation 8)
# --------------------------------------------------------------------------------------


def test_one_visit_writes_every_format_and_can_be_judged_again_offline(sites: Sites, write_decl: Any,
                                                                       tmp_path: Path) -> None:
    consent_site(sites, early=True)
    decl = str(write_decl(CONSENT_DECL))
    out, saved = tmp_path / "out", tmp_path / "visit.json"
    result = CliRunner().invoke(cookies, ["check", "-d", decl, *scenario_args(sites), "--settle", "0.5",
                                          "--output-dir", str(out), "--save-observations", str(saved),
                                          *sites.cli_args()])
    assert result.exit_code == 1, (result.output, result.exception)
    hits = len(sites.hits)
    report = json.loads((out / "cookies.json").read_text())
    sarif = json.loads((out / "cookies.sarif").read_text())
    assert "CK018" in (out / "cookies.html").read_text()
    fingerprints = {r["partialFingerprints"]["retentionCookieFinding/v1"] for r in sarif["runs"][0]["results"]}
    assert len(fingerprints) == len(report["findings"]) == len(sarif["runs"][0]["results"])
    assert "example" not in sarif["runs"][0]["tool"]["driver"].get("informationUri", "")
    assert sarif["runs"][0]["properties"]["visits"][0]["browser"].startswith("Chrome/")

    again = CliRunner().invoke(cookies, ["check", "-d", decl, "--observations", str(saved),
                                         "--format", "json", "--format", "sarif",
                                         "-o", str(tmp_path / "a.json"), "-o", str(tmp_path / "a.sarif")])
    assert again.exit_code == 1, again.output
    assert len(sites.hits) == hits  # no browser, no network
    offline = json.loads((tmp_path / "a.json").read_text())
    assert [(f["rule"], f["subject"], f["fingerprint"]) for f in offline["findings"]] == \
        [(f["rule"], f["subject"], f["fingerprint"]) for f in report["findings"]]
    assert offline["requests"] == report["requests"]


# --------------------------------------------------------------------------------------
# HAR recorded by a real Chromium (observation 4)
# --------------------------------------------------------------------------------------


def test_har_recorded_by_chromium_reads_a_pair_without_equals_as_a_nameless_cookie(
        sites: Sites, write_decl: Any, tmp_path: Path) -> None:
    """Observation 4: a script stores the nameless cookie 'noequalsign'; Chromium sends it as a
    bare 'noequalsign' in the Cookie header of the next request. The HAR check must not
    invent a cookie named 'noequalsign', and must say that it cannot see script cookies."""
    from playwright.sync_api import sync_playwright

    from retention_cookies.browser import DEFAULT_CHROMIUM

    sites.route(FIRST, "/", "<!doctype html><script>document.cookie = 'noequalsign';"
                            "document.cookie = 'sid=1; Path=/; Secure'; new Image().src = '/next.gif';</script>")
    sites.route(FIRST, "/next.gif", b"GIF89a", ("Content-Type", "image/gif"))
    har = tmp_path / "visit.har"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=DEFAULT_CHROMIUM, args=["--no-sandbox", *sites.chromium_args])
        context = browser.new_context(record_har_path=str(har))
        page = context.new_page()
        page.goto(f"{sites.fp}/")
        page.wait_for_load_state("networkidle")
        context.close()
        browser.close()
    sent = [h["value"] for e in json.loads(har.read_text())["log"]["entries"]
            for h in e["request"]["headers"] if h["name"].lower() == "cookie"]
    assert any("noequalsign" in v for v in sent)  # the HAR really holds the bare pair
    code, report = run(sites, "-d", str(write_decl(FIRST_PARTY_UID)), "--har", str(har))
    names = {o["name"] for o in report["observations"]}
    assert "" in names and "sid" in names and "noequalsign" not in names
    assert [f for f in by_rule(report, "CK001") if "noequalsign" in f["subject"]] == []
    assert by_rule(report, "CK020")


# --------------------------------------------------------------------------------------
# The real Klaro 0.7.22, from a Klaro config to a verdict (observation 2, end to end)
# --------------------------------------------------------------------------------------

KLARO_DIR = Path(__file__).parent / "data"
SHOP = """<!doctype html><html><head>
<script>/*CONFIG*/</script>
<script defer src="/klaro.js"></script>
/*EARLY*/
<script type="text/plain" data-type="application/javascript" data-name="matomo">
document.cookie = '_pk_id.1.1fff=abc.1700000000; Max-Age=34128000; Path=/; Secure; SameSite=Lax';
document.cookie = '_pk_ses.1.1fff=1; Max-Age=1800; Path=/; Secure; SameSite=Lax';
new Image().src = '{tp}/matomo.php?idsite=1&rec=1';
</script></head><body><h1>shop</h1></body></html>"""
# The faulty shop: the Matomo tag is not gated by Klaro, so it runs before consent and
# Klaro deletes its cookie again when it starts.
UNGATED = """<script>
document.cookie = '_pk_id.1.1fff=abc.1700000000; Max-Age=34128000; Path=/; Secure; SameSite=Lax';
new Image().src = '{tp}/matomo.php?idsite=1&rec=1';
</script>"""
KLARO_DECLINE, KLARO_ACCEPT = ".cn-decline", ".cm-btn-success"  # "I decline", "That's ok"


def klaro_shop(sites: Sites, gated: bool) -> None:
    config = (KLARO_DIR / "klaro-shop-config.js").read_text()
    sites.route(FIRST, "/", SHOP.replace("/*CONFIG*/", config).replace("/*EARLY*/", "" if gated else UNGATED))
    sites.route(FIRST, "/klaro.js", (KLARO_DIR / "klaro-0.7.22" / "klaro.js").read_bytes(),
                ("Content-Type", "application/javascript; charset=utf-8"))
    sites.route(THIRD, "/matomo.php", b"GIF89a", ("Content-Type", "image/gif"))


def reviewed_klaro_declarations(tmp_path: Path) -> Path:
    """`retention cookies import --from klaro`, then what a reviewer adds: Matomo's real
    lifetime (13 months) and its tracker endpoint."""
    import yaml

    draft = tmp_path / "draft.yaml"
    result = CliRunner().invoke(cookies, ["import", "--from", "klaro", str(KLARO_DIR / "klaro-shop-config.js"),
                                          "--domain", FIRST, "-o", str(draft)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(draft.read_text())
    assert data["claim"] == "consent"
    [matomo] = [s for s in data["services"] if s["name"] == "matomo"]
    assert matomo["consent"] == "consent-required"
    matomo["endpoints"] = ["/matomo.php"]
    matomo["cookies"][0]["lifetime"] = "13mo"
    reviewed = tmp_path / "cookies.yaml"
    reviewed.write_text(yaml.safe_dump(data, sort_keys=False))
    return reviewed


def test_real_klaro_site_that_waits_for_consent_passes(sites: Sites, tmp_path: Path) -> None:
    klaro_shop(sites, gated=True)
    code, report = run(sites, "-d", str(reviewed_klaro_declarations(tmp_path)), "--url", f"{sites.fp}/",
                       "--reject", KLARO_DECLINE, "--accept", KLARO_ACCEPT, settle="1")
    seen = {(o["name"], o["scenario"], o["state"]) for o in report["observations"]}
    assert ("klaro", "after-reject", "stored") in seen and ("_pk_id.1.1fff", "after-accept", "stored") in seen
    assert not [o for o in report["observations"] if o["name"].startswith("_pk_") and o["scenario"] != "after-accept"]
    assert code == 0, report["findings"]


def test_real_klaro_deleting_an_ungated_tag_cookie_is_still_reported(sites: Sites, tmp_path: Path) -> None:
    klaro_shop(sites, gated=False)
    code, report = run(sites, "-d", str(reviewed_klaro_declarations(tmp_path)), "--url", f"{sites.fp}/",
                       "--reject", KLARO_DECLINE, "--accept", KLARO_ACCEPT, settle="1")
    before = [f for f in by_rule(report, "CK018") if "scenario before-consent" in f["message"]]
    assert before and "set and deleted again" in before[0]["message"]  # Klaro removed it; it was still set
    assert [f for f in by_rule(report, "CK019") if "scenario before-consent" in f["message"]]
    assert code == 1
