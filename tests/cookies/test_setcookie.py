"""The lenient Set-Cookie parser on the pitfalls that make http.cookies lose cookies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from retention_cookies.setcookie import parse_cookie_date, parse_set_cookie, split_header_value


def kinds(line: str) -> list[str]:
    return [a.kind for a in parse_set_cookie(line).anomalies]


def test_comma_in_expires_is_not_a_separator() -> None:
    cookie = parse_set_cookie("sid=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/").cookie
    assert cookie is not None
    assert (cookie.name, cookie.value, cookie.path) == ("sid", "1", "/")
    assert cookie.expires == datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)


def test_a_malformed_neighbour_does_not_hide_the_others() -> None:
    # http.cookies.SimpleCookie().load() of a header with one bad cookie keeps none of them.
    lines = split_header_value('a=1; Path=/\n"bad\x01cookie"=x\nb=2; Max-Age=oops; Secure')
    parsed = [parse_set_cookie(line) for line in lines]
    assert [p.cookie.name if p.cookie else None for p in parsed] == ["a", None, "b"]
    assert parsed[1].anomalies[0].kind == "control-character"
    assert parsed[2].cookie is not None and parsed[2].cookie.secure and parsed[2].cookie.max_age is None
    assert [a.kind for a in parsed[2].anomalies] == ["bad-max-age"]


def test_attributes_without_values() -> None:
    cookie = parse_set_cookie("id=9; Secure; HttpOnly; Partitioned; Path; Domain=").cookie
    assert cookie is not None
    assert cookie.secure and cookie.http_only and cookie.partitioned
    assert cookie.path is None and cookie.domain is None
    assert kinds("id=9; Secure; HttpOnly; Path; Domain=") == ["bad-path", "empty-domain"]


def test_flag_with_a_value_still_counts_but_is_reported() -> None:
    cookie = parse_set_cookie("id=9; Secure=false").cookie
    assert cookie is not None and cookie.secure
    assert kinds("id=9; Secure=false") == ["flag-with-value"]


def test_duplicate_attribute_last_wins() -> None:
    cookie = parse_set_cookie("id=1; Max-Age=10; Max-Age=20; SameSite=Strict; samesite=lax").cookie
    assert cookie is not None and cookie.max_age == 20 and cookie.same_site == "Lax"
    assert kinds("id=1; Max-Age=10; Max-Age=20") == ["duplicate-attribute"]


def test_duplicate_cookie_names_are_both_kept() -> None:
    first, second = (parse_set_cookie(line).cookie for line in split_header_value("x=1; Path=/a\nx=2; Path=/b"))
    assert first is not None and second is not None
    assert (first.value, first.path, second.value, second.path) == ("1", "/a", "2", "/b")


def test_non_ascii_is_kept_and_noted() -> None:
    cookie = parse_set_cookie("prénom=Zoë; Path=/").cookie
    assert cookie is not None and cookie.name == "prénom" and cookie.value == "Zoë"
    assert kinds("prénom=Zoë") == ["non-ascii"]


def test_no_equals_sign_means_empty_name() -> None:
    result = parse_set_cookie("justavalue; Secure")
    assert result.cookie is not None and result.cookie.name == "" and result.cookie.value == "justavalue"
    assert kinds("justavalue") == ["nameless"]


def test_empty_and_oversized_lines_are_dropped() -> None:
    assert parse_set_cookie("=; Path=/").cookie is None
    assert parse_set_cookie("a=" + "x" * 4096).cookie is None
    assert kinds("a=" + "x" * 4096) == ["too-long"]


def test_bad_samesite_and_unknown_attribute() -> None:
    cookie = parse_set_cookie("a=b; SameSite=Everything; Colour=blue").cookie
    assert cookie is not None and cookie.same_site is None
    assert kinds("a=b; SameSite=Everything; Colour=blue") == ["bad-samesite", "unknown-attribute"]


def test_domain_leading_dot_is_dropped_and_lowercased() -> None:
    cookie = parse_set_cookie("a=b; Domain=.Contact.Example.COM").cookie
    assert cookie is not None and cookie.domain == "contact.example.com"


def test_max_age_wins_over_expires_for_lifetime() -> None:
    cookie = parse_set_cookie("a=b; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=60").cookie
    assert cookie is not None and cookie.persistent
    assert cookie.lifetime(datetime(2026, 1, 1, tzinfo=timezone.utc)) == timedelta(seconds=60)
    session = parse_set_cookie("a=b").cookie
    assert session is not None and not session.persistent and session.lifetime(datetime.now(timezone.utc)) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Wed, 21 Oct 2026 07:28:00 GMT", datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)),
    ("Wednesday, 21-Oct-26 07:28:00 GMT", datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)),
    ("Wed Oct 21 07:28:00 2026", datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc)),
    ("21 Oct 1999 23:59:59", datetime(1999, 10, 21, 23, 59, 59, tzinfo=timezone.utc)),
    ("31 Feb 2026 00:00:00", None),
    ("tomorrow", None),
])
def test_cookie_date(text: str, expected: datetime | None) -> None:
    assert parse_cookie_date(text) == expected


def test_newline_joined_header_is_split_but_commas_are_not() -> None:
    value = "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\r\nb=2, c=3"
    assert split_header_value(value) == ["a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2, c=3"]


def test_an_absurd_max_age_is_clamped_not_an_overflow():
    parsed = parse_set_cookie("a=1; Max-Age=99999999999999999999999999")
    assert parsed.cookie is not None
    lifetime = parsed.cookie.lifetime(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert lifetime is not None and lifetime.days > 400
