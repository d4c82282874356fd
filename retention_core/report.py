"""What a run found and did, and the built-in renderers (text, JSON, CSV).

The JSON schema is a public contract (see docs/user-guide.md); items are streamed from the
run's spool so a report of millions of records does not need them all in memory.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .model import Action, ErasureRequest, Hold, Status
from .spool import Item, Spool

ITEM_FIELDS = ("source", "location", "version", "subject", "category", "decision", "reason", "holds",
               "due", "outcome", "error")


@dataclass
class SourceStats:
    scanned: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    outcomes: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    """The finished run. ``spool`` holds the items until :meth:`close`."""

    run_id: str
    dry_run: bool
    as_of: datetime
    started_at: datetime
    spool: Spool
    sources: dict[str, SourceStats] = field(default_factory=dict)
    erasure_requests: list[ErasureRequest] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    finished_at: datetime | None = None
    limit_tripped: str | None = None
    status: str = "ok"

    def close(self) -> None:
        self.spool.close()

    def summary(self) -> dict[str, int]:
        return {a.value: sum(s.decisions[a.value] for s in self.sources.values()) for a in Action}

    def outcomes(self) -> dict[str, int]:
        return {s.value: sum(st.outcomes[s.value] for st in self.sources.values()) for s in Status}

    def items(self, limit: int | None = None) -> Iterator[Item]:
        return self.spool.items(limit)

    @property
    def failed(self) -> int:
        return self.outcomes()[Status.FAILED.value]

    def requests_json(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "subject": r.subject, "controller": r.controller,
                 "received_at": r.received_at.isoformat(), "due_at": r.due_at.isoformat(),
                 "status": r.status(self.as_of), "done_at": r.done_at.isoformat() if r.done_at else None,
                 "held_remaining": r.held_remaining} for r in self.erasure_requests]


def item_json(item: Item) -> dict[str, Any]:
    r, d = item.record, item.decision
    return {"source": r.source, "location": r.location, "version": r.version, "subject": r.subject,
            "category": r.category, "decision": d.action.value, "reason": d.reason, "holds": list(d.holds),
            "due": d.due.date().isoformat() if d.due else None, "outcome": item.outcome, "error": item.error}


def _atomic(path: Path, newline: str | None = None) -> tuple[IO[str], str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    return os.fdopen(fd, "w", encoding="utf-8", newline=newline), tmp


def write_json(report: RunReport, path: Path) -> None:
    """The public JSON schema, streamed item by item, replaced atomically."""
    head = {
        "run_id": report.run_id, "dry_run": report.dry_run, "as_of": report.as_of.date().isoformat(),
        "summary": report.summary(), "outcomes": report.outcomes(),
        "erasure_requests": report.requests_json(),
        "sources": {name: {"scanned": s.scanned, "decisions": s.decisions, "outcomes": s.outcomes,
                           "warnings": s.warnings} for name, s in report.sources.items()},
        "limit_tripped": report.limit_tripped, "status": report.status,
    }
    fh, tmp = _atomic(path)
    with fh:
        fh.write(json.dumps(head, indent=1)[:-2] + ',\n "items": [')
        for n, item in enumerate(report.items()):
            fh.write(("\n  " if n == 0 else ",\n  ") + json.dumps(item_json(item), ensure_ascii=False))
        fh.write("\n ]\n}\n")
    os.replace(tmp, path)


def write_csv(report: RunReport, path: Path) -> None:
    """Every item, one per row (the full list the HTML report caps)."""
    fh, tmp = _atomic(path, newline="")
    with fh:
        writer = csv.DictWriter(fh, fieldnames=ITEM_FIELDS)
        writer.writeheader()
        for item in report.items():
            row = item_json(item)
            row["holds"] = " ".join(row["holds"])
            writer.writerow(row)
    os.replace(tmp, path)


def text_summary(report: RunReport) -> str:
    """A few lines a person reads in cron mail."""
    mode = "dry-run (nothing deleted)" if report.dry_run else "enforced"
    lines = [f"retention run {report.run_id} — {mode}, as of {report.as_of:%Y-%m-%d %H:%M} UTC"]
    for name, s in report.sources.items():
        decided = ", ".join(f"{k} {v}" for k, v in s.decisions.items() if v)
        lines.append(f"  {name}: scanned {s.scanned}" + (f"; {decided}" if decided else ""))
        done = ", ".join(f"{k} {v}" for k, v in s.outcomes.items() if v)
        if done:
            lines.append(f"    outcomes: {done}")
        lines += [f"    warning: {w}" for w in s.warnings]
    total = report.summary()
    lines.append("  total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if not report.dry_run:
        lines.append("  outcomes: " + ", ".join(f"{k} {v}" for k, v in report.outcomes().items()))
    for r in report.erasure_requests:
        status = r.status(report.as_of)
        if status != "done" or r.held_remaining:
            extra = f", {r.held_remaining} records still held" if r.held_remaining else ""
            lines.append(f"  erasure request {r.id} for {r.subject}: {status}, due {r.due_at:%Y-%m-%d}{extra}")
    if report.limit_tripped:
        lines.append(f"  SAFETY LIMIT: {report.limit_tripped}; nothing was deleted")
    return "\n".join(lines)
