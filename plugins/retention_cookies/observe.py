"""Turn parsed Set-Cookie lines into observations; read a file of raw Set-Cookie lines.

Shared by the HAR reader and the ``--set-cookie-file`` input so a header means the same
thing wherever it was captured.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from retention_core import ConfigError

from .model import Finding, Observation
from .rules import finding
from .setcookie import Anomaly, SetCookie, parse_set_cookie

#: Anomalies that do not change what the browser stores; every other one drops the line
#: or an attribute (a bad Expires turns a persistent cookie into a session one).
_MINOR = {"non-ascii", "unknown-attribute", "duplicate-attribute", "flag-with-value"}


def observation_from_header(cookie: SetCookie, url: str, received: datetime, *, set_by: str,
                            source: str, scenario: str = "") -> Observation:
    """What a browser would store for this Set-Cookie received from *url* at *received*."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return Observation(
        name=cookie.name, storage="cookie",
        domain=cookie.domain or host or None, host_only=cookie.domain is None,
        path=cookie.path or default_path(parts.path),
        secure=cookie.secure, http_only=cookie.http_only, same_site=cookie.same_site,
        lifetime=cookie.lifetime(received), page_url=url, https=parts.scheme != "http",
        set_by=set_by, source=source, scenario=scenario, raw=cookie.raw, partitioned=cookie.partitioned)


def anomaly_findings(anomalies: list[Anomaly], name: str | None, raw: str, where: str,
                     file: str | None = None) -> list[Finding]:
    """One CK015 finding per anomaly, naming the line it came from."""
    out = []
    for anomaly in anomalies:
        severity = "info" if anomaly.kind in _MINOR and name is not None else "warning"
        subject = f"cookie {name!r}" if name else "Set-Cookie line"
        out.append(finding("CK015", subject, f"{anomaly.message} [{anomaly.kind}]", severity=severity,
                           evidence=f"{where}: {raw[:200]!r}", file=file))
    return out


def read_set_cookie_file(path: str | Path, origin: str) -> tuple[list[Observation], list[Finding]]:
    """Raw ``Set-Cookie`` lines, one a line (``Set-Cookie:`` prefix optional, ``#`` comments).

    *origin* is the URL the lines are taken to come from (host for host-only cookies,
    scheme for the Secure checks).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read Set-Cookie file: {exc.strerror or exc}", file=str(path)) from None
    now = datetime.now(timezone.utc)
    observations: list[Observation] = []
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.lower().startswith("set-cookie:"):
            line = line.split(":", 1)[1]
        parsed = parse_set_cookie(line.strip(" \t"))
        where = f"{path}:{number}"
        findings += anomaly_findings(parsed.anomalies, parsed.cookie.name if parsed.cookie else None,
                                     line, where, file=str(path))
        if parsed.cookie is not None:
            observations.append(observation_from_header(
                parsed.cookie, origin, now, set_by=f"Set-Cookie line {where}",
                source=f"set-cookie:{path}"))
    return observations, findings


def default_path(request_path: str) -> str:
    """RFC 6265bis §5.1.4 default-path: the request path up to its last '/'."""
    if not request_path.startswith("/") or request_path.count("/") <= 1:
        return "/"
    return request_path[: request_path.rindex("/")]
