"""The whole meaning of the policy: which rule decides a record, and when a record is due.

Precedence is fixed: **hold > erasure request / minor > rule expiry > keep**; a record whose
category or (when its rule counts from service end) subject is unknown is skipped, never
deleted. Everything here reads only its arguments: no I/O, no clock, no state between calls.

One meaning, three views, held together by tests on generated policies:

- :func:`trace`: every rule looked at for one record, in precedence order, with its verdict
  (``retention explain`` renders it);
- :class:`Decider` (and :func:`decide`): the same final :class:`Decision`, fast; a run creates
  one per context and it remembers what depends only on a record's subject, category and source;
- :func:`cutoffs` / :func:`plain_cutoff`: the same selection in set form, for push-down backends.

When a record is due by its category's rule is :meth:`Clock.due`, and nothing else: the
per-record verdict compares it with ``now``, the set form inverts it.

**Dates beyond the calendar.** A due date past year 9999 (a record created 9999-12-28, a
service that ended 9999-12-31, with any retention) means the record is not due at any
instant Python can represent: the verdict is KEEP, reason "… ends beyond the calendar",
never an error. KEEP rather than SKIP because nothing about the record is unknown — its
retention has simply not ended, and retention is never early — and because an erasure
request or a minor flag, which do not wait for the clock, must still apply to it. In set
form such a record is above every cutoff; a cutoff before year 1 (``--as-of 0001-01-01``)
means nothing is due by the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from .backend import Cutoffs, Survey
from .durations import latest_start
from .model import Action, Category, Context, Decision, ErasureRequest, Hold, Record, Source, Subject

#: Every record is due: erasure requests and minors do not wait for a clock.
ALL = datetime.max.replace(tzinfo=timezone.utc)
SKIP, HOLD, KEEP = Action.SKIP, Action.HOLD, Action.KEEP
SERVICE_END = "service_end"


class Rule(StrEnum):
    """The rules a record is looked at by, in precedence order."""

    CATEGORY = "category"
    SUBJECT = "subject"
    HOLDS = "holds"
    ERASURE = "erasure request"
    MINOR = "minor"
    CLOCK = "clock"


# The verdicts of the step that decides, as `retention explain` names them.
UNKNOWN_CATEGORY = "unknown category: skip"
UNKNOWN_SUBJECT = "unknown subject: skip"
HELD = "hold"
REQUESTED = "erasure request"
MINOR = "minor"
EXPIRED = "rule expiry"
NOT_YET_DUE = "keep: not yet due"
NOT_STARTED = "keep: clock not started"
NEVER_DUE = "keep: due beyond the calendar"
#: How a KEEP reason ends when the due date is past year 9999 (``retention plan`` counts it as later).
BEYOND_CALENDAR = "ends beyond the calendar (after 9999-12-31)"


@dataclass(frozen=True, slots=True)
class Step:
    """One rule looked at for one record: what it found and what it says.

    ``decision`` is the rule's verdict when the record reaches it, None when the rule lets
    the record pass to the next one; the first step with a decision decides. ``due`` is,
    for the clock, when the rule makes the record due (None: not started, or never).
    """

    rule: Rule
    verdict: str
    finding: str
    detail: str = ""
    decision: Decision | None = None
    due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    """Every rule looked at for one record, in precedence order (see :func:`trace`)."""

    steps: tuple[Step, ...]

    @property
    def deciding(self) -> Step:
        """The first step that decides (there always is one: the clock, or a skip)."""
        return next(step for step in self.steps if step.decision is not None)

    @property
    def decision(self) -> Decision:
        decision = self.deciding.decision
        assert decision is not None
        return decision

    def step(self, rule: Rule) -> Step | None:
        return next((step for step in self.steps if step.rule is rule), None)


class Clock:
    """A category's rule at one instant: when a record is due, and the verdict at ``now``.

    The clock starts at the record's creation or at its subject's service end (``start``).
    """

    __slots__ = ("now", "_action", "_expired", "_never", "_rule", "_retain")

    def __init__(self, category: Category, now: datetime) -> None:
        self.now = now
        self._action, self._retain = category.action, category.retain
        rule = f"{category.retain} after {'service end' if category.after == SERVICE_END else 'creation'}"
        self._rule = rule
        self._expired = f"retention {rule} expired"
        self._never = Decision(KEEP, f"kept: retention {rule} {BEYOND_CALENDAR}")

    def due(self, start: datetime) -> datetime | None:
        """When a record whose clock started at *start* is due; None past the calendar (never).

        Monotonic in *start* (see :mod:`retention_core.durations`): :meth:`latest_start`
        relies on it.
        """
        return self._retain.end(start)

    def verdict(self, start: datetime | None) -> Decision:
        """The rule's verdict at ``now`` for a record whose clock started at *start* (None: not yet)."""
        if start is None:
            return _NOT_STARTED
        due = self.due(start)
        if due is None:
            return self._never
        if due <= self.now:
            return Decision(self._action, self._expired, due=due)
        return Decision(KEEP, f"kept until {due.date().isoformat()} ({self._rule})", due=due)

    def latest_start(self) -> datetime | None:
        """The latest clock start whose record is due at ``now`` (None: none is).

        :meth:`due` inverted: for every *start*, ``verdict(start)`` deletes exactly when
        ``start <= latest_start()``.
        """
        return latest_start(self.due, self.now, self._retain.naive_start(self.now))


_NOT_STARTED = Decision(KEEP, "service still active: retention clock not started")


def covering_holds(record: Record, holds: tuple[Hold, ...]) -> tuple[str, ...]:
    """Ids of every active hold whose scope covers *record* (all are reported)."""
    if not holds:
        return ()
    return tuple(h.id for h in holds if h.active and h.scope.covers(record))


def clock_start(category: Category, subject: Subject | None, record: Record) -> datetime | None:
    """Where *record*'s clock starts under *category*; None while it has not started."""
    if category.after == SERVICE_END:
        return subject.service_ended_at if subject is not None else None
    return record.created


# -- the verdicts, shared by trace() and Decider ---------------------------------------------------
def _unknown_category(record: Record) -> Decision:
    return Decision(SKIP, f"unknown category {record.category!r}")


def _unknown_subject(record: Record, category: Category) -> Decision:
    why = "no subject" if record.subject is None else f"unknown subject {record.subject!r}"
    return Decision(SKIP, f"{why}; category {category.name!r} counts from service end")


def _held(ids: tuple[str, ...]) -> Decision:
    return Decision(HOLD, "held by " + ", ".join(ids), holds=ids)


def _erasure(request: ErasureRequest, category: Category) -> Decision:
    return Decision(category.action, f"erasure request {request.id} from {request.controller}",
                    due=request.received_at)


def _minor(category: Category) -> Decision:
    return Decision(category.action, "subject is flagged as a child under 16", due=None)


# -- the fast path ---------------------------------------------------------------------------------
class Decider:
    """:func:`decide` for one context, fast.

    Everything but the creation clock depends only on a record's (subject, category, source):
    the verdict for each such triple is worked out once and remembered, so most records cost
    one dictionary look-up. A run creates a Decider per context it decides under and drops it
    with that context; the context must not change while the Decider is in use.
    """

    #: Distinct (subject, category, source) triples remembered; past it the memo starts
    #: again, so a run over millions of subjects keeps its memory flat.
    memo_limit = 50_000

    __slots__ = ("ctx", "_memo", "_clocks")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._memo: dict[tuple[str | None, str | None, str], Decision | Clock] = {}
        self._clocks: dict[str, Clock] = {}

    def decide(self, record: Record) -> Decision:
        """The policy's verdict on *record*: the same as ``trace(record, ctx).decision``."""
        known = self._memo.get((record.subject, record.category, record.source))
        if known is None:
            known = self._learn(record)
        if known.__class__ is Decision:
            return known  # type: ignore[return-value]
        return known.verdict(record.created)  # type: ignore[union-attr]  # a creation clock

    def _learn(self, record: Record) -> Decision | Clock:
        """The verdict for *record*'s triple: a Decision, or the Clock that decides by creation."""
        known = self._triple(record)
        if len(self._memo) >= self.memo_limit:
            self._memo = {}
        self._memo[(record.subject, record.category, record.source)] = known
        return known

    def _triple(self, record: Record) -> Decision | Clock:
        """The rules in precedence order, as :func:`trace` looks at them, stopping at the first verdict."""
        ctx = self.ctx
        category = ctx.categories.get(record.category) if record.category is not None else None
        if category is None:
            return _unknown_category(record)
        subject = ctx.subjects.get(record.subject) if record.subject is not None else None
        if subject is None and category.after == SERVICE_END:
            return _unknown_subject(record, category)
        held = covering_holds(record, ctx.holds)
        if held:
            return _held(held)
        if subject is not None:
            request = ctx.requests.get(subject.id)
            if request is not None:
                return _erasure(request, category)
            if subject.minor:
                return _minor(category)
        clock = self._clocks.get(category.name)
        if clock is None:
            clock = self._clocks[category.name] = Clock(category, ctx.now)
        if category.after == SERVICE_END:
            return clock.verdict(clock_start(category, subject, record))
        return clock


def decide(record: Record, ctx: Context) -> Decision:
    """The policy's verdict on one record; for many records, use one :class:`Decider` per context."""
    return Decider(ctx).decide(record)


# -- the explainable path --------------------------------------------------------------------------
def trace(record: Record, ctx: Context) -> Trace:
    """Every rule looked at for *record*, in precedence order, each with its verdict.

    After a skip nothing further can be judged, so the trace stops there; otherwise every
    rule is looked at (a held record still shows when its rule would make it due).
    """
    category = ctx.categories.get(record.category) if record.category is not None else None
    if category is None:
        known = ", ".join(ctx.categories) or "none"
        return Trace((Step(Rule.CATEGORY, UNKNOWN_CATEGORY, f"unknown category {record.category!r}",
                           f"known categories: {known}; unknown is never deleted", _unknown_category(record)),))
    steps = [Step(Rule.CATEGORY, "known", f"keep {category.retain} after "
                  f"{'service end' if category.after == SERVICE_END else 'creation'}, then {category.action.value}")]
    subject = ctx.subjects.get(record.subject) if record.subject is not None else None
    steps.append(_subject_step(record, category, subject))
    if subject is None and category.after == SERVICE_END:
        return Trace(tuple(steps))
    held = covering_holds(record, ctx.holds)
    steps.append(Step(Rule.HOLDS, HELD if held else "not held",
                      f"{len(held)} of {len(ctx.holds)} apply" if ctx.holds else "no holds defined",
                      ", ".join(held), _held(held) if held else None))
    steps.append(_request_step(subject, category, ctx))
    steps.append(Step(Rule.MINOR, MINOR if subject is not None and subject.minor else "not a minor",
                      "flagged as a child under 16" if subject is not None and subject.minor
                      else "not flagged" if subject is not None else "no subject",
                      decision=_minor(category) if subject is not None and subject.minor else None))
    steps.append(_clock_step(record, category, subject, ctx.now))
    return Trace(tuple(steps))


def _subject_step(record: Record, category: Category, subject: Subject | None) -> Step:
    needed = category.after == SERVICE_END
    if record.subject is None:
        return Step(Rule.SUBJECT, UNKNOWN_SUBJECT if needed else "none", "none",
                    decision=_unknown_subject(record, category) if needed else None)
    if subject is None:
        return Step(Rule.SUBJECT, UNKNOWN_SUBJECT if needed else "unknown",
                    f"{record.subject} is not in the subjects source",
                    decision=_unknown_subject(record, category) if needed else None)
    ended = f"service ended {_date(subject.service_ended_at)}" if subject.service_ended_at else "service active"
    return Step(Rule.SUBJECT, "known", subject.id,
                f"controller {subject.controller or '—'}, {ended}{', minor' if subject.minor else ''}")


def _request_step(subject: Subject | None, category: Category, ctx: Context) -> Step:
    if subject is None:
        return Step(Rule.ERASURE, "none", "no subject")
    request = ctx.requests.get(subject.id)
    if request is None:
        return Step(Rule.ERASURE, "none", f"none for {subject.id}")
    return Step(Rule.ERASURE, REQUESTED, f"{request.id} from {request.controller}: {request.status(ctx.now)}",
                f"received {_date(request.received_at)}, due {_date(request.due_at)}", _erasure(request, category))


def _clock_step(record: Record, category: Category, subject: Subject | None, now: datetime) -> Step:
    clock = Clock(category, now)
    start = clock_start(category, subject, record)
    decision = clock.verdict(start)
    if category.after != SERVICE_END:
        finding = f"created {_date(record.created)}"
    elif start is None:
        finding = "service end (not ended: the clock has not started)"
    else:
        finding = f"service end {_date(start)}"
    if start is None:
        return Step(Rule.CLOCK, NOT_STARTED, finding, "no retention end date yet", decision)
    due = clock.due(start)
    if due is None:
        return Step(Rule.CLOCK, NEVER_DUE, finding, "retention ends after 9999-12-31, beyond the calendar", decision)
    past = due <= now
    return Step(Rule.CLOCK, EXPIRED if past else NOT_YET_DUE, finding,
                f"retention ends {_date(due)} ({'past' if past else 'future'})", decision, due)


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "—"


# -- the set form ----------------------------------------------------------------------------------
def cutoffs(source: Source, ctx: Context) -> Cutoffs:
    """``decide`` for a whole single-category source, in set form, for push-down backends.

    A record of the source is due under the returned :class:`Cutoffs` exactly when
    ``decide`` would say delete/anonymize for it (a property test proves this on generated
    policies). The clock's cutoff is :meth:`Clock.latest_start`, the inverse of the very
    :meth:`Clock.due` that ``decide`` compares with ``now``. Subjects the rule needs but
    that are unknown are never due (they are skipped).
    """
    category = ctx.categories.get(source.category or "")
    if category is None:
        return Cutoffs(SKIP, held=True, held_subjects=frozenset())
    probe = Record(source.name, "", ctx.now, category=category.name)
    source_held = bool(covering_holds(probe, tuple(h for h in ctx.holds if h.scope.subject is None)))
    held_subjects = frozenset(
        h.scope.subject for h in ctx.holds
        if h.scope.subject is not None
        and covering_holds(Record(source.name, "", ctx.now, subject=h.scope.subject, category=category.name), (h,))
    )
    limit = Clock(category, ctx.now).latest_start()
    by_created = limit if category.after != SERVICE_END else None
    per_subject: dict[str, datetime | None] = {}
    for subject in ctx.subjects.values():
        if subject.id in ctx.requests or subject.minor:
            per_subject[subject.id] = ALL
        elif category.after == SERVICE_END:
            start = subject.service_ended_at
            per_subject[subject.id] = ALL if start is not None and limit is not None and start <= limit else None
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
    None when plain records need ``decide`` one by one, or when none of them is due.
    """
    category = ctx.categories.get(source.category or "")
    if category is None or category.after == SERVICE_END:
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
