from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from retention_core.durations import parse_duration
from retention_core.engine import cutoffs, decide, plain_cutoff
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


def test_the_covering_holds_memo_stays_bounded_and_right(monkeypatch):
    import retention_core.engine as engine

    monkeypatch.setattr(engine, "_MEMO_LIMIT", 3)
    c = ctx((Hold("A", "legal", HoldScope(subject="alice"), "r"), Hold("B", "legal", HoldScope(category="call"), "r")))
    for i in range(20):
        subject = "alice" if i % 2 else f"s{i}"
        d = decide(Record("s", f"l{i}", NOW, subject=subject, category="call"), c)
        assert d.holds == (("A", "B") if subject == "alice" else ("B",))
        assert len(engine._holds_seen[0][1]) <= 3
