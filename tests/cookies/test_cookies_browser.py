"""A real headless Chromium visit: a cookie set by a header and one set by JavaScript.

Skips without Chromium or Playwright, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention_cookies.browser import DEFAULT_CHROMIUM
from retention_cookies.cli import cookies
from retention_core.testing import require_service

pytestmark = pytest.mark.browser

PAGE = b"""<!doctype html><html><head><title>demo</title></head><body>
<button id="accept">Accept all</button>
<script src="/app.js"></script>
<script>
document.getElementById('accept').addEventListener('click', function () {
  document.cookie = '_ga=GA1.1.42.42; Max-Age=34128000; Path=/';
});
</script></body></html>"""
SCRIPT = b"document.cookie = 'js_pref=compact; Max-Age=3600; Path=/; SameSite=Lax';\n" \
         b"sessionStorage.setItem('draft_reply', 'hello');\n"

DECLARED = """\
version: 1
claim: essential-only
first_party_domains: [127.0.0.1]
services:
  - name: app
    category: strictly_necessary
    basis: user_input
    justification: keeps the reply the agent is typing
    cookies:
      - {name: srv_session, lifetime: session, attributes: {http_only: true, same_site: Lax}}
      - {name: draft_reply, storage: sessionStorage}
  - name: ui
    category: strictly_necessary
    basis: ui_customization
    justification: remembers the compact layout the user chose
    cookies:
      - {name: js_pref, lifetime: 1d, attributes: {http_only: false}}
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body, kind = (SCRIPT, "application/javascript") if self.path == "/app.js" else (PAGE, "text/html")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/":
            self.send_header("Set-Cookie", "srv_session=abc123; Path=/; HttpOnly; SameSite=Lax")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _need_browser() -> None:
    missing = []
    chromium = os.environ.get("RETENTION_CHROMIUM") or DEFAULT_CHROMIUM
    if not Path(chromium).exists():
        missing.append(f"Chromium at {chromium} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install 'retention[cookies]')")
    require_service(not missing, f"the browser test's {' and '.join(missing)}")


def check(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(cookies, ["check", *args, "--settle", "0.5", "--format", "json"])
    assert result.exit_code in (0, 1), result.output + result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_sees_cookie_from_header_and_from_javascript(site: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\nclaim: essential-only\nservices: []\n")
    code, report = check("-d", str(empty), "--url", site)
    seen = {o["name"]: o for o in report["observations"]}
    assert {"srv_session", "js_pref", "draft_reply"} <= set(seen)
    assert seen["srv_session"]["set_by"] == f"Set-Cookie header of {site}"
    assert seen["srv_session"]["http_only"] is True and seen["srv_session"]["lifetime_seconds"] is None
    assert seen["js_pref"]["set_by"] == f"script {site}app.js"
    assert 3500 <= seen["js_pref"]["lifetime_seconds"] <= 3600
    assert seen["draft_reply"]["storage"] == "sessionStorage"
    assert seen["draft_reply"]["set_by"] == f"script {site}app.js"
    undeclared = {f["subject"].split()[1] for f in report["findings"] if f["rule"] == "CK001"}
    assert {"srv_session", "js_pref", "draft_reply"} <= undeclared
    assert code == 1


def test_declared_site_passes_until_the_banner_is_accepted(site: str, tmp_path: Path) -> None:
    decl = tmp_path / "cookies.yaml"
    decl.write_text(DECLARED)
    code, report = check("-d", str(decl), "--url", site)
    assert code == 0, report["findings"]
    code, report = check("-d", str(decl), "--url", site, "--click", "#accept")
    assert code == 1
    [ga] = [f for f in report["findings"] if f["rule"] == "CK001"]
    assert "_ga" in ga["subject"] and "Google Analytics" in ga["message"]
    assert "scenario: after click #accept" in ga["evidence"]
