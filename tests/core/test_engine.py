from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from retention_core.durations import add_months, parse_duration
from retention_core.engine import Decider, Rule, cutoffs, decide, plain_cutoff, trace
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
NOW = datetime(2026, 6, 1, tzinfo=UTC)
CATS = {
    "call": Category("call", parse_duration("90d")),
    "acct": Category("acct", parse_duration("30d"), after="service_end"),
    "emp": Category("emp", parse_duration("1y"), after="service_end", action=Action.ANONYMIZE),
}
SUBJECTS = {
    "alice": Subject("alice", "ca"),
    "bob": Subject("bob", "cb", service_ended_at=datetime(2025, 1, 1, tzinfo=UTC)),
    "kid": Subject("kid", "ck", minor=True),
}


def ctx(holds=(), requests=None, now=NOW):
    return Context(now=now, categories=CATS, subjects=SUBJECTS, holds=tuple(holds), requests=requests or {})


def rec(subject="alice", category="call", age_days=10, source="s"):
    return Record(source, f"{subject}/x", NOW - timedelta(days=age_days), subject=subject, category=category)


def hold(hid="H1", released=False, **scope):
    return Hold(hid, "legal", HoldScope(**scope), "case",
                released_at=NOW if released else None)


def request(subject):
    return ErasureRequest("R1", subject, "c", NOW - timedelta(days=1), NOW + timedelta(days=29))


def test_young_record_is_kept_with_its_due_date():
    d = decide(rec(age_days=10), ctx())
    assert d.action is Action.KEEP and d.due == NOW - timedelta(days=10) + timedelta(days=90)


def test_expired_record_is_deleted():
    assert decide(rec(age_days=91), ctx()).action is Action.DELETE


def test_hold_beats_expiry_and_reports_every_covering_hold():
    d = decide(rec(age_days=500), ctx([hold("H1", subject="alice"), hold("H2", category="call"),
                                       hold("H3", subject="bob")]))
    assert d.action is Action.HOLD and d.holds == ("H1", "H2")


def test_released_hold_no_longer_applies():
    assert decide(rec(age_days=500), ctx([hold(subject="alice", released=True)])).action is Action.DELETE


def test_scope_needs_every_key_to_match():
    assert decide(rec(age_days=500), ctx([hold(subject="alice", source="other")])).action is Action.DELETE


def test_hold_beats_erasure_request_and_minor():
    assert decide(rec("kid"), ctx([hold(subject="kid")])).action is Action.HOLD
    assert decide(rec(), ctx([hold(subject="alice")], {"alice": request("alice")})).action is Action.HOLD


def test_erasure_request_and_minor_beat_the_clock():
    assert decide(rec(age_days=1), ctx(requests={"alice": request("alice")})).action is Action.DELETE
    d = decide(rec("kid", age_days=0), ctx())
    assert d.action is Action.DELETE and "under 16" in d.reason


def test_service_end_clock():
    assert decide(rec("bob", "acct"), ctx()).action is Action.DELETE
    d = decide(rec("alice", "acct"), ctx())
    assert d.action is Action.KEEP and d.due is None


def test_anonymize_action_follows_the_category():
    assert decide(rec("bob", "emp"), ctx()).action is Action.ANONYMIZE
    assert decide(rec("kid", "emp"), ctx()).action is Action.ANONYMIZE


def test_unknown_category_or_needed_subject_is_skipped_never_deleted():
    assert decide(rec(category="nope"), ctx()).action is Action.SKIP
    assert decide(rec("stranger", "acct"), ctx()).action is Action.SKIP
    r = Record("s", "x", NOW - timedelta(days=400), subject=None, category="acct")
    assert decide(r, ctx()).action is Action.SKIP
    # a creation clock does not need a known subject
    assert decide(rec("stranger", "call", age_days=400), ctx()).action is Action.DELETE


# -- properties ------------------------------------------------------------------------------------
subjects = st.sampled_from(["alice", "bob", "kid", "stranger", None])
categories = st.sampled_from(["call", "acct", "emp", "nope"])
scopes = st.builds(HoldScope, subject=st.sampled_from([None, "alice", "bob", "kid"]),
                   category=st.sampled_from([None, "call", "acct", "emp"]),
                   source=st.sampled_from([None, "s", "t"])).filter(lambda s: bool(s.as_dict()))
holds = st.lists(st.builds(Hold, id=st.sampled_from(["A", "B", "C"]), kind=st.just("legal"), scope=scopes,
                           reason=st.just("r"), released_at=st.sampled_from([None, NOW])), max_size=3)
records = st.builds(lambda s, c, age, src: Record(src, "loc", NOW - timedelta(hours=age), subject=s, category=c),
                    subjects, categories, st.integers(-100, 24 * 800), st.sampled_from(["s", "t"]))
requested = st.sets(st.sampled_from(["alice", "bob", "kid"]), max_size=2)


@given(records, holds, requested)
def test_precedence_hold_then_request_minor_then_clock(record, hs, req):
    c = ctx(hs, {s: request(s) for s in req})
    d = decide(record, c)
    known = record.category in CATS
    needs_subject = known and CATS[record.category].after == "service_end"
    if not known or (needs_subject and record.subject not in SUBJECTS):
        assert d.action is Action.SKIP
        return
    covering = [h.id for h in hs if h.active and h.scope.covers(record)]
    if covering:
        assert d.action is Action.HOLD and list(d.holds) == covering
    elif record.subject in req or (record.subject in SUBJECTS and SUBJECTS[record.subject].minor):
        assert d.action is CATS[record.category].action
    else:
        assert d.action in (Action.KEEP, CATS[record.category].action)


@settings(max_examples=300)
@given(records, holds, requested, st.sampled_from(["call", "acct", "emp"]))
def test_set_form_selects_exactly_what_decide_selects(record, hs, req, category):
    source = Source("s", "memory", category=category)
    record = Record("s", "loc", record.created, subject=record.subject, category=category)
    c = ctx(hs, {s: request(s) for s in req})
    expected = decide(record, c).action in (Action.DELETE, Action.ANONYMIZE)
    assert cutoffs(source, c).due(record.subject, record.created) == expected


@settings(max_examples=300)
@given(records, holds, requested, st.sampled_from(["call", "acct", "emp"]))
def test_a_plain_record_is_decided_by_one_comparison_exactly_as_decide_decides(record, hs, req, category):
    source = Source("s", "memory", category=category)
    record = Record("s", "loc", record.created, category=category)  # plain: no subject
    c = ctx(hs, {s: request(s) for s in req})
    plain = plain_cutoff(source, c)
    if plain is None:
        assert CATS[category].after != "created" or any(
            h.active and h.scope.subject is None and h.scope.covers(record) for h in hs)
        return
    cutoff, action = plain
    assert decide(record, c).action is (action if record.created <= cutoff else Action.KEEP)


def test_the_deciders_memo_stays_bounded_and_right(monkeypatch):
    monkeypatch.setattr(Decider, "memo_limit", 3)
    c = ctx((Hold("A", "legal", HoldScope(subject="alice"), "r"), Hold("B", "legal", HoldScope(category="call"), "r")))
    decider = Decider(c)
    for i in range(20):
        subject = "alice" if i % 2 else f"s{i}"
        d = decider.decide(Record("s", f"l{i}", NOW, subject=subject, category="call"))
        assert d.holds == (("A", "B") if subject == "alice" else ("B",))
        assert len(decider._memo) <= 3


def test_the_engine_keeps_nothing_between_calls():
    """Memos belong to a Decider the caller owns, never to the module (no id()-keyed caches)."""
    import retention_core.engine as engine

    before = {name: repr(value) for name, value in vars(engine).items() if isinstance(value, (dict, list, set))}
    for hs in ((), (hold(subject="alice"),)):
        decide(rec(age_days=500), ctx(hs))
        cutoffs(Source("s", "memory", category="call"), ctx(hs))
    after = {name: repr(value) for name, value in vars(engine).items() if isinstance(value, (dict, list, set))}
    assert after == before


def test_a_decider_answers_for_its_own_context_only():
    held, free = Decider(ctx([hold(subject="alice")])), Decider(ctx())
    record = rec(age_days=500)
    assert held.decide(record).action is Action.HOLD
    assert free.decide(record).action is Action.DELETE
    assert held.decide(record).action is Action.HOLD


def test_the_trace_walks_the_precedence_and_ends_in_decides_verdict():
    record = rec("kid", age_days=500)
    traced = trace(record, ctx([hold(subject="kid")], {"kid": request("kid")}))
    assert [s.rule for s in traced.steps] == [Rule.CATEGORY, Rule.SUBJECT, Rule.HOLDS, Rule.ERASURE, Rule.MINOR,
                                              Rule.CLOCK]
    # Every rule gives its verdict; the first one that decides, decides.
    assert [s.decision is not None for s in traced.steps] == [False, False, True, True, True, True]
    assert traced.deciding.rule is Rule.HOLDS
    assert traced.decision == decide(record, ctx([hold(subject="kid")], {"kid": request("kid")}))
    assert traced.step(Rule.CLOCK).due == record.created + timedelta(days=90)


def test_the_trace_stops_at_a_skip():
    assert [s.rule for s in trace(rec(category="nope"), ctx()).steps] == [Rule.CATEGORY]
    stranger = trace(rec("stranger", "acct"), ctx())
    assert [s.rule for s in stranger.steps] == [Rule.CATEGORY, Rule.SUBJECT]
    assert stranger.decision.action is Action.SKIP


# -- dates at the calendar's ends never stop a run (issue 15, item 9) -------------------------------
END = datetime.max.replace(tzinfo=UTC)
START = datetime.min.replace(tzinfo=UTC)


def test_a_record_created_near_year_9999_is_kept_never_an_error():
    record = Record("s", "x", datetime(9999, 12, 28, tzinfo=UTC), subject="alice", category="call")
    for c in (ctx(), ctx(now=END)):
        d = decide(record, c)
        assert d.action is Action.KEEP and d.due is None and "beyond the calendar" in d.reason
        assert trace(record, c).decision == d
        assert not cutoffs(Source("s", "memory", category="call"), c).due("alice", record.created)


def test_a_due_date_past_the_calendar_is_not_due_even_at_the_last_instant():
    """Saturating the due date to datetime.max made it "due" when now is datetime.max."""
    cats = {"m": Category("m", parse_duration("1mo"))}
    c = Context(now=END, categories=cats, subjects={})
    record = Record("s", "x", datetime(9999, 12, 15, tzinfo=UTC), category="m")
    assert decide(record, c).action is Action.KEEP
    assert not cutoffs(Source("s", "memory", category="m"), c).due(None, record.created)


def test_a_service_end_near_year_9999_is_kept_and_erasure_still_applies():
    subjects = {**SUBJECTS, "late": Subject("late", "cl", service_ended_at=datetime(9999, 12, 31, tzinfo=UTC))}
    c = Context(now=NOW, categories=CATS, subjects=subjects)
    record = Record("s", "x", NOW, subject="late", category="acct")
    d = decide(record, c)
    assert d.action is Action.KEEP and "beyond the calendar" in d.reason
    owed = Context(now=NOW, categories=CATS, subjects=subjects, requests={"late": request("late")})
    assert decide(record, owed).action is Action.DELETE
    assert cutoffs(Source("s", "memory", category="acct"), c).per_subject["late"] is None


def test_an_as_of_at_year_1_means_nothing_is_due_by_the_clock():
    c = ctx(now=START)
    source = Source("s", "memory", category="call")
    assert cutoffs(source, c).default is None
    assert plain_cutoff(source, c) is None
    assert decide(Record("s", "x", START, category="call"), c).action is Action.KEEP


def test_calendar_arithmetic_saturates_instead_of_raising():
    late = datetime(9999, 12, 15, 12, tzinfo=UTC)
    assert add_months(late, 1) == END
    assert add_months(datetime(1, 1, 15, tzinfo=UTC), -1) == START
    assert parse_duration("1mo").end(late) is None and parse_duration("1mo").after(late) == END
    assert parse_duration("90d").end(late) is None
    assert parse_duration("7y").latest_start_due_by(datetime(3, 1, 1, tzinfo=UTC)) is None
    assert parse_duration("0d").latest_start_due_by(END) == END


# -- a missing day: the set form and the per-record rule agree ---------------------------------------
def test_a_missing_day_rolls_to_the_start_of_the_later_day_so_push_down_agrees():
    """Jan 31 23:00 + 1mo was Mar 1 23:00, Feb 1 01:00 + 1mo Mar 1 01:00: not monotonic, so on
    Mar 1 at noon the push-down's "created <= Feb 1 12:00" deleted the Jan 31 record that
    per-record decide kept until 23:00. Now the missing day's period ends at the start of Mar 1."""
    cats = {"m": Category("m", parse_duration("1mo"))}
    c = Context(now=datetime(2023, 3, 1, 12, tzinfo=UTC), categories=cats, subjects={})
    plan = cutoffs(Source("s", "memory", category="m"), c)
    for created in (datetime(2023, 1, 31, 23, tzinfo=UTC), datetime(2023, 2, 1, 1, tzinfo=UTC),
                    datetime(2023, 2, 1, 13, tzinfo=UTC)):
        d = decide(Record("s", "x", created, category="m"), c)
        assert plan.due(None, created) == (d.action is Action.DELETE)
    assert parse_duration("1mo").after(datetime(2023, 1, 31, 23, tzinfo=UTC)) == datetime(2023, 3, 1, tzinfo=UTC)
