"""Why one record gets the decision it gets: every step, in the engine's precedence order.

Nothing here decides: the classification is :func:`retention_core.runtime.classify`'s, the
steps and the verdict are :func:`retention_core.engine.trace`'s (the same Decision as
``decide``, a property test holds them together). This module narrates them — how the
category was matched, whose record it is, every hold and whether it covers the record, the
subject's erasure request and minor flag, the clock and its date — and says when the record
becomes due. For a record storage no longer holds it tells what the audit trail says became
of it (:func:`render_gone`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .engine import (
    EXPIRED,
    NEVER_DUE,
    NOT_STARTED,
    UNKNOWN_CATEGORY,
    UNKNOWN_SUBJECT,
    Rule,
    Trace,
    covering_holds,
    trace,
)
from .engine import Step as EngineStep
from .evidence import Finding, Place, text_line
from .model import Context, Decision, Hold, Record, Source
from .runtime import classify
from .text import printable

PRECEDENCE = "hold > erasure request / minor > rule expiry > keep"


@dataclass(frozen=True)
class Step:
    """One line of the explanation: which check, what it found, and the detail behind it."""

    check: str
    finding: str
    detail: str = ""


@dataclass(frozen=True)
class HoldCheck:
    hold: Hold
    applies: bool
    why: str


@dataclass(frozen=True)
class Explanation:
    record: Record
    source: Source
    matched: bool
    decision: Decision | None
    decided_by: str
    due: str
    steps: tuple[Step, ...]
    holds: tuple[HoldCheck, ...]

    def as_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "source": self.source.name, "location": printable(r.location), "version": r.version,
            "created": r.created.isoformat(), "size": r.size, "subject": r.subject, "category": r.category,
            "matched": self.matched,
            "decision": None if self.decision is None else {
                "action": self.decision.action.value, "reason": self.decision.reason,
                "holds": list(self.decision.holds),
                "due": self.decision.due.isoformat() if self.decision.due else None},
            "decided_by": self.decided_by, "becomes_due": self.due,
            "steps": [{"check": s.check, "finding": s.finding, "detail": s.detail} for s in self.steps],
            "holds": [{"id": c.hold.id, "kind": c.hold.kind, "scope": c.hold.scope.as_dict(),
                       "active": c.hold.active, "applies": c.applies, "why": c.why} for c in self.holds],
        }


def explain(raw: Record, source: Source, ctx: Context, holds: Iterable[Hold] | None = None) -> Explanation:
    """Explain *raw* (as the backend listed it) under *source* and *ctx*.

    *holds* may include released holds, which are listed as not applying; by default the
    context's holds are checked.
    """
    steps: list[Step] = []
    classified = list(classify(iter((raw,)), source))
    if not classified:
        steps.append(Step("match", "does not match", f"'{_pattern(source)}': the record is outside "
                                                      f"source {source.name!r} and is never touched"))
        return Explanation(raw, source, False, None, "not part of the source", "never (not enforced)",
                           tuple(steps), ())
    record = classified[0]
    steps.extend(_classification(raw, record, source))
    traced = trace(record, ctx)
    checks = tuple(_check_hold(h, record) for h in (ctx.holds if holds is None else holds))
    for step in traced.steps:
        steps.append(_render(step, checks))
    deciding = traced.deciding
    decision = traced.decision
    steps.append(Step("decided by", deciding.verdict, f"precedence: {PRECEDENCE}"))
    steps.append(Step("decision", decision.action.value.upper(), decision.reason))
    due = _becomes_due(traced, record, ctx)
    steps.append(Step("becomes due", due))
    shown = checks if deciding.rule not in (Rule.CATEGORY, Rule.SUBJECT) else ()
    return Explanation(record, source, True, decision, deciding.verdict, due, tuple(steps), shown)


def _classification(raw: Record, record: Record, source: Source) -> Iterator[Step]:
    """Where the classified *record*'s subject and category came from (``runtime.classify`` set them)."""
    groups: dict[str, str] = {}
    if source.match is None:
        yield Step("match", "no match pattern", "every record of the source belongs to it")
    else:
        found = source.match.fullmatch(raw.location)
        groups = {k: v for k, v in found.groupdict().items() if v is not None} if found else {}
        yield Step("match", "matched", f"'{source.match.pattern}'"
                   + (": " + ", ".join(f"{k} = {v}" for k, v in groups.items()) if groups else ""))
    if raw.category is not None:
        category_from = "set by the backend"
    elif record.category is not None and groups.get("category") == record.category:
        category_from = "from the (?P<category>…) group of match"
    elif record.category is not None:
        category_from = "the source's category setting"
    else:
        category_from = "nothing classified it"
    yield Step("category", str(record.category) if record.category else "none", category_from)
    if raw.subject is not None:
        yield Step("subject source", str(record.subject), "set by the backend")
    elif record.subject is not None:
        yield Step("subject source", str(record.subject), "from the (?P<subject>…) group of match")
    else:
        yield Step("subject source", "none", "no subject: match has no (?P<subject>…) group")


def _render(step: EngineStep, checks: tuple[HoldCheck, ...]) -> Step:
    """One of the engine's steps as a line; the holds line counts every hold checked, released ones included."""
    if step.rule is Rule.CATEGORY:
        return Step("rule", step.finding, step.detail)
    if step.rule is Rule.HOLDS:
        applying = [c.hold.id for c in checks if c.applies]
        return Step("holds", f"{len(applying)} of {len(checks)} apply" if checks else "no holds defined",
                    ", ".join(applying))
    return Step(step.rule.value, step.finding, step.detail)


def _becomes_due(traced: Trace, record: Record, ctx: Context) -> str:
    """When the record becomes due, in words, from the step that decided and the clock's."""
    deciding = traced.deciding
    clock = traced.step(Rule.CLOCK)
    if deciding.verdict == UNKNOWN_CATEGORY:
        return "never (skipped until classified)"
    if deciding.verdict == UNKNOWN_SUBJECT:
        return "never (skipped until the subject is known)"
    if deciding.rule is Rule.HOLDS:
        held = deciding.decision.holds if deciding.decision is not None else ()
        rule = f"; by its rule it is due {_date(clock.due)}" if clock is not None and clock.due else ""
        return f"when {', '.join(held)} {'is' if len(held) == 1 else 'are all'} released{rule}"
    if deciding.rule is Rule.ERASURE:
        request = ctx.requests[str(record.subject)]
        return f"now (request received {_date(request.received_at)}, answer due {_date(request.due_at)})"
    if deciding.rule is Rule.MINOR:
        return "now"
    if deciding.verdict == NOT_STARTED:
        category = ctx.categories[str(record.category)]
        return f"{category.retain} after the service ends (it has not ended)"
    if deciding.verdict == NEVER_DUE:
        return "never (its retention ends after 9999-12-31, beyond the calendar)"
    if deciding.verdict == EXPIRED:
        return f"now (since {_date(deciding.due)})"
    return _date(deciding.due)


def _pattern(source: Source) -> str:
    return source.match.pattern if source.match is not None else ""


def _check_hold(hold: Hold, record: Record) -> HoldCheck:
    """Whether *hold* covers *record* (the engine's :func:`covering_holds`), and why in words."""
    if not hold.active:
        return HoldCheck(hold, False, f"released {_date(hold.released_at)}" if hold.released_at else "released")
    if covering_holds(record, (hold,)):
        scope = ", ".join(f"{k} = {v}" for k, v in hold.scope.as_dict().items())
        return HoldCheck(hold, True, f"scope {scope} covers it")
    misses = [f"{key} is {getattr(record, key)!r}, not {value!r}" for key, value in hold.scope.as_dict().items()
              if getattr(record, key) != value]
    return HoldCheck(hold, False, "; ".join(misses))


def render_text(ex: Explanation) -> Iterator[str]:
    """The explanation as aligned lines for a terminal."""
    r = ex.record
    version = f" (version {r.version})" if r.version else ""
    yield f"{printable(r.location)}{version} — source {ex.source.name} ({ex.source.backend})"
    size = f", {r.size} bytes" if r.size is not None else ""
    yield f"  {'record':16} created {r.created:%Y-%m-%d %H:%M} UTC{size}"
    for step in ex.steps:
        detail = f" — {step.detail}" if step.detail else ""
        yield f"  {step.check:16} {step.finding}{detail}"
        if step.check == "holds":
            for c in ex.holds:
                mark = "APPLIES" if c.applies else "does not apply"
                scope = ", ".join(f"{k} = {v}" for k, v in c.hold.scope.as_dict().items())
                yield f"  {'':16}   {c.hold.id} ({c.hold.kind}, {scope}): {mark} — {c.why}; reason: {c.hold.reason}"


def render_gone(location: str, places: Sequence[Place], history: Sequence[Finding]) -> Iterator[str]:
    """For a location no source lists: what the audit trail says became of it, line by line."""
    where = ", ".join(f"{p.source.name} ({p.source.backend})" for p in places)
    deleted = [f for f in history if f.gone]
    if deleted:
        last = deleted[-1]
        yield (f"{printable(location)} — no record in {where}: the audit trail shows it deleted on "
               f"{last.time[:19].replace('T', ' ')} UTC by run {last.run_id}")
    else:
        yield (f"{printable(location)} — no record in {where}; the audit trail has it but shows no deletion "
               f"(last: {history[-1].outcome})")
    for finding in history:
        yield f"  {text_line(finding)}"


def gone_json(location: str, places: Sequence[Place], history: Sequence[Finding]) -> dict[str, Any]:
    """:func:`render_gone` as JSON: ``record`` is null, ``deleted`` says whether the trail shows it deleted."""
    deleted = [f for f in history if f.gone]
    return {"location": printable(location), "sources": [p.source.name for p in places], "record": None,
            "deleted": bool(deleted), "deleted_at": deleted[-1].time if deleted else None,
            "deleted_by_run": deleted[-1].run_id if deleted else None,
            "trail": [f.as_json() for f in history]}


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "—"


__all__ = ["Explanation", "HoldCheck", "PRECEDENCE", "Step", "explain", "gone_json", "render_gone", "render_text"]
