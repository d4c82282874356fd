"""Visit a live page in Chromium the way a visitor's browser does, and record what it leaves.

A visit runs in a normal (not incognito) persistent context on a fresh temporary profile,
with third-party cookies allowed unless ``third_party_cookies="block"``: an incognito-style
context blocks them, and a tracking pixel's cookie would never be seen. Three sources are
combined, each for what only it can tell:

- every ``Set-Cookie`` line of every response, from the DevTools protocol
  (``Network.responseReceivedExtraInfo``), accepted or rejected, with Chromium's reason;
- every ``document.cookie`` write and ``Storage`` write, with the requested expiry and the
  writing script, from a hook installed in every frame before any page script;
- the cookie jar (``Storage.getCookies``) and the storage of every frame at the end of each
  scenario, which decides whether a write was still stored, or set and deleted again.

Scenarios: ``before-consent`` (load and settle, no interaction), then optionally
``after-reject`` (click the reject selector) in the same profile, and ``after-accept``
(a fresh profile: load, click the accept selector). Playwright is imported lazily so
``retention --help`` works without the ``cookies`` extra.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retention_core import RetentionError

from .domains import INSTALL_HINT, MissingDependency, registrable_domain
from .model import Finding, Observation, Request
from .observe import anomaly_findings, default_path
from .setcookie import SetCookie, parse_set_cookie, split_header_value

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
    # One renderer for every frame, so one DevTools session sees the requests and
    # Set-Cookie headers of third-party iframes too. Cookie rules do not depend on it.
    "--disable-site-isolation-trials",
    "--disable-features=IsolateOrigins,site-per-process",
)
THIRD_PARTY_COOKIES = ("allow", "block")
BEFORE, AFTER_REJECT, AFTER_ACCEPT = "before-consent", "after-reject", "after-accept"

# Installed before any page script runs, in every frame: reports each document.cookie
# write and Storage write or removal, with the JavaScript stack so the script can be named.
_HOOK = r"""
(() => {
  if (window.__retentionHooked) return;
  Object.defineProperty(window, '__retentionHooked', {value: true, enumerable: false});
  const report = (entry) => {
    entry.frame = String(location.href); entry.origin = String(location.origin);
    entry.time = Date.now(); entry.stack = String(new Error().stack || '');
    try { Promise.resolve(window.__retentionReport(entry)).catch(() => {}); } catch (e) {}
  };
  const desc = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
  if (desc && desc.set) {
    Object.defineProperty(Document.prototype, 'cookie', {
      configurable: true, enumerable: desc.enumerable,
      get() { return desc.get.call(this); },
      set(value) { report({kind: 'cookie', value: String(value)}); return desc.set.call(this, value); },
    });
  }
  const kindOf = (store) => {
    try { if (store === window.localStorage) return 'localStorage'; } catch (e) {}
    return 'sessionStorage';
  };
  const setItem = Storage.prototype.setItem, removeItem = Storage.prototype.removeItem;
  Storage.prototype.setItem = function (key, value) {
    report({kind: kindOf(this), key: String(key)});
    return setItem.apply(this, arguments);
  };
  Storage.prototype.removeItem = function (key) {
    report({kind: kindOf(this), key: String(key), removed: true});
    return removeItem.apply(this, arguments);
  };
})();
"""
_STACK_URL = re.compile(r"(https?://[^\s()]+?):\d+:\d+")


class BrowserError(RetentionError):
    """The page could not be opened or the scenario could not be played."""


@dataclass(slots=True)
class BrowserResult:
    """What one visit observed in every scenario, plus parse anomalies of its headers."""
    observations: list[Observation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # browser version, settle, cookie mode


@dataclass(slots=True)
class _Write:
    """One attempt to set or delete a cookie, from a header or a script."""
    cookie: SetCookie
    url: str  # the response URL, or the writing frame's URL
    when: datetime
    set_by: str
    scenario: str
    reason: str = ""  # Chromium's blockedReasons, when it refused a header cookie
    partition: str | None = None


@dataclass  # no slots: Playwright tags the bound methods it is given as callbacks
class _Recorder:
    """Collects DevTools and hook events of one browser profile, stamped with the scenario."""
    url: str
    scenario: str = BEFORE
    hops: dict[str, list[str]] = field(default_factory=dict)  # requestId -> URLs of its redirect chain
    extra: list[tuple[str, int, dict[str, Any], str, datetime]] = field(default_factory=list)
    extra_count: dict[str, int] = field(default_factory=dict)
    scripts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, int, Request]] = field(default_factory=list)  # (requestId, hop, request)
    statuses: dict[tuple[str, int], int] = field(default_factory=dict)  # (requestId, hop) -> HTTP status
    known_cookies: set[tuple[str, str, str, str]] = field(default_factory=set)
    known_storage: set[tuple[str, str, str]] = field(default_factory=set)
    keep: bool = True  # False while replaying a scenario that was already recorded

    def on_request(self, event: dict[str, Any]) -> None:
        """Network.requestWillBeSent: the request, its initiator and its redirect chain."""
        rid, request = event.get("requestId", ""), event.get("request") or {}
        url = str(request.get("url", ""))
        redirect = event.get("redirectResponse") or {}
        previous = redirect.get("url")
        hops = self.hops.setdefault(rid, [])
        hops.append(url)
        if redirect.get("status"):
            self.statuses[(rid, len(hops) - 2)] = int(redirect["status"])
        if not self.keep or not url.startswith(("http:", "https:")):
            return
        initiator = event.get("initiator") or {}
        frames = (initiator.get("stack") or {}).get("callFrames") or []
        who = initiator.get("url") or next((f.get("url") for f in frames if f.get("url")), "") \
            or str(initiator.get("type", ""))
        self.requests.append((rid, len(hops) - 1, Request(
            url=url, method=str(request.get("method", "GET")), resource_type=str(event.get("type", "")),
            initiator=who, frame_url=str(event.get("documentURL", "")), scenario=self.scenario,
            redirected_from=previous)))

    def on_response(self, event: dict[str, Any]) -> None:
        """Network.responseReceived: the final status of a request (redirects come with the next hop)."""
        rid = event.get("requestId", "")
        status = (event.get("response") or {}).get("status")
        if status and self.hops.get(rid):
            self.statuses[(rid, len(self.hops[rid]) - 1)] = int(status)

    def scenario_requests(self, scenario: str) -> list[Request]:
        """The requests of *scenario*, with the status each got."""
        return [replace(r, status=self.statuses.get((rid, hop))) for rid, hop, r in self.requests
                if r.scenario == scenario]

    def on_extra_info(self, event: dict[str, Any]) -> None:
        """Network.responseReceivedExtraInfo: the raw Set-Cookie lines and what was blocked."""
        rid = event.get("requestId", "")
        index = self.extra_count.get(rid, 0)
        self.extra_count[rid] = index + 1
        if self.keep:
            self.extra.append((rid, index, event, self.scenario, datetime.now(timezone.utc)))

    def on_script(self, source: Any, entry: dict[str, Any]) -> None:
        """The hook's report of a document.cookie or Storage write."""
        if self.keep and isinstance(entry, dict):
            self.scripts.append(entry | {"scenario": self.scenario})

    def header_writes(self, scenario: str) -> tuple[list[_Write], list[Finding]]:
        """Every Set-Cookie line received during *scenario*, with Chromium's verdict on it."""
        writes: list[_Write] = []
        findings: list[Finding] = []
        for rid, index, event, when, received in self.extra:
            if when != scenario:
                continue
            chain = self.hops.get(rid, [])
            url = chain[index] if index < len(chain) else (chain[-1] if chain else self.url)
            blocked = {b.get("cookieLine", ""): ", ".join(b.get("blockedReasons") or [])
                       for b in event.get("blockedCookies") or []}
            partition = (event.get("cookiePartitionKey") or {}).get("topLevelSite")
            for name, value in (event.get("headers") or {}).items():
                if name.lower() != "set-cookie":
                    continue
                for line in split_header_value(str(value)):
                    parsed = parse_set_cookie(line)
                    findings += anomaly_findings(parsed.anomalies, parsed.cookie.name if parsed.cookie else None,
                                                 line, f"Set-Cookie header of {url}")
                    if parsed.cookie is not None:
                        writes.append(_Write(
                            parsed.cookie, url, received, f"Set-Cookie header of {url}",
                            scenario, reason=blocked.get(line, ""),
                            partition=partition if parsed.cookie.partitioned else None))
        return writes, findings

    def script_writes(self, scenario: str) -> list[_Write]:
        """Every document.cookie write made during *scenario*."""
        writes = []
        for entry in self.scripts:
            if entry.get("scenario") != scenario or entry.get("kind") != "cookie":
                continue
            parsed = parse_set_cookie(str(entry.get("value", "")))
            if parsed.cookie is None:
                continue
            frame = str(entry.get("frame", self.url))
            when = datetime.fromtimestamp(float(entry.get("time", 0)) / 1000, timezone.utc)
            partition = _site(self.url) if parsed.cookie.partitioned else None  # the top-level page's jar
            writes.append(_Write(parsed.cookie, frame, when, f"script {_script_url(entry)}", scenario,
                                 partition=partition))
        return writes


def observe_url(url: str, *, click: str | None = None, reject: str | None = None, accept: str | None = None,
                settle: float = 2.0, executable: str | None = None, timeout: float = 30.0,
                third_party_cookies: str = "allow", extra_args: tuple[str, ...] = ()) -> BrowserResult:
    """Visit *url* in the ``before-consent`` scenario and, when selectors are given, in
    ``after-reject`` (*reject*), ``after click SELECTOR`` (*click*) and ``after-accept`` (*accept*)."""
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
    if third_party_cookies not in THIRD_PARTY_COOKIES:
        raise BrowserError(f"--third-party-cookies expects allow or block, found {third_party_cookies!r}")

    result = BrowserResult(meta={"settle_seconds": settle, "third_party_cookies": third_party_cookies})
    session = _Session(url, exe, settle, timeout, third_party_cookies, extra_args, PlaywrightError)
    try:
        with sync_playwright() as pw:
            steps: list[tuple[str, str | None]] = [(BEFORE, None)]
            steps += [(name, sel) for name, sel in ((AFTER_REJECT, reject), (f"after click {click}", click)) if sel]
            session.run(pw, steps, result)
            if accept:
                session.run(pw, [(BEFORE, None), (AFTER_ACCEPT, accept)], result, replay=True)
    except PlaywrightError as exc:
        raise BrowserError(f"browser failed: {_first_line(exc)}") from None
    return result


@dataclass(slots=True)
class _Session:
    """Launches one fresh profile per call of ``run`` and plays scenarios in it."""
    url: str
    exe: str
    settle: float
    timeout: float
    third_party_cookies: str
    extra_args: tuple[str, ...]
    error: type[Exception]

    def run(self, pw: Any, steps: list[tuple[str, str | None]], result: BrowserResult,
            replay: bool = False) -> None:
        """Play *steps* (scenario, selector to click first) in a new temporary profile.
        With *replay*, the first step only brings the page to where the next one starts."""
        with tempfile.TemporaryDirectory(prefix="retention-chromium-") as profile:
            _write_preferences(Path(profile), self.third_party_cookies)
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=self.exe, headless=True, timeout=self.timeout * 1000,
                args=list(CHROMIUM_ARGS) + list(self.extra_args))
            try:
                self._play(context, steps, result, replay)
            finally:
                context.close()

    def _play(self, context: Any, steps: list[tuple[str, str | None]], result: BrowserResult,
              replay: bool) -> None:
        rec = _Recorder(self.url, keep=not replay)
        context.expose_binding("__retentionReport", rec.on_script)
        context.add_init_script(_HOOK)
        page = context.pages[0] if context.pages else context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", rec.on_request)
        cdp.on("Network.responseReceivedExtraInfo", rec.on_extra_info)
        cdp.on("Network.responseReceived", rec.on_response)
        cdp.send("Network.enable")
        result.meta.setdefault("browser", cdp.send("Browser.getVersion").get("product", "unknown"))
        for number, (scenario, selector) in enumerate(steps):
            rec.scenario = scenario
            rec.keep = not (replay and number == 0)
            if number == 0:
                try:
                    page.goto(self.url, wait_until="load", timeout=self.timeout * 1000)
                except self.error as exc:
                    raise BrowserError(f"cannot open {self.url}: {_first_line(exc)}") from None
            if selector:
                try:
                    page.click(selector, timeout=min(self.timeout, 10) * 1000)
                except self.error as exc:
                    raise BrowserError(f"click {selector!r} ({scenario}): {_first_line(exc)}") from None
            _settle(page, self.settle, self.error)
            if rec.keep:
                _snapshot(rec, cdp, page, scenario, result)
            else:  # what the replayed step left is not news in the next scenario
                rec.known_cookies |= {_jar_key(c) for c in cdp.send("Storage.getCookies").get("cookies", [])}
                rec.known_storage |= _frame_storage(page)


def _write_preferences(profile: Path, third_party_cookies: str) -> None:
    """Chromium's own setting for third-party cookies, as a visitor would set it: profile
    preferences are the only switch that applies to a normal (non-incognito) profile."""
    block = third_party_cookies == "block"
    (profile / "Default").mkdir(parents=True, exist_ok=True)
    prefs = {"profile": {"cookie_controls_mode": 1 if block else 0, "block_third_party_cookies": block}}
    (profile / "Default" / "Preferences").write_text(json.dumps(prefs), encoding="utf-8")


def _settle(page: Any, seconds: float, error: type[Exception]) -> None:
    """Let late scripts (tag managers, banners) run: network idle, then the settle window."""
    try:
        page.wait_for_load_state("networkidle", timeout=(seconds + 5) * 1000)
    except error:
        pass  # long-polling pages never go idle; the fixed window below still applies
    page.wait_for_timeout(seconds * 1000)


def _snapshot(rec: _Recorder, cdp: Any, page: Any, scenario: str, result: BrowserResult) -> None:
    """Turn everything *scenario* wrote into observations, judged against the jar and storage now."""
    source = f"browser:{rec.url}"
    result.scenarios.append(scenario)
    headers, findings = rec.header_writes(scenario)
    result.findings += findings
    jar = {_jar_key(c): c for c in cdp.send("Storage.getCookies").get("cookies", [])}
    result.observations += _cookie_observations(headers + rec.script_writes(scenario), jar, rec, page.url,
                                                source, scenario)
    now = datetime.now(timezone.utc)
    for key, cookie in jar.items():
        if key in rec.known_cookies:
            continue
        rec.known_cookies.add(key)  # written where neither hook nor DevTools saw it (CookieStore API)
        result.observations.append(_jar_observation(cookie, key, now, page.url, source, scenario))
    result.observations += _storage_observations(rec, page, source, scenario)
    result.requests += rec.scenario_requests(scenario)


def _cookie_observations(writes: list[_Write], jar: dict[tuple[str, str, str, str], Any], rec: _Recorder,
                         page_url: str, source: str, scenario: str) -> list[Observation]:
    """One observation per cookie key written in the scenario: its last setting write, with
    the state it ended in (stored, deleted again, or rejected by the browser)."""
    last: dict[tuple[str, str, str, str], _Write] = {}
    deleted: set[tuple[str, str, str, str]] = set()
    for write in sorted(writes, key=lambda w: w.when):
        key = _write_key(write)
        lifetime = write.cookie.lifetime(write.when)
        if lifetime is not None and lifetime <= timedelta(0):
            deleted.add(key)  # a deletion stores nothing; it only ends what was set before
        else:
            last[key] = write
            deleted.discard(key)
    out = []
    for key, write in last.items():
        rec.known_cookies.add(key)
        if write.reason:
            state, reason = "rejected", write.reason
        elif key in jar:
            state, reason = "stored", ""
        elif key in deleted:
            state, reason = "deleted", "deleted again before the end of the scenario"
        else:
            state, reason = "rejected", "not in the cookie jar after the write (refused silently)"
        parts = urlsplit(write.url)
        out.append(Observation(
            name=write.cookie.name, storage="cookie", domain=key[1] or None, host_only=write.cookie.domain is None,
            path=key[2], secure=write.cookie.secure, http_only=write.cookie.http_only,
            same_site=write.cookie.same_site, lifetime=write.cookie.lifetime(write.when), page_url=page_url,
            https=parts.scheme == "https", set_by=write.set_by, source=source, scenario=scenario,
            raw=write.cookie.raw, state=state, reason=reason, partitioned=write.cookie.partitioned,
            partition=write.partition))
    return out


def _write_key(write: _Write) -> tuple[str, str, str, str]:
    parts = urlsplit(write.url)
    domain = write.cookie.domain or (parts.hostname or "").lower()
    return (write.cookie.name, domain, write.cookie.path or default_path(parts.path), write.partition or "")


def _jar_key(cookie: dict[str, Any]) -> tuple[str, str, str, str]:
    partition = (cookie.get("partitionKey") or {}).get("topLevelSite", "") if isinstance(
        cookie.get("partitionKey"), dict) else str(cookie.get("partitionKey") or "")
    return (cookie["name"], str(cookie.get("domain", "")).lstrip(".").lower(), cookie.get("path") or "/", partition)


def _jar_observation(cookie: dict[str, Any], key: tuple[str, str, str, str], now: datetime, page_url: str,
                     source: str, scenario: str) -> Observation:
    expires = cookie.get("expires", -1)
    lifetime = None if cookie.get("session") or expires is None or expires < 0 else max(
        datetime.fromtimestamp(expires, timezone.utc) - now, timedelta(0))
    return Observation(
        name=key[0], storage="cookie", domain=key[1], host_only=not str(cookie.get("domain", "")).startswith("."),
        path=key[2], secure=bool(cookie.get("secure")), http_only=bool(cookie.get("httpOnly")),
        same_site=cookie.get("sameSite"), lifetime=lifetime, page_url=page_url,
        https=cookie.get("sourceScheme") != "NonSecure",
        set_by="unknown (found in the cookie jar; not written by a header or document.cookie)",
        source=source, scenario=scenario, partitioned=bool(key[3]), partition=key[3] or None)


def _storage_observations(rec: _Recorder, page: Any, source: str, scenario: str) -> list[Observation]:
    """Storage keys written in the scenario (stored or removed again), and keys found in any
    frame's storage that no hooked write explains."""
    present = _frame_storage(page)
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in rec.scripts:
        if entry.get("scenario") == scenario and entry.get("kind") in ("localStorage", "sessionStorage"):
            key = (str(entry.get("origin", "")), str(entry["kind"]), str(entry.get("key", "")))
            if not entry.get("removed"):
                last[key] = entry
    out = []
    for key, entry in last.items():
        rec.known_storage.add(key)
        out.append(_storage_observation(key, f"script {_script_url(entry)}", str(entry.get("frame", "")), source,
                                        scenario, "stored" if key in present else "deleted"))
    for key in sorted(present - rec.known_storage):
        rec.known_storage.add(key)
        out.append(_storage_observation(key, f"found in {key[1]} of {key[0]}", key[0], source, scenario, "stored"))
    return out


def _frame_storage(page: Any) -> set[tuple[str, str, str]]:
    """(origin, storage, key) of every key in every frame's localStorage and sessionStorage."""
    present: set[tuple[str, str, str]] = set()
    for frame in page.frames:
        try:
            data = frame.evaluate("""() => ({origin: location.origin,
                local: Object.keys(window.localStorage), session: Object.keys(window.sessionStorage)})""")
        except Exception:  # noqa: BLE001 - opaque origins (about:blank, sandboxed, blocked) have no storage
            continue
        for storage, keys in (("localStorage", data["local"]), ("sessionStorage", data["session"])):
            present |= {(data["origin"], storage, key) for key in keys}
    return present


def _storage_observation(key: tuple[str, str, str], set_by: str, frame: str, source: str, scenario: str,
                         state: str) -> Observation:
    origin, storage, name = key
    return Observation(name=name, storage=storage, domain=urlsplit(origin).hostname or None, page_url=frame,
                       https=origin.startswith("https:"), set_by=set_by, source=source, scenario=scenario,
                       state=state, reason="removed again before the end of the scenario" if state == "deleted" else "")


def _site(url: str) -> str:
    """Chromium's 'top-level site' of a URL: scheme and registrable domain."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{registrable_domain(parts.hostname or '')}"


def _script_url(entry: dict[str, Any]) -> str:
    """The first script URL in the writer's stack; an inline script is named by its page."""
    for match in _STACK_URL.finditer(entry.get("stack", "")):
        return match.group(1)
    return f"inline or evaluated script in {entry.get('frame', '?')}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
