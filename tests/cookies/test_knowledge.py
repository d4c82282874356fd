"""The shipped knowledge base: well-formed, sourced, and knows the usual trackers."""

from __future__ import annotations

import re

import pytest

from retention_cookies.knowledge import builtin, parse_knowledge
from retention_core import ConfigError


@pytest.mark.parametrize(("name", "product"), [
    ("_ga", "Google Analytics"), ("_ga_Q2ABC3DEF", "Google Analytics"), ("_gid", "Google Analytics"),
    ("_fbp", "Meta Pixel"), ("__hstc", "HubSpot tracking code"), ("_hjid", "Hotjar"),
    ("_hjSessionUser_123", "Hotjar"), ("_gcl_au", "Google Ads and Floodlight conversion tracking"),
    ("mp_0123abcd_mixpanel", "Mixpanel JavaScript SDK"),
    ("__utmz", "Google Analytics (Universal Analytics / urchin.js, legacy)"),
])
def test_known_trackers(name: str, product: str) -> None:
    assert product in {fact.product for fact in builtin().lookup(name)}


@pytest.mark.parametrize("name", ["sid", "__Host-session", "csrftoken", "lb_affinity", "cookie_consent", "ga", "x_ga"])
def test_ordinary_names_are_not_trackers(name: str) -> None:
    assert builtin().lookup(name) == []


def test_storage_scope() -> None:
    assert builtin().lookup("_hjid", "localStorage")  # Hotjar also uses web storage
    assert not builtin().lookup("_ga", "localStorage")


def test_every_fact_has_a_vendor_source_and_valid_pattern() -> None:
    for fact in builtin().facts:
        assert re.match(r"https://[a-z0-9.-]+\.[a-z]+/", fact.source), fact
        assert fact.category in ("analytics", "marketing")
        if fact.match == "regex":
            re.compile(fact.name)


def test_broken_knowledge_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"products\[0\]\.source: is required"):
        parse_knowledge({"products": [{"product": "p", "vendor": "v", "category": "analytics", "names": []}]}, "k")
    with pytest.raises(ConfigError, match=r"products\[0\]\.category"):
        parse_knowledge({"products": [{"product": "p", "vendor": "v", "category": "functional", "source": "s",
                                       "names": []}]}, "k")
