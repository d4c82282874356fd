"""Declarations: the sample file loads, and every error is one line with a key path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retention_cookies.declarations import load_declarations
from retention_core import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = """\
version: 1
claim: essential-only
first_party_domains: [contact.example.com]
services:
  - name: app
    category: strictly_necessary
    basis: authentication
    justification: keeps users signed in
    cookies:
      - {name: sid, lifetime: session, attributes: {secure: true, http_only: true, same_site: Lax}}
      - {name: "tab_", match: prefix, storage: sessionStorage}
"""


def test_sample_declarations_of_the_demo_service_load() -> None:
    decls = load_declarations(REPO / "config" / "cookies.yaml")
    assert decls.claim == "essential-only"
    names = {c.name for _, c in decls.cookies()}
    assert {"__Host-session", "__Host-csrf", "lb_affinity", "cookie_consent"} <= names
    assert all(s.essential and s.basis and s.justification for s in decls.services)


def test_valid_file(write_decl: Callable[[str], Path]) -> None:
    decls = load_declarations(write_decl(VALID))
    (service, sid), (_, tab) = decls.cookies()
    assert service.purposes == ("authentication",)
    assert sid.session and sid.secure is True and sid.same_site == "Lax" and sid.line == 10
    assert tab.matches("tab_42", "sessionStorage") and not tab.matches("tab_42", "cookie")


@pytest.mark.parametrize(("change", "key", "words"), [
    (("match: prefix", "match: glob"), "services[0].cookies[1].match",
     "expected one of exact, prefix, regex, found 'glob'"),
    (("claim: essential-only", "claim: mostly"), "claim", "found 'mostly'"),
    (("basis: authentication", "basis: convenience"), "services[0].basis", "found 'convenience'"),
    (("lifetime: session,", "lifetime: forever,"), "services[0].cookies[0].lifetime",
     "expected 'session' or a duration"),
    (("same_site: Lax", "same_site: lax"), "services[0].cookies[0].attributes.same_site", "found 'lax'"),
    (("    justification: keeps users signed in\n", ""), "services[0].justification", "is required"),
    (("{name: sid,", "{nme: sid,"), "services[0].cookies[0].nme", "unknown key"),
    (("first_party_domains", "first_party_domain"), "first_party_domain", "unknown key"),
    (("name: app", "name: app\n    colour: red"), "services[0].colour", "unknown key"),
])
def test_errors_name_file_key_and_expectation(write_decl: Callable[[str], Path], change: tuple[str, str],
                                              key: str, words: str) -> None:
    assert change[0] in VALID
    path = write_decl(VALID.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_declarations(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_regex_must_compile(write_decl: Callable[[str], Path]) -> None:
    path = write_decl(VALID.replace('{name: "tab_", match: prefix', '{name: "tab_(", match: regex'))
    with pytest.raises(ConfigError, match=r"services\[0\]\.cookies\[1\]\.name: expected a regular expression"):
        load_declarations(path)


def test_cookie_lifetime_is_required(write_decl: Callable[[str], Path]) -> None:
    path = write_decl(VALID.replace("lifetime: session, ", ""))
    with pytest.raises(ConfigError, match=r"cookies\[0\]\.lifetime: is required"):
        load_declarations(path)


def test_non_essential_service_cannot_claim_an_exemption(write_decl: Callable[[str], Path]) -> None:
    path = write_decl(VALID.replace("category: strictly_necessary", "category: analytics"))
    with pytest.raises(ConfigError, match=r"services\[0\]\.basis: only strictly_necessary"):
        load_declarations(path)


def test_yaml_syntax_error_and_missing_file(tmp_path: Path, write_decl: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError, match=r"line \d+: invalid YAML"):
        load_declarations(write_decl("claim: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read declarations"):
        load_declarations(tmp_path / "nope.yaml")
