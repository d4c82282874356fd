"""The whole meaning of the policy, as pure functions of their arguments.

``decide(record, ctx)`` reads nothing but its arguments: no I/O, no clock. Precedence is
fixed: **hold > erasure request / minor > rule expiry > keep**; a record whose category
or (when the rule needs one) subject is unknown is skipped, never deleted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from .backend import Cutoffs
from .model import Action, Category, Context, Decision, Hold, Record, Source

#: Every record is due: erasure requests and minors do not wait for a clock.
ALL = datetime.max.replace(tzinfo=timezone.utc)


def covering_holds(record: Record, holds: tuple[Hold, ...]) -> tuple[str, ...]:
    """Ids of every active hold whose scope covers *record* (all are reported)."""
    if not holds:
        return ()
    return tuple(h.id for h in holds if h.active and h.scope.covers(record))


def rule_due(record: Record, category: Category, ctx: Context) -> datetime | None:
    """When the category's clock makes *record* due; None while the clock has not started."""
    if category.after == "service_end":
        subject = ctx.subjects.get(record.subject) if record.subject is not None else None
        if subject is None or subject.service_ended_at is None:
            return None
        return category.retain.after(subject.service_ended_at)
    return category.retain.after(record.created)


def decide(record: Record, ctx: Context) -> Decision:
    """The policy's verdict on one record."""
    category = ctx.categories.get(record.category) if record.category is not None else None
    if category is None:
        return Decision(SKIP, f"unknown category {record.category!r}")
    subject = ctx.subjects.get(record.subject) if record.subject is not None else None
    if subject is None and category.after == "service_end":
        why = "no subject" if record.subject is None else f"unknown subject {record.subject!r}"
        return Decision(SKIP, f"{why}; category {category.name!r} counts from service end")

    if ctx.holds:
        holds = covering_holds(record, ctx.holds)
        if holds:
            return Decision(HOLD, "held by " + ", ".join(holds), holds=holds)

    if subject is not None:
        request = ctx.requests.get(subject.id)
        if request is not None:
            return Decision(category.action, f"erasure request {request.id} from {request.controller}",
                            due=request.received_at)
        if subject.minor:
            return Decision(category.action, "subject is flagged as a child under 16", due=None)

    due = rule_due(record, category, ctx)
    if due is None:
        return Decision(KEEP, "service still active: retention clock not started")
    if due <= ctx.now:
        return Decision(category.action, _expired_reason(category), due=due)
    return Decision(KEEP, f"kept until {due.date().isoformat()} ({_rule_text(category)})", due=due)


# decide() runs once per record: the reason texts that depend only on the category are built
# once per category (by profile, the f-strings and enum lookups were a fifth of decide's time).
SKIP, HOLD, KEEP = Action.SKIP, Action.HOLD, Action.KEEP


@lru_cache(maxsize=256)
def _rule_text(category: Category) -> str:
    return f"{category.retain} after {_clock(category)}"


@lru_cache(maxsize=256)
def _expired_reason(category: Category) -> str:
    return f"retention {_rule_text(category)} expired"


def _clock(category: Category) -> str:
    return "service end" if category.after == "service_end" else "creation"


def cutoffs(source: Source, ctx: Context) -> Cutoffs:
    """``decide`` for a whole single-category source, in set form, for push-down backends.

    A record of the source is due under the returned :class:`Cutoffs` exactly when
    ``decide`` would say delete/anonymize for it (a test proves this on random inputs).
    Subjects the rule needs but that are unknown are never due (they are skipped).
    """
    category = ctx.categories.get(source.category or "")
    if category is None:
        return Cutoffs(Action.SKIP, held=True, held_subjects=frozenset())
    probe = Record(source=source.name, location="", created=ctx.now, category=category.name)
    source_held = any(h.active and h.scope.subject is None and h.scope.covers(probe) for h in ctx.holds)
    held_subjects = frozenset(
        h.scope.subject for h in ctx.holds
        if h.active and h.scope.subject is not None
        and h.scope.covers(Record(source.name, "", ctx.now, subject=h.scope.subject, category=category.name))
    )
    per_subject: dict[str, datetime | None] = {}
    by_created = category.retain.latest_start_due_by(ctx.now) if category.after == "created" else None
    for subject in ctx.subjects.values():
        if subject.id in ctx.requests or subject.minor:
            per_subject[subject.id] = ALL
        elif category.after == "service_end":
            ended = subject.service_ended_at
            per_subject[subject.id] = ALL if ended is not None and category.retain.after(ended) <= ctx.now else None
        else:
            per_subject[subject.id] = by_created
    return Cutoffs(category.action, held=source_held, held_subjects=held_subjects,
                   per_subject=per_subject, default=by_created)
