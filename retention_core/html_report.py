"""The run as one self-contained HTML file: inline CSS and SVG, no script, no network.

A privacy officer opens it from an e-mail attachment or an evidence folder years later, so it
must render offline in any browser and print cleanly. A Content-Security-Policy forbids
every external fetch; the charts are plain SVG with numbers as text and a data table
beside them. The items table is capped; the CSV report carries the full list.

The page is the Jinja2 template ``templates/run_report.html`` with autoescape on (it replaced
strings built and escaped here one by one); this module only prepares plain values — text,
numbers and chart geometry. Every text passes :func:`~retention_core.text.printable` on its
way out, so a file name that is not UTF-8 shows as ``\\xNN``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import __version__
from .files import atomic_write
from .forecast import Forecast, human_bytes, size_text
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
    outcomes = report.outcomes()
    took = (f"{(report.finished_at - report.started_at).total_seconds():.1f}"
            if report.finished_at is not None else None)
    overdue = sum(r.status(report.as_of) == "overdue" for r in report.erasure_requests)
    return _template().render(
        run_id=report.run_id, dry_run=report.dry_run, status=report.status, as_of=f"{report.as_of:%Y-%m-%d %H:%M}",
        started=f"{report.started_at:%Y-%m-%d %H:%M:%S}", took=took, cards=_cards(report, counts, forecast),
        outcomes=None if report.dry_run else (", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in outcomes.items()
                                                        if v) or "nothing to do"),
        failed=outcomes["failed"], changed=outcomes["changed"], limit_tripped=report.limit_tripped,
        warnings=report.warnings, refused=counts.refused, sources=_sources(report), chart=_decisions_chart(counts),
        colors=COLORS, holds=_holds(report), requests=_requests(report), overdue=overdue,
        forecast=_forecast(forecast), items=[_item_row(report, item) for item in shown], items_total=counts.items,
        version=__version__, written=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}")


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("retention_core", "templates"), autoescape=True,
                             finalize=_finalize, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    return env.get_template("run_report.html")


def _finalize(value: Any) -> Any:
    """Every text printed: its undecodable bytes as ``\\xNN`` (then autoescaped)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return printable(value)
    return value


# -- sections ---------------------------------------------------------------------------------------
def _cards(report: RunReport, counts: Tally, forecast: Forecast) -> list[tuple[str, str, str]]:
    total = report.summary()
    scanned = sum(s.scanned for s in report.sources.values())
    due_bytes = counts.bytes_by_action["delete"] + counts.bytes_by_action["anonymize"]
    verb = "would be" if report.dry_run else "were"
    cards = [("scanned", f"{scanned:,}", "records scanned")]
    cards += [(a, f"{total[a]:,}", _ACTION_LABEL[a]) for a in ("delete", "anonymize", "hold", "skip", "keep")]
    cards.append(("bytes", human_bytes(due_bytes), f"{verb} deleted or anonymized"))
    coming = forecast.total_in_window()
    cards.append(("soon", f"{coming.records:,}", f"due in the next {FORECAST_WEEKS} weeks"))
    return cards


def _sources(report: RunReport) -> list[dict[str, Any]]:
    rows = []
    for name, s in report.sources.items():
        problems = ([f"listing incomplete: {s.problems:,} item(s) could not be listed and were kept"]
                    + [f"· {p}" for p in s.problem_samples]) if s.problems else []
        rows.append({"name": name, "scanned": f"{s.scanned:,}",
                     "decided": ", ".join(f"{k} {v:,}" for k, v in s.decisions.items() if v) or "—",
                     "done": ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s.outcomes.items() if v) or "—",
                     "warnings": [*(w for w in s.run_warnings() if not w.startswith("listing incomplete")),
                                  *problems]})
    return rows


def _decisions_chart(counts: Tally) -> dict[str, Any]:
    """Stacked bars per category: geometry for the SVG, and the same numbers as a table."""
    categories = sorted(counts.by_category)
    label_w, bar_w, row_h = 170, 560, 26
    widest = max((sum(row.values()) for row in counts.by_category.values()), default=0) or 1
    rows = []
    for i, category in enumerate(categories):
        row = counts.by_category[category]
        y = 5 + i * row_h
        x = float(label_w)
        segments = []
        for action in COLORS:
            n = row.get(action, 0)
            if not n:
                continue
            w = bar_w * n / widest
            segments.append({"action": action, "n": n, "x": f"{x:.1f}", "w": f"{max(w, 1):.1f}",
                             "color": COLORS[action], "labelled": w >= 22, "mid": f"{x + w / 2:.1f}"})
            x += w
        rows.append({"category": category, "y": y, "segments": segments, "total": sum(row.values()),
                     "total_x": f"{x + 6:.1f}"})
    return {"rows": rows, "width": label_w + bar_w + 60, "height": row_h * len(categories) + 10,
            "label_x": label_w - 8, "bar_h": row_h - 6, "header": ["category", *COLORS],
            "table": [[c, *[f"{counts.by_category[c][a]:,}" for a in COLORS]] for c in categories]}


def _holds(report: RunReport) -> list[dict[str, Any]]:
    protected_by = report.protected()
    return [{"id": h.id, "kind": h.kind, "scope": ", ".join(f"{k} = {v}" for k, v in h.scope.as_dict().items()),
             "reason": h.reason, "origin": h.origin, "protected": f"{protected_by.get(h.id, 0):,}",
             "status": "active" if h.active else f"released {h.released_at:%Y-%m-%d}" if h.released_at
             else "released"}
            for h in sorted(report.holds, key=lambda h: (not h.active, h.id))]


def _requests(report: RunReport) -> list[dict[str, Any]]:
    rows = []
    for r in sorted(report.erasure_requests, key=lambda r: r.due_at):
        status = r.status(report.as_of)
        rows.append({"id": r.id, "subject": r.subject, "controller": r.controller, "status": status,
                     "received": f"{r.received_at:%Y-%m-%d}", "due": f"{r.due_at:%Y-%m-%d}",
                     "status_text": _STATUS.get(status, status), "done": f"{r.done_at:%Y-%m-%d}" if r.done_at else "—",
                     "held": f"{r.held_remaining:,}" if r.held_remaining else "0", "ticket": r.ticket or "—"})
    return rows


def _forecast(forecast: Forecast) -> dict[str, Any]:
    weeks = forecast.per_week()
    labels = [f"{forecast.week_start(i):%m-%d}" for i in range(len(weeks))]
    later, undated = forecast.later, forecast.undated
    unsized = sum(w.unsized for w in weeks)
    notes = [f"{later.records:,} more become due after {forecast.until:%Y-%m-%d}",
             f"{undated.records:,} wait for a clock that has not started (service still active)",
             f"{forecast.held.records:,} are held"]
    if unsized:
        notes.append(f"{unsized:,} records in the window have no known size and count 0 bytes")
    return {"weeks": FORECAST_WEEKS, "now": f"{forecast.now:%Y-%m-%d}", "notes": "; ".join(notes),
            "records": _columns("forecast-records", "Records becoming due per week", labels,
                                [w.records for w in weeks], lambda n: f"{n:,}", "#2874a6"),
            "bytes": _columns("forecast-bytes", "Bytes becoming due per week", labels,
                              [w.bytes for w in weeks], human_bytes, "#117864"),
            "table": [[str(r.number), f"{r.start:%Y-%m-%d}", f"{r.end:%Y-%m-%d}", r.category,
                       f"{r.volume.records:,}", size_text(r.volume)] for r in forecast.rows()]}


def _item_row(report: RunReport, item: Item) -> dict[str, str]:
    r, d = item.record, item.decision
    destructive = d.action in (Action.DELETE, Action.ANONYMIZE)
    outcome = item.outcome or ("not attempted" if destructive and not report.dry_run else "—")
    if item.error:
        outcome += f": {item.error}"
    return {"action": d.action.value, "source": r.source, "location": r.location + (f" @{r.version}" if r.version
                                                                                   else ""),
            "subject": r.subject or "—", "category": r.category or "—", "reason": d.reason,
            "holds": ", ".join(d.holds) or "—", "due": f"{d.due:%Y-%m-%d}" if d.due else "—", "outcome": outcome,
            "size": _size(r.size)}


# -- helpers -----------------------------------------------------------------------------------------
_STATUS = {"overdue": "⚠ OVERDUE", "late": "done late (after the due date)"}
_ACTION_LABEL = {"delete": "delete", "anonymize": "anonymize", "hold": "held", "skip": "skipped (unknown)",
                 "keep": "kept"}


def _columns(element_id: str, caption: str, labels: Sequence[str], values: Sequence[int], fmt: Any,
             color: str) -> dict[str, Any]:
    """A vertical bar chart: one bar per value, the value written above each non-empty bar."""
    left, top, plot_h, bar_w, gap = 8, 18, 150, 14, 4
    width = left * 2 + len(values) * (bar_w + gap)
    peak = max(values, default=0) or 1
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * (bar_w + gap)
        h = plot_h * value / peak
        bars.append({"value": value, "label": label, "x": x, "y": f"{top + plot_h - h:.1f}", "h": f"{h:.1f}",
                     "text": fmt(value), "short": _short(fmt(value)), "mid": x + bar_w / 2,
                     "text_y": f"{top + plot_h - h - 4:.1f}", "tick": i % 4 == 0})
    return {"id": element_id, "caption": caption, "width": width, "height": top + plot_h + 34, "left": left,
            "base": top + plot_h, "bar_w": bar_w, "color": color, "bars": bars}


def _short(text: str) -> str:
    return text.replace(" KiB", "K").replace(" MiB", "M").replace(" GiB", "G").replace(" TiB", "T").replace(" B", "")


_DIGITS = re.compile(r"(\d+)")


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """*text* as a sort key in which runs of digits compare as numbers: call-2 before call-10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


def _order(item: Item) -> tuple[Any, ...]:
    r = item.record
    failed = 0 if item.outcome == "failed" else 1
    return (RANK[item.decision.action.value] * 2 + failed, r.source, natural(printable(r.location)),
            natural(r.version or ""))


def _size(size: int | None) -> str:
    return "—" if size is None else human_bytes(size)


__all__ = ["ITEM_CAP", "natural", "render", "write_html"]
