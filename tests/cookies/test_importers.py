"""Importers draft valid declarations from Klaro, cookieconsent v3 and the OCD CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention_cookies.declarations import load_declarations
from retention_cookies.importers import import_file
from retention_cookies.jsliteral import SKIPPED, JsRegex, find_object
from retention_core import ConfigError

# <repo>/../shared/data in development and CI; absent elsewhere.
OCD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "open-cookie-database.csv"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "imported.yaml"
    path.write_text(text, encoding="utf-8")
    return load_declarations(path)


def test_js_object_literal_reader() -> None:
    text = """// c
    var klaroConfig = { a: 'x', "b": [1, -2.5, 0x10, true, null, undefined,], re: /^_g[a-z]\\/x/i,
      f: function (a) { return "}" }, g: (x) => { return x }, h(y) { return {z: 1} }, t: `plain`,
      t2: `x${y}`, r: new RegExp('^a$', 'i'), id: someVariable, /* note */ last: 'ok' };"""
    data = find_object(text, (r"klaroConfig\s*=",))
    assert data["a"] == "x" and data["b"] == [1, -2.5, 16, True, None, None]
    assert data["re"] == JsRegex("^_g[a-z]\\/x", "i") and data["r"] == JsRegex("^a$", "i")
    assert data["f"] is SKIPPED and data["g"] is SKIPPED and data["h"] is SKIPPED and data["id"] is SKIPPED
    assert data["t"] == "plain" and data["t2"] is SKIPPED and data["last"] == "ok"


def test_klaro_js(tmp_path: Path, data_dir: Path) -> None:
    text = import_file("klaro", data_dir / "klaro-config.js")
    decls = load(tmp_path, text)
    services = {s.name: s for s in decls.services}
    # Issue 18 observation 8: optional services mean the site asks for consent; a draft
    # claiming essential-only could never pass.
    assert decls.claim == "consent" and decls.first_party_domains == ("contact.example.com",)
    consent = services["klaro-consent-record"]
    assert consent.basis == "consent_record" and consent.cookies[0].name == "klaro"
    assert consent.cookies[0].lifetime_text == "120d"
    session = services["session"]
    assert session.essential and session.basis == "unreviewed"
    lb = session.cookies[1]
    assert (lb.name, lb.match, lb.path, lb.domain) == ("lb_", "prefix", "/", "contact.example.com")
    ga = services["googleAnalytics"]
    assert ga.category == "analytics" and ga.needs_consent and not session.needs_consent
    assert ga.cookies[0].match == "regex" and ga.cookies[0].matches("_ga_ABC") and ga.cookies[0].matches("_ga")
    assert not ga.cookies[0].matches("_gax")
    hubspot = services["hubspot"]
    assert hubspot.category == "marketing"
    assert hubspot.cookies[0].matches("__hssc") and hubspot.cookies[1].matches("xHubSpotUTKx")


def test_klaro_with_required_services_only_claims_essential_only(tmp_path: Path) -> None:
    config = tmp_path / "klaro.json"
    config.write_text('{"cookieName": "klaro", "services": [{"name": "app", "required": true, "cookies": ["sid"]}]}')
    assert load(tmp_path, import_file("klaro", config)).claim == "essential-only"


def test_klaro_json(tmp_path: Path, data_dir: Path) -> None:
    decls = load(tmp_path, import_file("klaro", data_dir / "klaro-config.json", domains=["example.org"]))
    services = {s.name: s for s in decls.services}
    assert decls.first_party_domains == ("example.org",)
    assert services["app"].essential and services["matomo"].category == "analytics"
    assert services["matomo"].cookies[0].matches("_pk_id.1.abcd")
    consent = services["klaro-consent-record"].cookies[0]
    assert consent.name == "consent" and consent.session  # no cookieExpiresAfterDays: left to observation


def test_cookieconsent_v3(tmp_path: Path, data_dir: Path) -> None:
    decls = load(tmp_path, import_file("cookieconsent", data_dir / "cookieconsent-config.js"))
    services = {s.name: s for s in decls.services}
    assert services["cookieconsent-consent-record"].cookies[0].name == "cc_cookie"
    assert services["cookieconsent-consent-record"].cookies[0].lifetime_text == "182d"
    assert services["necessary.session"].essential and services["necessary.session"].basis == "unreviewed"
    assert services["analytics.ga"].category == "analytics"
    # _gid is only in the category's autoClear list, so it gets a category-level service.
    assert [c.name for c in services["analytics"].cookies] == ["_gid"]
    assert services["ads"].category == "marketing" and services["ads"].cookies == ()
    # Categories without readOnly are the visitor's choice: consent-required, and the draft claims consent.
    assert decls.claim == "consent" and services["analytics.ga"].needs_consent
    assert not services["necessary.session"].needs_consent


def test_imported_draft_fails_the_check_until_reviewed(tmp_path: Path, data_dir: Path) -> None:
    from retention_cookies.checks import CheckInput, run_checks
    from retention_cookies.knowledge import builtin

    decls = load(tmp_path, import_file("cookieconsent", data_dir / "cookieconsent-config.js"))
    rules = {f.rule for f in run_checks(CheckInput(decls, (), builtin()))}
    assert "CK017" in rules and "CK002" not in rules  # claim: consent, drafted from optional categories


def test_importer_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.js"
    bad.write_text("var klaroConfig = { services: [ { name: 'x' ")
    with pytest.raises(ConfigError, match="not a klaro config") as info:
        import_file("klaro", bad)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.json"
    empty.write_text('{"elementID": "klaro"}')
    with pytest.raises(ConfigError, match="services"):
        import_file("klaro", empty)
    with pytest.raises(ConfigError, match="categories"):
        import_file("cookieconsent", empty)


def test_ocd_header_is_checked(tmp_path: Path) -> None:
    csv = tmp_path / "x.csv"
    csv.write_text("ID,Name\n1,a\n")
    with pytest.raises(ConfigError, match="missing Platform"):
        import_file("ocd", csv)


def test_open_cookie_database(tmp_path: Path) -> None:
    if not OCD.is_file():
        pytest.skip(f"{OCD} is not present (it lives in shared/data beside the repo)")
    decls = load(tmp_path, import_file("ocd", OCD))
    assert decls.claim == "none"
    # Nothing from the OCD is strictly necessary: its Functional category is only a hint.
    assert not any(s.essential for s in decls.services)
    found = {c.name: (s, c) for s, c in decls.cookies()}
    service, ga = found["_ga"]
    assert service.category == "analytics" and ga.lifetime is not None
    assert any(s.category == "marketing" for s in decls.services)
    assert len(found) > 1000


@pytest.mark.parametrize("text", ['{"services": ' + "[" * 5000 + "]" * 5000 + "}",
                                  "var klaroConfig = {services: " + "[" * 5000 + "]" * 5000 + "};"])
def test_importing_a_config_nested_5000_deep_is_a_one_line_error(tmp_path: Path, text: str) -> None:
    """Issue 15 #13: `retention cookies import` ran into RecursionError: an internal error, exit 1."""
    deep = tmp_path / "deep.js"
    deep.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply") as info:
        import_file("klaro", deep)
    assert "\n" not in str(info.value)
