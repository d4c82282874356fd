"""Registrable domains from tldextract's bundled Public Suffix List, never the network."""

from __future__ import annotations

import socket

import pytest

from retention_cookies import domains

pytest.importorskip("tldextract")


def test_no_network_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tldextract tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    domains._extractor.cache_clear()
    try:
        assert domains.registrable_domain("a.b.example.co.uk") == "example.co.uk"
    finally:
        domains._extractor.cache_clear()


@pytest.mark.parametrize(("host", "site"), [
    ("app.contact.example.com", "example.com"),
    (".Contact.Example.COM", "example.com"),
    ("forums.bbc.co.uk", "bbc.co.uk"),
    ("alice.github.io", "alice.github.io"),  # a private suffix separates sites, as in browsers
    ("127.0.0.1", "127.0.0.1"),
    ("[::1]", "::1"),
    ("localhost", "localhost"),
])
def test_registrable_domain(host: str, site: str) -> None:
    assert domains.registrable_domain(host) == site


def test_first_party() -> None:
    assert domains.is_first_party("cdn.contact.example.com", ["example.com"])
    assert not domains.is_first_party("doubleclick.net", ["contact.example.com"])
    assert not domains.is_first_party("bob.github.io", ["alice.github.io"])
