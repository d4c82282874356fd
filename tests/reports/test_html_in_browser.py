"""The HTML report in a real headless Chromium (Debian's package), with JavaScript disabled.

Skips when Chromium or Playwright is missing, except under CI=true where that fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retention_core.testing import require_service

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
AS_OF = "2026-06-01T12:00:00Z"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require_service(sync_playwright is not None, "the playwright package")
    require_service(Path(CHROMIUM).exists() or shutil.which("chromium") is not None, "Chromium (/usr/bin/chromium)")
    with sync_playwright() as p:  # type: ignore[misc]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.mark.browser
def test_report_renders_offline_without_javascript(browser: Any, retention_cli: Any, demo: Any,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = retention_cli("run", "-c", demo.policy, "--as-of", AS_OF, "--report", out)
    assert result.exit_code == 0, result.output

    context = browser.new_context(java_script_enabled=False, viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(out.as_uri())
        assert page.title().startswith("retention run ")
        # Every chart is there and has a real size on screen.
        for chart in ("#decisions-chart", "#forecast-records", "#forecast-bytes"):
            box = page.locator(chart).bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 50, chart
        assert page.locator("#decisions-chart rect.bar").count() == 6
        assert page.locator("#forecast-records rect.week").count() == 26
        tall = page.locator('#forecast-records rect.week[data-week="4"]').bounding_box()
        assert tall is not None and tall["height"] > 100  # the tallest week fills the plot
        assert page.locator("tr.overdue").count() == 1
        assert page.locator("tr.overdue").get_by_text("OVERDUE").is_visible()
        held = page.locator('tr[data-hold="LH-2026-014"] td.protected')
        assert held.inner_text() == "4"
        # The red of an overdue row is really painted (CSS applied, not just present).
        assert page.locator("tr.overdue td").first.evaluate(
            "e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        context.close()
    assert requests == [out.as_uri()], "the report must not fetch anything"
    assert errors == []
