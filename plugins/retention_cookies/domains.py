"""First-party or third-party, decided by registrable domain (the Public Suffix List).

``tldextract`` is used with its bundled PSL snapshot and no network fetch: the check runs
in CI and cron where the network may be closed, and a result must not depend on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from retention_core import RetentionError

INSTALL_HINT = "pip install 'retention[cookies]'"


class MissingDependency(RetentionError):
    """An optional dependency of the cookie plugin is not installed."""


@lru_cache(maxsize=1)
def _extractor() -> Callable[[str], object]:
    try:
        import tldextract
    except ImportError:
        raise MissingDependency(f"the cookie check needs tldextract: {INSTALL_HINT}") from None
    # suffix_list_urls=() means: never fetch, use the snapshot shipped in the package;
    # cache_dir=None keeps it from writing a cache into $HOME; private suffixes
    # (github.io, herokuapp.com) count, as they do for browsers deciding cookie scope.
    return tldextract.TLDExtract(  # type: ignore[no-any-return]
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def registrable_domain(host: str) -> str:
    """``a.b.example.co.uk`` → ``example.co.uk``; IP addresses and bare hosts stay as they are."""
    host = host.strip().lstrip(".").lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    result = _extractor()(host)
    domain, suffix = getattr(result, "domain", ""), getattr(result, "suffix", "")
    if domain and suffix:
        return f"{domain}.{suffix}"
    return host  # "localhost", or a name that is itself a public suffix


def is_first_party(host: str, first_party: Iterable[str]) -> bool:
    """Whether *host* shares a registrable domain with any of the first-party domains."""
    site = registrable_domain(host)
    return any(site == registrable_domain(d) for d in first_party)
