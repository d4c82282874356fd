"""What a run found and did, and the built-in renderers (text, JSON, CSV).

The JSON schema is a public contract (see docs/user-guide.md); items are streamed from the
run's spool so a report of millions of records does not need them all in memory.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import atomic_write
from .model import Action, Decision, ErasureRequest, Hold, Problem, Record, RunStatus, Status
from .spool import Item, Spool
from .text import printable

#: Problems a source's stats keep by name (all are counted).
PROBLEM_SAMPLES = 20

ITEM_FIELDS = ("source", "location", "version", "subject", "category", "decision", "reason", "holds",
               "due", "outcome", "error")


@dataclass
class SourceStats:
    scanned: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    outcomes: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    warnings: list[str] = field(default_factory=list)
    #: Per hold id, the records that hold covered in this run (one covered by two holds
    #: counts for both).
    protected: Counter[str] = field(default_factory=Counter)
    #: What the scan met but could not list as a record (:class:`~retention_core.model.Problem`):
    #: while any exists the source's listing is incomplete.
    problems: int = 0
    problem_samples: list[str] = field(default_factory=list)
    #: Subjects named by problems; ``None`` when a problem names no subject (it may be anyone's).
    problem_subjects: set[str | None] = field(default_factory=set)
    #: Records skipped because their clock needs a subject the subjects source does not list
    #: (kept, and without a warning kept forever), and a few of those subjects by name.
    unknown_subjects: int = 0
    unknown_subject_samples: list[str] = field(default_factory=list)

    def note_skip(self, record: Record, decision: Decision) -> None:
        """Count a skipped record whose subject is unknown (or missing) for its warning."""
        if decision.reason.startswith(("unknown subject", "no subject")):
            self.unknown_subjects += 1
            name = printable(record.subject) if record.subject is not None else "(none)"
            if len(self.unknown_subject_samples) < 3 and name not in self.unknown_subject_samples:
                self.unknown_subject_samples.append(name)

    def run_warnings(self) -> list[str]:
        """What this source's operator must see even in a quiet run, one line each."""
        out = list(self.warnings)
        if self.unknown_subjects:
            out.append(f"{self.unknown_subjects} record(s) skipped and kept: their subject is not in the subjects "
                       f"source (e.g. {', '.join(self.unknown_subject_samples)}); add the subject there or fix "
                       "the source's `match`")
        if self.problems:
            out.append(f"listing incomplete, {self.problems} item(s) could not be listed and were kept: "
                       f"{'; '.join(self.problem_samples[:3])}" + (" …" if self.problems > 3 else ""))
        return out

    def note_problem(self, problem: Problem) -> None:
        self.problems += 1
        self.problem_subjects.add(problem.subject)
        if len(self.problem_samples) < PROBLEM_SAMPLES:
            self.problem_samples.append(f"{printable(problem.location)}: {problem.reason}")

    def may_hide(self, subject: str) -> bool:
        """Whether this source's incomplete listing may hide records of *subject*."""
        return bool(self.problems) and (None in self.problem_subjects or subject in self.problem_subjects)


@dataclass
class RunReport:
    """The finished run, used as ``with run(rt, options) as report:`` — the spool that holds
    its items (on disk, so memory stays flat) lives until the block ends (:meth:`close`).

    ``itemized``: every decided record is in the spool. When False (no report was asked
    for) it holds only what the run read back, and only the per-source counters are whole.
    """

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
    #: Sources over their safety limits (they deleted nothing), with why.
    tripped: dict[str, str] = field(default_factory=dict)
    status: str = RunStatus.OK
    itemized: bool = True
    #: Push-down sources counted in storage instead of scanned record by record.
    surveyed: set[str] = field(default_factory=set)
    #: Run-wide warnings (an erasure request kept open, …); per-source ones live in SourceStats.
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Remove the run's spool (the items go with it; the counters stay)."""
        self.spool.close()

    def __enter__(self) -> RunReport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, int]:
        return {a.value: sum(s.decisions[a.value] for s in self.sources.values()) for a in Action}

    def outcomes(self) -> dict[str, int]:
        return {s.value: sum(st.outcomes[s.value] for st in self.sources.values()) for s in Status}

    def protected(self) -> Counter[str]:
        """Per hold id, the records it covered in this run, over every source."""
        return sum((stats.protected for stats in self.sources.values()), Counter())

    def items(self, limit: int | None = None) -> Iterator[Item]:
        return self.spool.items(limit)

    @property
    def failed(self) -> int:
        return self.outcomes()[Status.FAILED.value]

    def requests_json(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "subject": r.subject, "controller": r.controller,
                 "received_at": r.received_at.isoformat(), "due_at": r.due_at.isoformat(),
                 "status": r.status(self.as_of), "done_at": r.done_at.isoformat() if r.done_at else None,
                 "held_remaining": r.held_remaining, "ticket": r.ticket,
                 "withdrawn_at": r.withdrawn_at.isoformat() if r.withdrawn_at else None,
                 "withdrawn_by": r.withdrawn_by, "withdraw_reason": r.withdraw_reason}
                for r in self.erasure_requests]


@dataclass
class Tally:
    """What the per-source counters do not say: decisions per category and bytes.

    Computed by one streaming pass over the spool (:func:`tally`), so it costs no memory per
    record; it needs an itemized run (one with a report). ``refused`` are records storage
    itself kept (an object lock).
    """

    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_by_action: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    refused: int = 0
    items: int = 0

    def add(self, item: Item) -> None:
        action = item.decision.action.value
        category = item.record.category or "(unknown)"
        row = self.by_category.setdefault(category, {a.value: 0 for a in Action})
        row[action] += 1
        self.bytes_by_action[action] += item.record.size or 0
        if item.outcome == Status.REFUSED.value:
            self.refused += 1
        self.items += 1


def tally(report: RunReport) -> Tally:
    """One pass over the run's items."""
    out = Tally()
    for item in report.items():
        out.add(item)
    return out


def holds_json(report: RunReport, protected: dict[str, int]) -> list[dict[str, Any]]:
    """Every hold known to the run, with how many of its records it protected."""
    return [{"id": h.id, "kind": h.kind, "scope": h.scope.as_dict(), "reason": h.reason, "origin": h.origin,
             "active": h.active, "released_at": h.released_at.isoformat() if h.released_at else None,
             "vanished_at": h.vanished_at.isoformat() if h.vanished_at else None,
             "protected": protected.get(h.id, 0)} for h in report.holds]


def item_json(item: Item) -> dict[str, Any]:
    r, d = item.record, item.decision
    # File names need not be UTF-8: show such bytes as \xNN (the audit trail keeps them exactly).
    return {"source": r.source, "location": printable(r.location), "version": r.version,
            "subject": printable(r.subject) if r.subject is not None else None,
            "category": r.category, "decision": d.action.value, "reason": printable(d.reason), "holds": list(d.holds),
            "due": d.due.date().isoformat() if d.due else None, "outcome": item.outcome, "error": item.error}


def check_writable(path: Path, key: str) -> None:
    """Refuse a report path that cannot be written, before the run it reports on starts.

    Its nearest existing ancestor must be a writable directory (missing directories are
    created). Found only when the report is written, the run's deletions would be done and
    the operator left with an internal error, no report and no summary.
    """
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:  # exists() is False under a file, too
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot write a report there: {str(probe)!r} is not a directory", key=key)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write a report there: directory {str(probe)!r} is not writable", key=key)


def write_json(report: RunReport, path: Path) -> None:
    """The public JSON schema, streamed item by item, replaced atomically."""
    head = {
        "run_id": report.run_id, "dry_run": report.dry_run, "as_of": report.as_of.date().isoformat(),
        "summary": report.summary(), "outcomes": report.outcomes(),
        "erasure_requests": report.requests_json(),
        "sources": {name: {"scanned": s.scanned, "decisions": s.decisions, "outcomes": s.outcomes,
                           "warnings": s.warnings, "problems": s.problems,
                           "problem_samples": s.problem_samples} for name, s in report.sources.items()},
        "limit_tripped": report.limit_tripped, "status": report.status,
    }
    counts = tally(report)
    # Keys added after 0.1 go after the original ones; the original keys never change.
    head["holds"] = holds_json(report, report.protected())
    head["categories"] = counts.by_category
    head["bytes"] = counts.bytes_by_action
    head["warnings"] = report.warnings
    with atomic_write(path) as fh:
        fh.write(json.dumps(head, indent=1)[:-2] + ',\n "items": [')
        for n, item in enumerate(report.items()):
            fh.write(("\n  " if n == 0 else ",\n  ") + json.dumps(item_json(item), ensure_ascii=False))
        fh.write("\n ]\n}\n")


#: Cell starts a spreadsheet reads as a formula (OWASP "CSV Injection"): ``=``, ``+``, ``-``,
#: ``@``, tab and carriage return.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """*value* safe for a spreadsheet: a string that would start a formula gets a leading ``'``.

    Locations, subjects and categories come from storage and file names that anyone able to
    write there chooses; ``=HYPERLINK(...)`` in a file name must not run when the report is
    opened. Numbers and None pass unchanged. Every CSV the tool writes goes through this.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(report: RunReport, path: Path) -> None:
    """Every item, one per row (the full list the HTML report caps); cells as :func:`csv_cell`."""
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ITEM_FIELDS)
        writer.writeheader()
        for item in report.items():
            row = item_json(item)
            row["holds"] = " ".join(row["holds"])
            writer.writerow({key: csv_cell(value) for key, value in row.items()})


#: C0 controls, DEL and C1 controls: what a terminal or a mail reader acts on instead of showing.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def one_line(value: str) -> str:
    """*value* as :func:`~retention_core.text.printable`, with control characters shown as ``\\xNN``.

    Ids, scopes and subjects are echoed in the run summary and ``holds list``; one written
    with a newline (a hold placed before ids were checked, a hold source's) must not forge
    a line there.
    """
    return printable(value).translate(_CONTROLS)


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
        lines += [f"    warning: {w}" for w in s.run_warnings()]
    total = report.summary()
    lines.append("  total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if not report.dry_run:
        lines.append("  outcomes: " + ", ".join(f"{k} {v}" for k, v in report.outcomes().items()))
    active = [h for h in report.holds if h.active]
    if active:
        protected = report.protected()
        for h in active:
            scope = " ".join(f"{k}={one_line(v)}" for k, v in h.scope.as_dict().items())
            origin = "" if h.origin in ("state", "config") else f", from source {one_line(h.origin)}"
            if h.vanished_at is not None:
                origin += f" (vanished from it {h.vanished_at:%Y-%m-%d}: in force until released)"
            lines.append(f"  hold {one_line(h.id)} ({h.kind}, {scope}{origin}): protected {protected.get(h.id, 0)} "
                         "records")
    for r in report.erasure_requests:
        status = r.status(report.as_of)
        # Still owed, or finished by this run (the dry run's lines stay in the real run's summary);
        # earlier done and withdrawn ones are in requests list.
        if status in ("pending", "overdue", "held") or r.done_run == report.run_id:
            extra = f", {r.held_remaining} records still held" if r.held_remaining else ""
            ticket = f" (ticket {one_line(r.ticket)})" if r.ticket else ""
            lines.append(f"  erasure request {r.id}{ticket} for {one_line(r.subject)}: {status}, "
                         f"due {r.due_at:%Y-%m-%d}{extra}")
    lines += [f"  warning: {w}" for w in report.warnings]
    if report.limit_tripped:
        lines.append(f"  SAFETY LIMIT: {report.limit_tripped}")
    return "\n".join(lines)


def run_warnings(report: RunReport) -> list[str]:
    """Everything about *report* an operator must see even with ``--quiet``, one line each:
    each source's warnings (unknown subjects, listing problems), erasure requests overdue,
    finished late by this run or still held, and the run-wide warnings."""
    out = [f"{name}: {w}" for name, s in report.sources.items() for w in s.run_warnings()]
    for r in report.erasure_requests:
        status = r.status(report.as_of)
        late = status == "late" and r.done_run == report.run_id
        if status in ("overdue", "held") or late:
            ticket = f" (ticket {one_line(r.ticket)})" if r.ticket else ""
            held = f", {r.held_remaining} records still held" if r.held_remaining else ""
            out.append(f"erasure request {r.id}{ticket} for {one_line(r.subject)}: "
                       f"{'done after its due date' if late else status}, due {r.due_at:%Y-%m-%d}{held}")
    return out + list(report.warnings)
