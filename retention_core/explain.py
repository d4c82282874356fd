"""Why one record gets the decision it gets: every step, in the engine's precedence order.

The verdict shown is always :func:`retention_core.engine.decide`'s own (never recomputed
here); the steps around it show the inputs that led to it — how the category was matched,
whose record it is, the clock and its date, every hold and whether it covers the record,
the subject's erasure request and minor flag, and when the record becomes due.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .engine import covering_holds, decide, rule_due
from .model import Context, Decision, Hold, Record, Source
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
    record, matched = _classify(raw, source, steps)
    if not matched:
        return Explanation(record, source, False, None, "not part of the source", "never (not enforced)",
                           tuple(steps), ())
    decision = decide(record, ctx)
    category = ctx.categories.get(record.category) if record.category is not None else None
    if category is None:
        steps.append(Step("category", f"unknown category {record.category!r}",
                          f"known categories: {', '.join(ctx.categories) or 'none'}; unknown is never deleted"))
        return _done(record, source, decision, "unknown category: skip", "never (skipped until classified)",
                     steps, ())
    steps.append(Step("rule", f"keep {category.retain} after {_clock(category.after)}, then {category.action.value}"))

    subject = ctx.subjects.get(record.subject) if record.subject is not None else None
    steps.append(_subject_step(record, subject))
    due_by_rule = rule_due(record, category, ctx)
    steps.append(_clock_step(record, category.after, subject, due_by_rule, ctx.now))
    if category.after == "service_end" and subject is None:
        return _done(record, source, decision, "unknown subject: skip", "never (skipped until the subject is known)",
                     steps, ())

    checks = tuple(_check_hold(h, record) for h in (ctx.holds if holds is None else holds))
    applying = [c.hold.id for c in checks if c.applies]
    steps.append(Step("holds", f"{len(applying)} of {len(checks)} apply" if checks else "no holds defined",
                      ", ".join(applying)))
    request = ctx.requests.get(subject.id) if subject is not None else None
    steps.append(_request_step(request, subject, ctx.now))
    steps.append(Step("minor", "flagged as a child under 16" if subject is not None and subject.minor
                      else "not flagged" if subject is not None else "no subject"))

    held = covering_holds(record, ctx.holds)
    if held:
        rule = f"; by its rule it is due {_date(due_by_rule)}" if due_by_rule else ""
        return _done(record, source, decision, "hold", f"when {', '.join(held)} "
                     f"{'is' if len(held) == 1 else 'are all'} released{rule}", steps, checks)
    if request is not None:
        return _done(record, source, decision, "erasure request", f"now (request received {_date(request.received_at)},"
                     f" answer due {_date(request.due_at)})", steps, checks)
    if subject is not None and subject.minor:
        return _done(record, source, decision, "minor", "now", steps, checks)
    if due_by_rule is None:
        return _done(record, source, decision, "keep: clock not started",
                     f"{category.retain} after the service ends (it has not ended)", steps, checks)
    if due_by_rule <= ctx.now:
        return _done(record, source, decision, "rule expiry", f"now (since {_date(due_by_rule)})", steps, checks)
    return _done(record, source, decision, "keep: not yet due", _date(due_by_rule), steps, checks)


def _done(record: Record, source: Source, decision: Decision, by: str, due: str, steps: list[Step],
          checks: tuple[HoldCheck, ...]) -> Explanation:
    steps.append(Step("decided by", by, f"precedence: {PRECEDENCE}"))
    steps.append(Step("decision", decision.action.value.upper(), decision.reason))
    steps.append(Step("becomes due", due))
    return Explanation(record, source, True, decision, by, due, tuple(steps), checks)


def _classify(raw: Record, source: Source, steps: list[Step]) -> tuple[Record, bool]:
    """Mirror of the runtime's classification, narrating where subject and category came from."""
    subject, category = raw.subject, raw.category
    subject_from = "set by the backend" if subject is not None else None
    category_from = "set by the backend" if category is not None else None
    if source.match is not None:
        found = source.match.fullmatch(raw.location)
        if found is None:
            steps.append(Step("match", "does not match", f"'{source.match.pattern}': the record is outside "
                                                          f"source {source.name!r} and is never touched"))
            return raw, False
        groups = {k: v for k, v in found.groupdict().items() if v is not None}
        steps.append(Step("match", "matched", f"'{source.match.pattern}'"
                          + (": " + ", ".join(f"{k} = {v}" for k, v in groups.items()) if groups else "")))
        if subject is None and "subject" in groups:
            subject, subject_from = groups["subject"], "from the (?P<subject>…) group of match"
        if category is None and "category" in groups:
            category, category_from = groups["category"], "from the (?P<category>…) group of match"
    else:
        steps.append(Step("match", "no match pattern", "every record of the source belongs to it"))
    if category is None and source.category is not None:
        category, category_from = source.category, "the source's category setting"
    steps.append(Step("category", str(category) if category else "none", category_from or "nothing classified it"))
    if subject_from is None:
        steps.append(Step("subject source", "none", "no subject: match has no (?P<subject>…) group"))
    else:
        steps.append(Step("subject source", str(subject), subject_from))
    return replace(raw, subject=subject, category=category), True


def _subject_step(record: Record, subject: Any) -> Step:
    if record.subject is None:
        return Step("subject", "none")
    if subject is None:
        return Step("subject", f"{record.subject} is not in the subjects source")
    ended = f"service ended {_date(subject.service_ended_at)}" if subject.service_ended_at else "service active"
    return Step("subject", subject.id, f"controller {subject.controller or '—'}, {ended}"
                                       f"{', minor' if subject.minor else ''}")


def _clock_step(record: Record, after: str, subject: Any, due: datetime | None, now: datetime) -> Step:
    if after == "created":
        start = f"created {_date(record.created)}"
    elif subject is None or subject.service_ended_at is None:
        start = "service end (not ended: the clock has not started)"
    else:
        start = f"service end {_date(subject.service_ended_at)}"
    if due is None:
        return Step("clock", start, "no retention end date yet")
    return Step("clock", start, f"retention ends {_date(due)} ({'past' if due <= now else 'future'})")


def _request_step(request: Any, subject: Any, now: datetime) -> Step:
    if subject is None:
        return Step("erasure request", "no subject")
    if request is None:
        return Step("erasure request", f"none for {subject.id}")
    return Step("erasure request", f"{request.id} from {request.controller}: {request.status(now)}",
                f"received {_date(request.received_at)}, due {_date(request.due_at)}")


def _check_hold(hold: Hold, record: Record) -> HoldCheck:
    if not hold.active:
        return HoldCheck(hold, False, f"released {_date(hold.released_at)}" if hold.released_at else "released")
    misses = [f"{key} is {getattr(record, key)!r}, not {value!r}" for key, value in hold.scope.as_dict().items()
              if getattr(record, key) != value]
    if misses:
        return HoldCheck(hold, False, "; ".join(misses))
    scope = ", ".join(f"{k} = {v}" for k, v in hold.scope.as_dict().items())
    return HoldCheck(hold, True, f"scope {scope} covers it")


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


def _clock(after: str) -> str:
    return "service end" if after == "service_end" else "creation"


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "—"




__all__ = ["Explanation", "HoldCheck", "PRECEDENCE", "Step", "explain", "render_text"]
