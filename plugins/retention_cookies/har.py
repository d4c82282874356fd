"""Read cookies out of a HAR 1.2 file, and notice when the export stripped them.

Browsers now export "sanitized" HARs by default (no Cookie/Set-Cookie headers, empty
``cookies`` arrays). Such a file proves nothing, so it must be reported as sanitized
rather than pass as "this site sets no cookies".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retention_core import ConfigError

from .model import Finding, Observation
from .observe import anomaly_findings, observation_from_header
from .rules import finding
from .setcookie import parse_set_cookie, split_header_value

_MARKER = r"\[?redacted\]?|<redacted>|\*{3,}|x{3,}|removed|sanitized"
_REDACTED = re.compile(rf"^\s*({_MARKER})?\s*$", re.I)  # headers: empty counts as redacted
_REDACTED_VALUE = re.compile(rf"^\s*({_MARKER})\s*$", re.I)  # an empty cookie value is legitimate


@dataclass(slots=True)
class HarResult:
    """What one HAR showed, and whether it was too sanitized to show anything."""
    observations: list[Observation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    sanitized: bool = False
    first_url: str | None = None  # the page the recording started on


def read_har(path: str | Path, *, expect_cookies: bool = True) -> HarResult:
    """Every cookie a HAR shows being set (headers and ``cookies`` arrays) or sent.

    *expect_cookies*: the declarations list cookies, so a HAR with no cookie data at all
    is taken as sanitized (an error); otherwise it is only noted.
    """
    try:
        return _read_har(Path(path), expect_cookies)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        # HAR is JSON without a schema check: any part of the wrong type is bad input, not a crash.
        raise ConfigError(f"not a HAR 1.2 file: a part has the wrong type ({type(exc).__name__}: {exc})",
                          file=str(path)) from None


def _read_har(path: Path, expect_cookies: bool) -> HarResult:
    name = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read HAR: {exc.strerror or exc}", file=name) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a HAR file: invalid JSON ({exc})", file=name) from None
    except RecursionError:  # json's decoder recurses per level: thousands of [[[[ exhaust the stack
        raise ConfigError("not a HAR file: JSON nested too deeply to read", file=name) from None
    entries = data.get("log", {}).get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError("not a HAR file: expected log.entries to be a list", file=name, key="log.entries")

    result = HarResult(entries=len(entries))
    if entries and isinstance(entries[0], dict):
        result.first_url = str((entries[0].get("request") or {}).get("url") or "") or None
    source = f"har:{name}"
    seen_in_responses: set[str] = set()
    sent: dict[str, str] = {}  # cookie name -> URL of the first request that sent it
    cookie_data = redacted = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError("expected an entry object", file=name, key=f"log.entries[{index}]")
        request, response = entry.get("request") or {}, entry.get("response") or {}
        url = str(request.get("url", ""))
        received = _parse_time(entry.get("startedDateTime"))
        from_headers: set[str] = set()
        for header in _headers(response):
            if header[0] != "set-cookie":
                continue
            cookie_data += 1
            if _REDACTED.match(header[1]):
                redacted += 1
                continue
            for line in split_header_value(header[1]):
                parsed = parse_set_cookie(line)
                where = f"{name} entries[{index}] {url}"
                result.findings += anomaly_findings(parsed.anomalies, parsed.cookie.name if parsed.cookie
                                                    else None, line, where, file=name)
                if parsed.cookie is None:
                    continue
                from_headers.add(parsed.cookie.name)
                result.observations.append(observation_from_header(
                    parsed.cookie, url, received, set_by=f"Set-Cookie header of {url}", source=source))
        for cookie in response.get("cookies") or []:
            cookie_data += 1
            if not isinstance(cookie, dict) or not cookie.get("name"):
                continue
            if _REDACTED_VALUE.match(str(cookie.get("value") or "")):
                redacted += 1
            if cookie["name"] in from_headers:
                continue  # the header said more than the array
            from_headers.add(cookie["name"])
            result.observations.append(_from_har_cookie(cookie, url, received, source))
        seen_in_responses |= from_headers
        for header in _headers(request):
            if header[0] == "cookie":
                cookie_data += 1
                if _REDACTED.match(header[1]):
                    redacted += 1
                for key in cookie_header_names(header[1]):
                    sent.setdefault(key, url)
        for cookie in request.get("cookies") or []:
            cookie_data += 1
            if isinstance(cookie, dict) and (cookie.get("name") or cookie.get("value")):
                sent.setdefault(str(cookie.get("name") or ""), url)

    # Cookies only ever sent, never set in a recorded response: set by a script or before
    # the recording started. Their attributes are unknown, but their existence is not.
    for cookie_name, url in sent.items():
        if cookie_name not in seen_in_responses:
            parts = urlsplit(url)
            result.observations.append(Observation(
                name=cookie_name, domain=(parts.hostname or "").lower() or None, attributes_known=False,
                page_url=url, https=parts.scheme != "http",
                set_by=f"sent in the Cookie header of {url} (set by a script or before the recording)",
                source=source))

    if entries:
        result.findings.append(finding(
            "CK020", f"HAR {name}", "a HAR records HTTP messages only: cookies written by scripts and "
            "never sent, and localStorage/sessionStorage, are not in it", evidence=f"{len(entries)} entries",
            file=name))
    if redacted:
        result.sanitized = True
        result.findings.append(finding(
            "CK016", f"HAR {name}", f"{redacted} cookie value(s) are redacted: the HAR was sanitized",
            evidence=f"{cookie_data} cookie header(s)/entries, {redacted} redacted", file=name))
    elif cookie_data == 0 and entries:
        result.sanitized = True
        result.findings.append(finding(
            "CK016", f"HAR {name}",
            f"{len(entries)} requests but not one Cookie or Set-Cookie header and every cookies array "
            "empty: the HAR was probably exported sanitized, so it cannot show which cookies are set",
            severity="error" if expect_cookies else "info",
            evidence="no cookie data in any entry", file=name))
    return result


def cookie_header_names(value: str) -> list[str]:
    """Names of the cookies in a ``Cookie`` request header. RFC 6265bis §5.7.4 serialises a
    nameless cookie as its value alone, so a pair without '=' is a cookie with an empty
    name, not a cookie named after its value."""
    names = []
    for pair in value.split(";"):
        if not pair.strip():
            continue
        names.append(pair.split("=", 1)[0].strip() if "=" in pair else "")
    return names


def _headers(message: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for header in message.get("headers") or []:
        if isinstance(header, dict) and "name" in header:
            out.append((str(header["name"]).lower(), str(header.get("value") or "")))
    return out


def _from_har_cookie(cookie: dict[str, Any], url: str, received: datetime, source: str) -> Observation:
    parts = urlsplit(url)
    expires = cookie.get("expires")
    lifetime = None
    if expires:
        when = _parse_time(expires, default=None)
        if when is not None:
            lifetime = when - received
    domain = cookie.get("domain")
    same_site = cookie.get("sameSite")
    return Observation(
        name=str(cookie["name"]), domain=(str(domain).lstrip(".").lower() if domain else parts.hostname),
        host_only=not domain, path=cookie.get("path") or "/", secure=bool(cookie.get("secure")),
        http_only=bool(cookie.get("httpOnly")),
        same_site=str(same_site).capitalize() if same_site else None, lifetime=lifetime,
        page_url=url, https=parts.scheme != "http", set_by=f"HAR cookies array of {url}", source=source)


def _parse_time(text: Any, default: Any = "now") -> Any:
    if isinstance(text, str):
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.now(timezone.utc) if default == "now" else default
