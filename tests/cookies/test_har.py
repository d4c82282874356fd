"""HAR reading: headers and cookies arrays, joined headers, and sanitized exports."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from retention_cookies.har import read_har
from retention_core import ConfigError


def by_name(result) -> dict:  # type: ignore[no-untyped-def]
    return {o.name: o for o in result.observations}


def judged(result) -> list:  # type: ignore[no-untyped-def]
    """The findings about the HAR's content (CK020, "a HAR cannot see scripts", is on every HAR)."""
    return [f for f in result.findings if f.rule != "CK020"]


def test_ordinary_har(data_dir: Path) -> None:
    result = read_har(data_dir / "ordinary.har")
    assert not result.sanitized and result.entries == 2
    seen = by_name(result)
    assert set(seen) == {"__Host-session", "lb_affinity", "cookie_consent", "_ga"}
    session = seen["__Host-session"]
    assert session.secure and session.http_only and session.same_site == "Lax" and session.session
    assert session.set_by == "Set-Cookie header of https://app.contact.example.com/login"
    assert seen["lb_affinity"].lifetime == timedelta(minutes=30)  # Expires - startedDateTime
    consent = seen["cookie_consent"]  # only in the response's cookies array
    assert consent.lifetime == timedelta(days=731) and consent.set_by.startswith("HAR cookies array")
    ga = seen["_ga"]  # only ever sent: set by a script
    assert not ga.attributes_known and "Cookie header" in ga.set_by


def test_joined_set_cookie_header_is_split_on_newlines_only(data_dir: Path) -> None:
    result = read_har(data_dir / "joined.har")
    seen = by_name(result)
    assert list(seen) == ["__Host-session", "cookie_consent", "_fbp"]
    assert seen["cookie_consent"].lifetime is not None and seen["cookie_consent"].lifetime > timedelta(days=1000)
    fbp = seen["_fbp"]
    assert fbp.domain == "contact.example.com" and not fbp.host_only and fbp.lifetime == timedelta(days=90)


def test_sanitized_har_is_reported_not_taken_as_no_cookies(data_dir: Path) -> None:
    result = read_har(data_dir / "sanitized.har")
    assert result.sanitized and result.observations == []
    [finding] = judged(result)
    assert finding.rule == "CK016" and finding.severity == "error" and "sanitized" in finding.message
    # A site that declares no cookies may really set none: then it is only noted.
    assert judged(read_har(data_dir / "sanitized.har", expect_cookies=False))[0].severity == "info"


def test_redacted_values_mean_sanitized(data_dir: Path) -> None:
    result = read_har(data_dir / "redacted.har")
    assert result.sanitized
    assert [f.rule for f in judged(result)] == ["CK016"] and "redacted" in judged(result)[0].message


def test_malformed_set_cookie_in_har_becomes_a_finding(tmp_path: Path) -> None:
    har = {"log": {"entries": [{"startedDateTime": "2026-11-01T10:00:00Z",
                                "request": {"url": "https://a.example/"},
                                "response": {"headers": [{"name": "Set-Cookie", "value": "a=1; Max-Age=soon\nb=2"}]}}]}}
    path = tmp_path / "x.har"
    path.write_text(json.dumps(har))
    result = read_har(path)
    assert set(by_name(result)) == {"a", "b"}
    assert [(f.rule, f.subject) for f in judged(result)] == [("CK015", "cookie 'a'")]


def test_every_har_says_it_cannot_see_script_cookies(data_dir: Path) -> None:
    """Issue 18 observation 4: a HAR-only check must not miss script cookies silently."""
    [blind] = [f for f in read_har(data_dir / "ordinary.har").findings if f.rule == "CK020"]
    assert blind.severity == "info" and "scripts" in blind.message


def test_pair_without_equals_in_cookie_header_is_a_nameless_cookie(tmp_path: Path) -> None:
    """Issue 18 observation 4: RFC 6265bis serialises a nameless cookie as its value alone;
    'noequalsign' is a nameless cookie, not a cookie named 'noequalsign'."""
    har = {"log": {"entries": [{"startedDateTime": "2026-11-01T10:00:00Z",
                                "request": {"url": "https://a.example/", "headers": [
                                    {"name": "Cookie", "value": "sid=1; noequalsign"}]},
                                "response": {"headers": []}}]}}
    path = tmp_path / "x.har"
    path.write_text(json.dumps(har))
    assert set(by_name(read_har(path))) == {"sid", ""}


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "invalid JSON"),
    ('{"log": {}}', "log.entries"),
    ('[]', "log.entries"),
])
def test_bad_har_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.har"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        read_har(path)
