"""The engine's three views of the policy agree on generated policies.

Per-record ``decide``, the explainable ``trace`` and a run's ``Decider`` give the same
Decision; the set form (``cutoffs``, ``plain_cutoff``) selects exactly the records ``decide``
deletes or anonymizes. Policies are generated with holds scoped to subjects, categories and
sources, minors, erasure requests, both clocks, subjects with and without a service end,
records with and without a subject — and dates anywhere in the calendar, its ends included,
where nothing may raise.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_core.durations import parse_duration
from retention_core.engine import Decider, cutoffs, decide, plain_cutoff, trace
from retention_core.model import (
    Action,
    Category,
    Context,
    ErasureRequest,
    Hold,
    HoldScope,
    Record,
    Source,
    Subject,
)

UTC = timezone.utc
DESTRUCTIVE = (Action.DELETE, Action.ANONYMIZE)
SUBJECT_IDS = ["a", "b", "c", "d"]
CATEGORY_NAMES = ["c1", "c2"]
SOURCES = ["s", "t"]


def shifted(start: datetime, delta: timedelta) -> datetime:
    """*start* + *delta*, kept inside the calendar."""
    try:
        return start + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=UTC)


anywhere = st.datetimes(timezones=st.just(UTC))  # year 1 to 9999, the ends included
ordinary = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
# Month ends are where calendar arithmetic is subtle (a missing day rolls forward).
month_edges = st.builds(lambda y, m, last, hour: datetime(y, m, 1, hour, tzinfo=UTC) - timedelta(days=last),
                        st.integers(2016, 2034), st.integers(1, 12), st.integers(0, 1), st.integers(0, 23))
extremes = st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
                            datetime(9999, 12, 28, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC),
                            datetime(1, 1, 2, tzinfo=UTC)])
instants = st.one_of(ordinary, month_edges, anywhere, extremes)
retains = st.one_of(st.integers(0, 400).map(lambda n: f"{n}d"), st.integers(0, 30).map(lambda n: f"{n}mo"),
                    st.integers(0, 8).map(lambda n: f"{n}y"), st.integers(0, 72).map(lambda n: f"{n}h"),
                    st.tuples(st.integers(0, 3), st.integers(0, 11), st.integers(0, 40))
                    .map(lambda t: f"P{t[0]}Y{t[1]}M{t[2]}D"))
categories = st.builds(lambda retain, after, action: (parse_duration(retain), after, action),
                       retains, st.sampled_from(["created", "service_end"]), st.sampled_from(DESTRUCTIVE))
scopes = st.builds(HoldScope, subject=st.none() | st.sampled_from([*SUBJECT_IDS, "zed"]),
                   category=st.none() | st.sampled_from(CATEGORY_NAMES),
                   source=st.none() | st.sampled_from(SOURCES)).filter(lambda s: bool(s.as_dict()))


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    now = draw(instants)
    cats = {name: Category(name, *draw(categories)) for name in CATEGORY_NAMES}
    subjects = {}
    for sid in draw(st.sets(st.sampled_from(SUBJECT_IDS))):
        ended = draw(st.none() | instants | st.builds(shifted, st.just(now), st.timedeltas(timedelta(days=-900),
                                                                                         timedelta(days=900))))
        subjects[sid] = Subject(sid, "ctl", service_ended_at=ended, minor=draw(st.booleans()))
    holds = tuple(Hold(f"H{i}", "legal", scope, "case", released_at=now if released else None)
                  for i, (scope, released) in enumerate(draw(st.lists(st.tuples(scopes, st.booleans()), max_size=3))))
    received, due = shifted(now, timedelta(days=-3)), shifted(now, timedelta(days=27))
    requests = {s: ErasureRequest(f"r-{s}", s, "ctl", received, due)
                for s in draw(st.sets(st.sampled_from([*SUBJECT_IDS, "zed"])))}
    return Context(now=now, categories=cats, subjects=subjects, holds=holds, requests=requests)


@st.composite
def created_near_the_boundary(draw: st.DrawFn, ctx: Context, category: Category) -> datetime:
    """Anywhere, or close to where the category's clock starts being due (``now`` minus the
    retention), or close to a subject's service end: where per-record and set form could part."""
    near = [category.retain.naive_start(ctx.now), ctx.now,
            *(s.service_ended_at for s in ctx.subjects.values() if s.service_ended_at is not None)]
    base = draw(st.sampled_from(near))
    offset = draw(st.one_of(st.integers(-5 * 24 * 60, 5 * 24 * 60).map(lambda m: timedelta(minutes=m)),
                            st.integers(-3, 3).map(lambda us: timedelta(microseconds=us))))
    # The last days of the month before the naive start: a day there may not exist in the
    # month the retention ends in, so it rolls forward past starts a little later than it.
    naive = near[0]
    month_end = naive.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rolled = shifted(month_end, timedelta(minutes=draw(st.integers(-4 * 24 * 60, 24 * 60))))
    return draw(st.one_of(instants, st.just(shifted(base, offset)), st.just(rolled)))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), contexts(), st.sampled_from(SOURCES), st.sampled_from(CATEGORY_NAMES))
def test_the_set_form_selects_exactly_what_decide_deletes(data: st.DataObject, ctx: Context, source_name: str,
                                                           category_name: str) -> None:
    source = Source(source_name, "memory", category=category_name)
    plan = cutoffs(source, ctx)
    plain = plain_cutoff(source, ctx)
    for _ in range(8):
        created = data.draw(created_near_the_boundary(ctx, ctx.categories[category_name]))
        subject = data.draw(st.none() | st.sampled_from([*SUBJECT_IDS, "zed"]))
        record = Record(source_name, "loc", created, subject=subject, category=category_name)
        decision = decide(record, ctx)
        assert plan.due(subject, created) == (decision.action in DESTRUCTIVE), (record, decision, plan)
        if plain is not None and subject is None:
            cutoff, action = plain
            assert decision.action is (action if created <= cutoff else Action.KEEP), (record, decision, plain)


@settings(max_examples=400, deadline=None)
@given(contexts(), st.lists(st.tuples(instants, st.none() | st.sampled_from([*SUBJECT_IDS, "zed"]),
                                      st.none() | st.sampled_from([*CATEGORY_NAMES, "other"]),
                                      st.sampled_from(SOURCES)), min_size=1, max_size=8))
def test_decide_the_trace_and_a_runs_decider_give_one_decision(ctx: Context, rows: list) -> None:
    decider = Decider(ctx)
    for created, subject, category, source in rows * 2:  # twice: the second time from the memo
        record = Record(source, "loc", created, subject=subject, category=category)
        decision = decide(record, ctx)
        assert decider.decide(record) == decision
        traced = trace(record, ctx)
        assert traced.decision == decision
        assert traced.steps[-1].decision is not None  # the last rule looked at always has a verdict


@settings(max_examples=300, deadline=None)
@given(contexts(), anywhere, st.none() | st.sampled_from(SUBJECT_IDS), st.sampled_from(CATEGORY_NAMES))
def test_no_date_anywhere_in_the_calendar_makes_the_engine_raise(ctx: Context, created: datetime,
                                                                 subject: str | None, category: str) -> None:
    record = Record("s", "loc", created, subject=subject, category=category)
    decision = decide(record, ctx)
    due = decision.due
    if decision.action is Action.KEEP and due is not None:
        assert due > ctx.now  # kept means not yet due, never "due but kept"
    source = Source("s", "memory", category=category)
    cutoffs(source, ctx)
    plain_cutoff(source, ctx)


@settings(max_examples=300, deadline=None)
@given(month_edges, st.integers(1, 30), st.integers(0, 3), st.integers(0, 59), st.data())
def test_a_creation_clock_cutoff_agrees_with_decide_at_month_ends(edge: datetime, months: int, days: int,
                                                                 minute: int, data: st.DataObject) -> None:
    """Month arithmetic is where a threshold and the per-record rule could part: a start on a
    day the end month lacks rolls forward, past starts a little later than it. So ``now`` is
    the retention's days after a month edge, and records start around the naive cutoff's month."""
    retain = parse_duration(f"P{months}M{days}D")
    now = edge + timedelta(days=days, minutes=minute)
    ctx = Context(now=now, categories={"m": Category("m", retain)}, subjects={})
    plan = cutoffs(Source("s", "memory", category="m"), ctx)
    month = retain.naive_start(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for minutes in data.draw(st.lists(st.integers(-4 * 24 * 60, 2 * 24 * 60), min_size=1, max_size=20)):
        created = month + timedelta(minutes=minutes)
        decision = decide(Record("s", "loc", created, category="m"), ctx)
        assert plan.due(None, created) == (decision.action is Action.DELETE), (created, decision, plan.default)
