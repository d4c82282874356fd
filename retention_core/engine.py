"""The whole meaning of the policy, as pure functions of their arguments.

``decide(record, ctx)`` reads nothing but its arguments: no I/O, no clock. Precedence is
fixed: **hold > erasure request / minor > rule expiry > keep**; a record whose category
or (when the rule needs one) subject is unknown is skipped, never deleted.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .backend import Cutoffs, Survey
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
    by_service_end = category.after == "service_end"
    if subject is None and by_service_end:
        why = "no subject" if record.subject is None else f"unknown subject {record.subject!r}"
        return Decision(SKIP, f"{why}; category {category.name!r} counts from service end")

    if ctx.holds:
        # A hold's scope names only subject, category and source: which holds cover a record
        # is a function of those three, computed once per distinct triple.
        memo = _covering(ctx.holds)
        scope = (record.subject, record.category, record.source)
        holds = memo.get(scope)
        if holds is None:
            holds = memo[scope] = covering_holds(record, ctx.holds)
        if holds:
            return Decision(HOLD, "held by " + ", ".join(holds), holds=holds)

    if subject is not None:
        request = ctx.requests.get(subject.id)
        if request is not None:
            return Decision(category.action, f"erasure request {request.id} from {request.controller}",
                            due=request.received_at)
        if subject.minor:
            return Decision(category.action, "subject is flagged as a child under 16", due=None)

    # rule_due(), inlined: this is the line every record reaches.
    if by_service_end:
        start = subject.service_ended_at  # type: ignore[union-attr]  # subject is known here
        if start is None:
            return Decision(KEEP, "service still active: retention clock not started")
    else:
        start = record.created
    retain = category.retain
    due = start + retain.delta if not retain.months else retain.after(start)
    texts = _texts(category)
    if due <= ctx.now:
        return Decision(category.action, texts[0], due=due)
    return Decision(KEEP, f"kept until {due.date().isoformat()} ({texts[1]})", due=due)


# decide() runs once per record. By profile, rebuilding the category's reason texts and
# testing every hold against every record were most of its time: texts are prepared once per
# category (looked up by identity: hashing a frozen dataclass per record cost more than the
# f-strings it saved), covering holds once per (subject, category, source) and holds tuple.
SKIP, HOLD, KEEP = Action.SKIP, Action.HOLD, Action.KEEP
_category_texts: dict[int, tuple[Category, tuple[str, str]]] = {}
_holds_seen: list[tuple[tuple[Hold, ...], dict[tuple[str | None, str | None, str], tuple[str, ...]]]] = []
#: Distinct (subject, category, source) triples remembered per holds tuple: bounded, so a
#: run over millions of subjects keeps its memory flat.
_MEMO_LIMIT = 50_000


def _covering(holds: tuple[Hold, ...]) -> dict[tuple[str | None, str | None, str], tuple[str, ...]]:
    """The memo of covering hold ids for *holds* (the context's tuple, compared by identity)."""
    if _holds_seen and _holds_seen[0][0] is holds:
        memo = _holds_seen[0][1]
        if len(memo) < _MEMO_LIMIT:
            return memo
    memo = {}
    _holds_seen[:] = [(holds, memo)]  # the tuple is kept alive here, so its id cannot be reused
    return memo


def _texts(category: Category) -> tuple[str, str]:
    """(the expired reason, "<retain> after <clock>") for *category*, built once."""
    found = _category_texts.get(id(category))
    if found is None or found[0] is not category:
        rule = f"{category.retain} after {_clock(category)}"
        found = (category, (f"retention {rule} expired", rule))
        if len(_category_texts) > 1024:
            _category_texts.clear()
        _category_texts[id(category)] = found
    return found[1]


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


def plain_cutoff(source: Source, ctx: Context) -> tuple[datetime, Action] | None:
    """``decide`` for the source's plain records, as one comparison.

    A plain record has no subject and the source's own category. When that category counts
    from creation and no hold covers the whole source, ``decide`` says the category's action
    for a plain record created at or before the returned instant and keep for any later one
    (a test proves this on random inputs), so a scan can count it without a Decision.
    None when plain records need ``decide`` one by one.
    """
    category = ctx.categories.get(source.category or "")
    if category is None or category.after != "created":
        return None
    plan = cutoffs(source, ctx)
    if plan.held or plan.default is None:
        return None
    return plan.default, category.action


def protected_by(source: Source, ctx: Context, survey: Survey) -> dict[str, int]:
    """Per active hold, how many of a surveyed single-category source's records it covers.

    The set-form counterpart of counting ``decide``'s ``holds`` per record: a hold naming no
    subject covers every record of the source; one naming a subject, that subject's held
    records (``survey.held_by_subject``, empty when the whole source is held).
    """
    out: dict[str, int] = {}
    for hold in ctx.holds:
        if not hold.active:
            continue
        subject = hold.scope.subject
        probe = Record(source.name, "", ctx.now, subject=subject, category=source.category)
        if hold.scope.covers(probe):
            count = survey.total if subject is None else survey.held_by_subject.get(subject, 0)
            if count:
                out[hold.id] = out.get(hold.id, 0) + count
    return out
