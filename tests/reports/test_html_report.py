"""The HTML report's content, checked by parsing it (the browser test checks the rendering)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from retention_core import html_report
from retention_core.model import Action, Decision, Record
from retention_core.report import RunReport
from retention_core.spool import Spool
from retention_core.testing import memory

AS_OF = "2026-06-01T12:00:00Z"


class Cells(HTMLParser):
    """Collects table rows (with their class) and every tag's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._row_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._row, self._row_class = [], dict(attrs).get("class") or ""
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def render(cli: Any, demo: Any, tmp_path: Path, *extra: str) -> tuple[str, Cells]:
    out = tmp_path / "run.html"
    result = cli("run", "-c", demo.policy, "--as-of", AS_OF, "--report", out, *extra)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    parser = Cells()
    parser.feed(text)
    return text, parser


def test_report_is_self_contained(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    text, parsed = render(retention_cli, demo, tmp_path)
    assert text.startswith("<!DOCTYPE html>")
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not re.search(r"(src|href)\s*=", text)
    assert "url(" not in text and "@import" not in text
    csp = [a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0] or "")


def test_holds_table_counts_what_each_hold_protected(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    _, parsed = render(retention_cli, demo, tmp_path)
    (row,) = [cells for _, cells in parsed.rows if cells and cells[0] == "LH-2026-014"]
    assert row[1:4] == ["legal", "subject = globex", "Smith v. Globex"]
    assert row[-1] == "4"  # three calls and one chat of globex


def test_overdue_erasure_requests_are_highlighted(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    text, parsed = render(retention_cli, demo, tmp_path)
    (row_class, cells) = next((c, r) for c, r in parsed.rows if "dana" in r)
    assert row_class == "overdue"
    assert cells[3:5] == ["2026-04-22", "2026-05-22"]  # received, and due 30 days later
    assert "OVERDUE" in cells[5]
    assert "1 erasure request overdue" in text


def test_decisions_chart_has_one_segment_per_category_and_decision(retention_cli: Any, demo: Any,
                                                                   tmp_path: Path) -> None:
    _, parsed = render(retention_cli, demo, tmp_path)
    bars = {(a["data-category"], a["data-action"]): int(a["data-count"] or 0) for t, a in parsed.tags
            if t == "rect" and "bar" in (a.get("class") or "")}
    assert bars == {("voice_recording", "delete"): 9, ("voice_recording", "hold"): 3,
                    ("voice_recording", "keep"): 6, ("chat_transcript", "delete"): 1,
                    ("chat_transcript", "hold"): 1, ("chat_transcript", "keep"): 2}


def test_forecast_chart_has_26_weeks_with_the_due_records(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    _, parsed = render(retention_cli, demo, tmp_path)
    weeks = [a for t, a in parsed.tags if t == "rect" and a.get("class") == "week"]
    records = [int(a["data-value"] or 0) for a in weeks[:26]]
    size = [int(a["data-value"] or 0) for a in weeks[26:]]
    assert len(weeks) == 52
    assert records[0] == 1 and records[4] == 3 and sum(records) == 4
    assert size[0] == 200 and size[4] == 6000


def test_items_are_capped_with_a_pointer_to_the_csv(retention_cli: Any, demo: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "ITEM_CAP", 5)
    text, parsed = render(retention_cli, demo, tmp_path)
    assert "Showing the first 5 of 22 items" in text
    table = text[text.index('id="items-table"'):]
    shown = Cells()
    shown.feed(table)
    body = [cells for _, cells in shown.rows if cells[0] != "decision"]
    assert len(body) == 5
    assert [cells[0] for cells in body] == ["delete"] * 5  # what is destroyed comes first


def test_json_report_keeps_its_keys_and_adds_holds(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    assert retention_cli("run", "-c", demo.policy, "--as-of", AS_OF, "--report", out).exit_code == 0
    data = json.loads(out.read_text())
    assert list(data)[:10] == ["run_id", "dry_run", "as_of", "summary", "outcomes", "erasure_requests", "sources",
                               "limit_tripped", "status", "holds"]
    assert list(data)[-1] == "items"
    assert [(h["id"], h["protected"]) for h in data["holds"]] == [("LH-2026-014", 4)]
    assert data["bytes"]["delete"] == sum(1000 * n for n in (1, 2, 3)) * 3 + 300


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    report = RunReport(run_id="r1", dry_run=True, as_of=now, started_at=now, spool=Spool())
    try:
        report.spool.add(Record("s", '<script>alert(1)</script>/"x".wav', now, size=3, subject="<b>",
                                category="c&d"), Decision(Action.SKIP, "unknown category 'c&d'"))
        report.spool.add(Record("s", "bad-\udcff-name", now, size=1, category="c"), Decision(Action.SKIP, "x"))
        out = tmp_path / "r.html"
        html_report.write_html(report, out)
    finally:
        report.close()
    text = out.read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/&#34;x&#34;.wav" in text  # MarkupSafe's spelling of &quot;
    assert "bad-\\xff-name" in text


def test_failed_deletions_are_flagged_and_listed_first(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    memory.fault(demo.recordings, "kid/call-3.wav", times=100)
    out = tmp_path / "enforced.html"
    result = retention_cli("run", "-c", demo.policy, "--report", out)
    assert result.exit_code == 1
    text = out.read_text(encoding="utf-8")
    assert "1 deletions failed." in text and "ENFORCED — failed-deletions" in text
    table = Cells()
    table.feed(text[text.index('id="items-table"'):])
    first = next(cells for _, cells in table.rows if cells[0] != "decision")
    assert first[2] == "kid/call-3.wav" and first[8].startswith("failed: ")
