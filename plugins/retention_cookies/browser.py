"""Open a live page in headless Chromium and record every cookie and storage key it leaves.

``context.cookies()`` is the truth of what the browser stored, including cookies written by
JavaScript; response headers and a small ``document.cookie``/``Storage.setItem`` hook only
add *who* set each one. Playwright is imported lazily so ``retention --help`` works without
the ``cookies`` extra.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retention_core import RetentionError

from .domains import INSTALL_HINT, MissingDependency
from .model import Finding, Observation
from .observe import anomaly_findings
from .setcookie import parse_set_cookie, split_header_value

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",  # we run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

# Installed before any page script runs: remembers who wrote document.cookie or called
# setItem, with the JavaScript stack so the script's URL can be named.
_HOOK = r"""
(() => {
  if (window.__retentionLog) return;
  const log = [];
  Object.defineProperty(window, '__retentionLog', {value: log, enumerable: false});
  const desc = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
  if (desc && desc.set) {
    Object.defineProperty(Document.prototype, 'cookie', {
      configurable: true, enumerable: desc.enumerable,
      get() { return desc.get.call(this); },
      set(value) {
        log.push({kind: 'cookie', value: String(value), stack: String(new Error().stack || '')});
        return desc.set.call(this, value);
      },
    });
  }
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    let kind = 'sessionStorage';
    try { if (this === window.localStorage) kind = 'localStorage'; } catch (e) {}
    log.push({kind, key: String(key), stack: String(new Error().stack || '')});
    return setItem.apply(this, arguments);
  };
})();
"""
_STACK_URL = re.compile(r"(https?://[^\s()]+?):\d+:\d+")


class BrowserError(RetentionError):
    """The page could not be opened or the scenario could not be played."""


@dataclass(slots=True)
class BrowserResult:
    """What one visit (one or two scenarios) observed, plus parse anomalies of its headers."""
    observations: list[Observation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)


def observe_url(url: str, *, click: str | None = None, settle: float = 2.0,
                executable: str | None = None, timeout: float = 30.0) -> BrowserResult:
    """Visit *url* without interaction, wait *settle* seconds, record storage; then optionally
    click *click* (a consent banner button) and record again as a second scenario."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingDependency(f"--url needs Playwright: {INSTALL_HINT}") from None
    exe = executable or os.environ.get("RETENTION_CHROMIUM") or DEFAULT_CHROMIUM
    if not Path(exe).exists():
        raise BrowserError(f"Chromium not found at {exe} (install Debian's chromium: "
                           "apt-get install chromium, or set RETENTION_CHROMIUM)")
    if urlsplit(url).scheme not in ("http", "https"):
        raise BrowserError(f"--url expects an http(s) URL, found {url!r}")

    result = BrowserResult()
    headers: list[tuple[str, str, str]] = []  # (response URL, Set-Cookie line, scenario)
    scenario = ["initial"]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS),
                                         timeout=timeout * 1000)
            try:
                context = browser.new_context()
                context.add_init_script(_HOOK)

                def on_response(response: Any) -> None:
                    try:
                        pairs = response.headers_array()
                    except PlaywrightError:
                        return
                    for pair in pairs:
                        if pair["name"].lower() == "set-cookie":
                            for line in split_header_value(pair["value"]):
                                headers.append((response.url, line, scenario[0]))

                context.on("response", on_response)
                page = context.new_page()
                try:
                    page.goto(url, wait_until="load", timeout=timeout * 1000)
                except PlaywrightError as exc:
                    raise BrowserError(f"cannot open {url}: {_first_line(exc)}") from None
                _settle(page, settle, PlaywrightError)
                _snapshot(result, context, page, headers, url, scenario[0])
                if click:
                    scenario[0] = f"after click {click}"
                    try:
                        page.click(click, timeout=min(timeout, 10) * 1000)
                    except PlaywrightError as exc:
                        raise BrowserError(f"--click {click!r}: {_first_line(exc)}") from None
                    _settle(page, settle, PlaywrightError)
                    _snapshot(result, context, page, headers, url, scenario[0])
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise BrowserError(f"browser failed: {_first_line(exc)}") from None
    return result


def _settle(page: Any, seconds: float, error: type[Exception]) -> None:
    """Let late scripts (tag managers, banners) run: network idle, then the settle window."""
    try:
        page.wait_for_load_state("networkidle", timeout=(seconds + 5) * 1000)
    except error:
        pass  # long-polling pages never go idle; the fixed window below still applies
    page.wait_for_timeout(seconds * 1000)


def _snapshot(result: BrowserResult, context: Any, page: Any, headers: list[tuple[str, str, str]],
              url: str, scenario: str) -> None:
    now = datetime.now(timezone.utc)
    source = f"browser:{url}"
    result.scenarios.append(scenario)
    js_log: list[dict[str, Any]] = []
    for frame in page.frames:
        try:
            js_log += [entry | {"frame": frame.url} for entry in frame.evaluate("() => window.__retentionLog || []")]
        except Exception:  # noqa: BLE001 - a detached or navigating frame has nothing to tell
            continue
    # Who set what: the last header or script write of that name wins, as in the browser.
    by_header: dict[str, tuple[str, Any]] = {}
    for resp_url, line, _ in headers:
        parsed = parse_set_cookie(line)
        if parsed.cookie is not None:
            by_header[parsed.cookie.name] = (resp_url, parsed.cookie)
    by_script: dict[str, tuple[str, Any]] = {}
    for entry in js_log:
        if entry.get("kind") == "cookie":
            parsed = parse_set_cookie(entry.get("value", ""))
            if parsed.cookie is not None:
                by_script[parsed.cookie.name] = (_script_url(entry), parsed.cookie)
    for resp_url, line, when in headers:
        if when == scenario:
            parsed = parse_set_cookie(line)
            result.findings += anomaly_findings(parsed.anomalies, parsed.cookie.name if parsed.cookie else None,
                                                line, f"Set-Cookie header of {resp_url}")

    for cookie in context.cookies():
        name, domain = cookie["name"], cookie["domain"]
        expires = cookie.get("expires", -1)
        lifetime = None if expires is None or expires < 0 else (
            datetime.fromtimestamp(expires, timezone.utc) - now)
        set_by, same_site, origin = "unknown (read from the browser's cookie jar)", cookie.get("sameSite"), url
        if name in by_header:
            origin, parsed = by_header[name]
            set_by, same_site = f"Set-Cookie header of {origin}", parsed.same_site
            intended = parsed.lifetime(now)
            if lifetime is not None and intended is not None and intended > lifetime:
                lifetime = intended  # the jar caps at 400 days; the rules judge what the server asked for
        elif name in by_script:
            script, parsed = by_script[name]
            set_by, same_site = f"script {script}", parsed.same_site
            origin = script if script.startswith("http") else url
        result.observations.append(Observation(
            name=name, storage="cookie", domain=domain.lstrip(".").lower(), host_only=not domain.startswith("."),
            path=cookie.get("path") or "/", secure=bool(cookie.get("secure")),
            http_only=bool(cookie.get("httpOnly")), same_site=same_site,
            lifetime=lifetime if lifetime is None or lifetime > timedelta(0) else timedelta(0),
            page_url=page.url, https=urlsplit(origin).scheme == "https", set_by=set_by, source=source,
            scenario=scenario, raw=None))

    seen: set[tuple[str, str, str]] = set()
    for frame in page.frames:
        try:
            data = frame.evaluate("""() => ({origin: location.origin,
                local: Object.keys(window.localStorage), session: Object.keys(window.sessionStorage)})""")
        except Exception:  # noqa: BLE001 - opaque origins (about:blank, sandboxed) have no storage
            continue
        host = urlsplit(data["origin"]).hostname or ""
        for storage, keys in (("localStorage", data["local"]), ("sessionStorage", data["session"])):
            for key in keys:
                if (data["origin"], storage, key) in seen:
                    continue
                seen.add((data["origin"], storage, key))
                writer = next((_script_url(e) for e in reversed(js_log)
                               if e.get("kind") == storage and e.get("key") == key), None)
                result.observations.append(Observation(
                    name=key, storage=storage, domain=host or None, page_url=frame.url,
                    https=data["origin"].startswith("https:"),
                    set_by=f"script {writer}" if writer else f"found in {storage} of {data['origin']}",
                    source=source, scenario=scenario))


def _script_url(entry: dict[str, Any]) -> str:
    """The first script URL in the writer's stack; an inline script is named by its page."""
    for match in _STACK_URL.finditer(entry.get("stack", "")):
        return match.group(1)
    return f"inline or evaluated script in {entry.get('frame', '?')}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
