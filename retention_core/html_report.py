"""The run as one self-contained HTML file: inline CSS and SVG, no script, no network.

A privacy officer opens it from an e-mail attachment or an evidence folder years later, so it
must render offline in any browser and print cleanly. A Content-Security-Policy forbids
every external fetch; the charts are plain SVG with numbers as text and a data table
beside them. The items table is capped; the CSV report carries the full list.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from . import __version__
from .files import atomic_write
from .forecast import Forecast, human_bytes
from .model import Action
from .report import RunReport, Tally
from .spool import Item
from .text import printable

#: Items shown in the table; the CSV report lists every item.
ITEM_CAP = 500
FORECAST_WEEKS = 26

COLORS = {"delete": "#b03a2e", "anonymize": "#7d3c98", "hold": "#b9770e", "skip": "#707b7c", "keep": "#2874a6"}
#: Table order: what was (or would be) destroyed first, then what a person must look at.
RANK = {"delete": 0, "anonymize": 1, "hold": 2, "skip": 3, "keep": 4}

CSS = """
:root { --ink:#1b2631; --muted:#566573; --line:#d5d8dc; --bg:#fbfcfc; --warn:#fdebd0; --bad:#fadbd8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--bg); margin: 0 auto; padding: 24px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         vertical-align: middle; color: #fff; background: #1e8449; }
.badge.dry { background: #2874a6; } .badge.bad { background: #b03a2e; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; } .card span { color: var(--muted); font-size: 12px; }
.alert { background: var(--bad); border-left: 4px solid #b03a2e; padding: 8px 12px; margin: 10px 0; }
.note { background: var(--warn); border-left: 4px solid #b9770e; padding: 8px 12px; margin: 10px 0; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eaeded; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.nowrap { white-space: nowrap; }
tr.overdue td { background: var(--bad); font-weight: 600; }
td.loc { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.act { font-weight: 600; } .act.delete { color: #b03a2e; } .act.anonymize { color: #7d3c98; }
.act.hold { color: #b9770e; } .act.skip { color: #707b7c; } .act.keep { color: #2874a6; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #1b2631; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
details { margin-top: 8px; } summary { cursor: pointer; color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@media print { body { background: #fff; padding: 0; } details { display: block; }
               tr, figure { break-inside: avoid; } }
"""


def write_html(report: RunReport, path: Path) -> None:
    """Render *report* to *path*, replaced atomically."""
    counts = Tally()
    forecast = Forecast.for_weeks(report.as_of, FORECAST_WEEKS)

    def observed(items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            counts.add(item)
            forecast.add(item.record, item.decision)
            yield item

    # One streaming pass: tallies, forecast and the capped table (a bounded heap).
    shown = heapq.nsmallest(ITEM_CAP, observed(report.items()), key=_order)
    html = render(report, counts, forecast, shown)
    with atomic_write(path) as fh:
        fh.write(html)


def render(report: RunReport, counts: Tally, forecast: Forecast, shown: Sequence[Item]) -> str:
    """The whole document as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No fetch of any kind: the file must read the same offline, years from now.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>retention run {_e(report.run_id)}</title>",
        f"<style>{CSS}</style></head><body>",
        _header(report),
        _summary(report, counts, forecast),
        _sources(report),
        _decisions_chart(counts),
        _holds(report),
        _requests(report),
        _forecast(forecast),
        _items(report, counts, shown),
        f"<footer>retention {_e(__version__)} · report written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC · run {_e(report.run_id)}</footer>",
        "</body></html>",
    ]
    return "\n".join(parts)


# -- sections ---------------------------------------------------------------------------------------
def _header(report: RunReport) -> str:
    if report.dry_run:
        badge = '<span class="badge dry">DRY-RUN — nothing deleted</span>'
    elif report.status == "ok":
        badge = '<span class="badge">ENFORCED</span>'
    else:
        badge = f'<span class="badge bad">ENFORCED — {_e(report.status)}</span>'
    took = ""
    if report.finished_at is not None:
        took = f" · took {(report.finished_at - report.started_at).total_seconds():.1f} s"
    return (f"<h1>Retention run {badge}</h1>"
            f'<p class="meta">run <code>{_e(report.run_id)}</code> · evaluated as of '
            f"<b>{report.as_of:%Y-%m-%d %H:%M} UTC</b> · started {report.started_at:%Y-%m-%d %H:%M:%S} UTC"
            f"{took}</p>")


def _summary(report: RunReport, counts: Tally, forecast: Forecast) -> str:
    total = report.summary()
    scanned = sum(s.scanned for s in report.sources.values())
    due_bytes = counts.bytes_by_action["delete"] + counts.bytes_by_action["anonymize"]
    verb = "would be" if report.dry_run else "were"
    cards = [("scanned", f"{scanned:,}", "records scanned")]
    cards += [(a, f"{total[a]:,}", _ACTION_LABEL[a]) for a in ("delete", "anonymize", "hold", "skip", "keep")]
    cards.append(("bytes", human_bytes(due_bytes), f"{verb} deleted or anonymized"))
    coming = forecast.total_in_window()
    cards.append(("soon", f"{coming.records:,}", f"due in the next {FORECAST_WEEKS} weeks"))
    out = ['<h2 id="summary">Summary</h2><div class="cards">']
    out += [f'<div class="card {k}"><b>{v}</b><span>{_e(label)}</span></div>' for k, v, label in cards]
    out.append("</div>")
    if not report.dry_run:
        outcomes = report.outcomes()
        done = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in outcomes.items() if v) or "nothing to do"
        out.append(f"<p>Outcomes reported by storage: {_e(done)}.</p>")
        if outcomes["failed"]:
            out.append(f'<div class="alert"><b>{outcomes["failed"]:,} deletions failed.</b> '
                       "They are listed first in the items table; the next run retries them.</div>")
        if outcomes["changed"]:
            out.append(f'<div class="note">{outcomes["changed"]:,} records had changed in storage since the scan '
                       "(re-created, replaced or modified) and were kept; the next run decides them again.</div>")
    if report.limit_tripped:
        out.append(f'<div class="alert"><b>Safety limit tripped:</b> {_e(report.limit_tripped)}.</div>')
    for warning in report.warnings:
        out.append(f'<div class="alert">{_e(warning)}</div>')
    if counts.refused:
        out.append(f'<div class="note">{counts.refused:,} records were refused by storage itself '
                   "(an object lock or retention setting) and are kept.</div>")
    return "\n".join(out)


def _sources(report: RunReport) -> str:
    rows = []
    for name, s in report.sources.items():
        decided = ", ".join(f"{k} {v:,}" for k, v in s.decisions.items() if v) or "—"
        done = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s.outcomes.items() if v) or "—"
        problems = ([f"listing incomplete: {s.problems:,} item(s) could not be listed and were kept"]
                    + [f"· {p}" for p in s.problem_samples]) if s.problems else []
        warn = "<br>".join(_e(w) for w in [*s.warnings, *problems]) or "—"
        rows.append(f"<tr><td>{_e(name)}</td><td class=num>{s.scanned:,}</td><td>{_e(decided)}</td>"
                    f"<td>{_e(done)}</td><td>{warn}</td></tr>")
    return ('<h2 id="sources">Sources</h2><table><thead><tr><th>source</th><th class=num>scanned</th>'
            "<th>decisions</th><th>outcomes</th><th>warnings</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _decisions_chart(counts: Tally) -> str:
    categories = sorted(counts.by_category)
    if not categories:
        return '<h2 id="decisions">Decisions per category</h2><p>No records were scanned.</p>'
    label_w, bar_w, row_h = 170, 560, 26
    widest = max(sum(row.values()) for row in counts.by_category.values()) or 1
    height = row_h * len(categories) + 10
    svg = [f'<svg id="decisions-chart" role="img" width="{label_w + bar_w + 60}" height="{height}" '
           f'viewBox="0 0 {label_w + bar_w + 60} {height}" aria-label="Decisions per category">']
    for i, category in enumerate(categories):
        row = counts.by_category[category]
        y = 5 + i * row_h
        svg.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_e(category)}</text>')
        x = float(label_w)
        for action in ("delete", "anonymize", "hold", "skip", "keep"):
            n = row.get(action, 0)
            if not n:
                continue
            w = bar_w * n / widest
            svg.append(f'<rect class="bar {action}" data-category="{_e(category)}" data-action="{action}" '
                       f'data-count="{n}" x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
                       f'fill="{COLORS[action]}"><title>{_e(category)}: {action} {n:,}</title></rect>')
            if w >= 22:
                svg.append(f'<text x="{x + w / 2:.1f}" y="{y + 15}" text-anchor="middle" '
                           f'style="fill:#fff">{n:,}</text>')
            x += w
        svg.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{sum(row.values()):,}</text>')
    svg.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{a}</span>' for a, c in COLORS.items())
    table = _table(["category", *COLORS], [[c, *[f"{counts.by_category[c][a]:,}" for a in COLORS]]
                                           for c in categories], numeric_from=1)
    return ('<h2 id="decisions">Decisions per category</h2><figure><figcaption>Records per category, '
            f'by decision</figcaption>{"".join(svg)}<div class="legend">{legend}</div>'
            f"<details><summary>numbers</summary>{table}</details></figure>")


def _holds(report: RunReport) -> str:
    head = '<h2 id="holds">Holds</h2>'
    if not report.holds:
        return head + "<p>No holds are defined.</p>"
    protected_by = report.protected()
    rows = []
    for h in sorted(report.holds, key=lambda h: (not h.active, h.id)):
        scope = ", ".join(f"{k} = {v}" for k, v in h.scope.as_dict().items())
        status = "active" if h.active else f"released {h.released_at:%Y-%m-%d}" if h.released_at else "released"
        protected = protected_by.get(h.id, 0)
        rows.append(f'<tr data-hold="{_e(h.id)}"><td><b>{_e(h.id)}</b></td><td>{_e(h.kind)}</td>'
                    f"<td>{_e(scope)}</td><td>{_e(h.reason)}</td><td>{_e(status)}</td><td>{_e(h.origin)}</td>"
                    f'<td class="num protected">{protected:,}</td></tr>')
    return (head + "<p>A record stays held while any active hold covers it; holds win over every rule "
            "and every erasure request.</p><table><thead><tr><th>hold</th><th>kind</th><th>scope</th>"
            "<th>reason</th><th>status</th><th>from</th><th class=num>records protected in this run</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _requests(report: RunReport) -> str:
    head = '<h2 id="requests">Erasure requests</h2>'
    if not report.erasure_requests:
        return head + "<p>No erasure requests.</p>"
    rows = []
    overdue = 0
    for r in sorted(report.erasure_requests, key=lambda r: r.due_at):
        status = r.status(report.as_of)
        overdue += status == "overdue"

        held = f"{r.held_remaining:,}" if r.held_remaining else "0"
        done = f"{r.done_at:%Y-%m-%d}" if r.done_at else "—"
        rows.append(f'<tr class="{status}"><td>{_e(r.id)}</td><td>{_e(r.subject)}</td>'
                    f"<td>{_e(r.controller)}</td>"
                    f"<td>{r.received_at:%Y-%m-%d}</td><td>{r.due_at:%Y-%m-%d}</td>"
                    f"<td>{_STATUS.get(status, status)}</td>"
                    f"<td>{done}</td><td class=num>{held}</td><td>{_e(r.ticket or '—')}</td></tr>")
    alert = (f'<div class="alert"><b>{overdue} erasure request{"s" if overdue != 1 else ""} overdue</b> '
             "(past the 30-day deadline and not done).</div>") if overdue else ""
    return (head + alert + "<table><thead><tr><th>request</th><th>subject</th><th>controller</th>"
            "<th>received</th><th>due</th><th>status</th><th>done</th><th class=num>records still held</th>"
            "<th>ticket</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _forecast(forecast: Forecast) -> str:
    weeks = forecast.per_week()
    labels = [f"{forecast.week_start(i):%m-%d}" for i in range(len(weeks))]
    records = _columns("forecast-records", "Records becoming due per week", labels,
                       [w.records for w in weeks], lambda n: f"{n:,}", "#2874a6")
    size = _columns("forecast-bytes", "Bytes becoming due per week", labels,
                    [w.bytes for w in weeks], human_bytes, "#117864")
    table_rows = [[f"{r.start:%Y-%m-%d}", f"{r.end:%Y-%m-%d}", r.category, f"{r.volume.records:,}",
                   human_bytes(r.volume.bytes)] for r in forecast.rows()]
    table = (_table(["from", "to", "category", "records", "bytes"], table_rows, numeric_from=3)
             if table_rows else "<p>Nothing becomes due in this window.</p>")
    later, undated = forecast.later, forecast.undated
    unsized = sum(w.unsized for w in weeks)
    notes = [f"{later.records:,} more become due after {forecast.until:%Y-%m-%d}",
             f"{undated.records:,} wait for a clock that has not started (service still active)",
             f"{forecast.held.records:,} are held"]
    if unsized:
        notes.append(f"{unsized:,} records in the window have no known size and count 0 bytes")
    return (f'<h2 id="forecast">Forecast: the next {FORECAST_WEEKS} weeks</h2>'
            f"<p>As of {forecast.now:%Y-%m-%d}, with today's holds, subjects and requests. "
            f"{_e('; '.join(notes))}.</p>"
            f'<div class="charts">{records}{size}</div><details><summary>by week and category</summary>'
            f"{table}</details>")


def _items(report: RunReport, counts: Tally, shown: Sequence[Item]) -> str:
    rows = []
    for item in shown:
        r, d = item.record, item.decision
        action = d.action.value
        destructive = d.action in (Action.DELETE, Action.ANONYMIZE)
        outcome = item.outcome or ("not attempted" if destructive and not report.dry_run else "—")
        if item.error:
            outcome += f": {item.error}"
        version = f" @{r.version}" if r.version else ""
        cells = [r.source, r.subject or "—", r.category or "—", d.reason, ", ".join(d.holds) or "—",
                 f"{d.due:%Y-%m-%d}" if d.due else "—", outcome]
        source, subject, category, reason, holds, due, outcome = (_e(c) for c in cells)
        rows.append(f'<tr><td class="act {action}">{action}</td><td>{source}</td>'
                    f'<td class="loc">{_e(r.location + version)}</td><td>{subject}</td><td>{category}</td>'
                    f"<td>{reason}</td><td>{holds}</td><td class=nowrap>{due}</td><td>{outcome}</td>"
                    f"<td class=num>{_size(r.size)}</td></tr>")
    note = (f"<p>All {counts.items:,} items, ordered by decision (delete, anonymize, hold, skip, keep), "
            "then source and location.</p>")
    if counts.items > len(shown):
        note = (f'<div class="note">Showing the first {len(shown):,} of {counts.items:,} items, ordered by '
                "decision (delete, anonymize, hold, skip, keep), then source and location. The CSV report "
                "lists every item: <code>retention run … --report items.csv</code>.</div>")
    return ('<h2 id="items">Items</h2>' + note + '<table id="items-table"><thead><tr><th>decision</th>'
            "<th>source</th><th>location</th><th>subject</th><th>category</th><th>reason</th><th>holds</th>"
            "<th>due</th><th>outcome</th><th class=num>size</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


# -- helpers -----------------------------------------------------------------------------------------
_STATUS = {"overdue": "⚠ OVERDUE", "late": "done late (after the due date)"}
_ACTION_LABEL = {"delete": "delete", "anonymize": "anonymize", "hold": "held", "skip": "skipped (unknown)",
                 "keep": "kept"}


def _columns(element_id: str, caption: str, labels: Sequence[str], values: Sequence[int], fmt: object,
             color: str) -> str:
    """A vertical bar chart: one bar per value, the value written above each non-empty bar."""
    fmt_value = fmt if callable(fmt) else str
    left, top, plot_h, bar_w, gap = 8, 18, 150, 14, 4
    width = left * 2 + len(values) * (bar_w + gap)
    height = top + plot_h + 34
    peak = max(values, default=0) or 1
    svg = [f'<svg id="{element_id}" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'aria-label="{_e(caption)}">',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#aab7b8"/>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * (bar_w + gap)
        h = plot_h * value / peak
        svg.append(f'<rect class="week" data-week="{i}" data-value="{value}" x="{x}" y="{top + plot_h - h:.1f}" '
                   f'width="{bar_w}" height="{h:.1f}" fill="{color}"><title>week of {label}: '
                   f"{_e(fmt_value(value))}</title></rect>")
        if value:
            svg.append(f'<text x="{x + bar_w / 2}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle" '
                       f'style="font-size:9px">{_e(_short(fmt_value(value)))}</text>')
        if i % 4 == 0:
            svg.append(f'<text x="{x}" y="{top + plot_h + 14}">{_e(label)}</text>')
    svg.append(f'<text x="{left}" y="{height - 4}" style="fill:#566573">week starting (month-day)</text></svg>')
    return f"<figure><figcaption>{_e(caption)}</figcaption>{''.join(svg)}</figure>"


def _short(text: str) -> str:
    return text.replace(" KiB", "K").replace(" MiB", "M").replace(" GiB", "G").replace(" TiB", "T").replace(" B", "")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 99) -> str:
    th = "".join(f'<th{" class=num" if i >= numeric_from else ""}>{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{_e(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _order(item: Item) -> tuple[int, str, str, str]:
    r = item.record
    failed = 0 if item.outcome == "failed" else 1
    return (RANK[item.decision.action.value] * 2 + failed, r.source, printable(r.location), r.version or "")


def _size(size: int | None) -> str:
    return "—" if size is None else human_bytes(size)




def _e(value: object) -> str:
    return escape(printable(str(value)), quote=True)


__all__ = ["ITEM_CAP", "render", "write_html"]
