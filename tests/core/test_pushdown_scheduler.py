"""The scheduler's side of the push-down protocol, with a set-based in-memory backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from retention_core import hookimpl
from retention_core.audit import records
from retention_core.model import Outcome, Status
from retention_core.plugins import load_plugins
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing import memory
from retention_core.testing.memory import InMemoryBackend

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


class SetBased(InMemoryBackend):
    """Deletes in batches of two inside 'storage'; each batch commits only when resumed."""

    name = "setbased"
    can_push_down = True
    hidden = 0  # how many items the scan does not show (they became due after it)

    def rows(self, source):  # like an SQL table, the backend itself knows each row's subject
        return [replace(r, subject=r.location.split("/")[0]) for r in super().scan(source)]

    def scan(self, source):
        yield from self.rows(source)[self.hidden:]

    def push_down(self, source, plan):
        store = self.store
        due = [r for r in self.rows(source) if plan.refresh().due(r.subject, r.created)]
        for i in range(0, len(due), 2):
            batch = due[i:i + 2]
            yield [Outcome(r, Status.DELETED) for r in batch]
            for r in batch:  # "commit"
                del store.items[r.location]


class Plugin:
    @hookimpl
    def retention_register_backends(self, register):
        register(SetBased)


def policy(make_policy, store_name, **extra):
    return make_policy(sources=[{"name": "calls", "backend": "setbased", "options": {"store": store_name},
                                 "category": "call"}], **extra)


def do_run(path):
    with Runtime.open(path, load_plugins(extra=[Plugin()])) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        report = run(rt, RunOptions(now=NOW))
        try:
            return report, {i.record.location: i for i in report.items()}
        finally:
            report.close()


def test_push_down_keeps_the_scan_reason_and_journals_intent_then_outcome(make_policy, store_name, monkeypatch):
    monkeypatch.setattr(SetBased, "hidden", 0)
    for name in ("alice/1", "alice/2", "bob/old"):
        memory.seed(store_name, name, NOW - timedelta(days=400 if name == "bob/old" else 1))
    path = policy(make_policy, store_name)
    report, items = do_run(path)
    assert items["alice/1"].outcome == "deleted" and "erasure request" in items["alice/1"].decision.reason
    assert items["bob/old"].outcome == "deleted" and "retention 90d" in items["bob/old"].decision.reason
    events = [(e["event"], e.get("location")) for e in records(path.parent / "audit.jsonl")]
    for loc in ("alice/1", "alice/2", "bob/old"):
        assert events.index(("intent", loc)) < events.index(("outcome", loc))
    assert not memory.get_store(store_name).items


def test_limits_bound_push_down_even_when_more_became_due_after_the_scan(make_policy, store_name, monkeypatch):
    monkeypatch.setattr(SetBased, "hidden", 4)
    for i in range(6):
        memory.seed(store_name, f"bob/{i}", NOW - timedelta(days=400))
    path = policy(make_policy, store_name, limits={"max_deletions": 3})
    report, _ = do_run(path)  # the scan saw 2 due (within the limit); storage holds 6
    assert report.status == "limit-tripped" and "stopped after 2 deletions" in report.limit_tripped
    assert len(memory.get_store(store_name).items) == 4  # the batch over the limit was rolled back
    outcomes = [e for e in records(path.parent / "audit.jsonl") if e["event"] == "outcome"]
    intents = [e for e in records(path.parent / "audit.jsonl") if e["event"] == "intent"]
    assert len(outcomes) == len(intents) == 2


def run_with_a_late_hold(make_policy, store_name, scope):
    """Six due records of bob in batches of two; a hold with *scope* appears while the first batch
    is settled (batch two is already selected, not committed). Returns (report, trail path)."""
    from retention_core.model import Hold

    for i in range(6):
        memory.seed(store_name, f"bob/{i}", NOW - timedelta(days=400))
    placed: list[Hold] = []

    class Counsel:
        @hookimpl
        def retention_register_hold_sources(self, register):
            register("counsel", lambda: list(placed))

        @hookimpl
        def retention_after_delete(self, outcomes, context):
            if not placed:
                placed.append(Hold("LH-9", "legal", scope, "late"))

    path = policy(make_policy, store_name)
    with Runtime.open(path, load_plugins(extra=[Plugin(), Counsel()])) as rt:
        report = run(rt, RunOptions(now=NOW))
        report.close()
    return report, path.parent / "audit.jsonl"


def test_a_hold_placed_while_a_batch_is_settled_protects_the_next_uncommitted_batch(make_policy, store_name,
                                                                                     monkeypatch):
    from retention_core.model import HoldScope

    monkeypatch.setattr(SetBased, "hidden", 0)
    report, trail = run_with_a_late_hold(make_policy, store_name, HoldScope(subject="bob"))
    assert sorted(memory.get_store(store_name).items) == ["bob/2", "bob/3", "bob/4", "bob/5"]
    assert any("4 of its 6 due records were not deleted" in w and "bob" in w for w in report.warnings)
    entries = [e for e in records(trail) if e["event"] == "outcome"]
    assert sorted((e["location"], e["outcome"]) for e in entries) == [
        ("bob/0", "deleted"), ("bob/1", "deleted"), ("bob/2", "not-executed"), ("bob/3", "not-executed")]


class Surveyed(SetBased):
    """SetBased that can also count in 'storage'; scanning it is a test failure when ``forbid_scan``."""

    name = "surveyed"
    forbid_scan = False
    surveys: list[object] = []

    def scan(self, source):
        assert not Surveyed.forbid_scan, "a surveyed source was scanned record by record"
        yield from super().scan(source)

    def survey(self, source, cutoffs):
        from retention_core import Survey

        Surveyed.surveys.append(cutoffs)
        rows = self.rows(source)
        held = [r for r in rows if cutoffs.held or r.subject in cutoffs.held_subjects]
        by_subject: dict[str, int] = {}
        for r in held:
            if not cutoffs.held:
                by_subject[r.subject] = by_subject.get(r.subject, 0) + 1
        return Survey(total=len(rows), due=sum(cutoffs.due(r.subject, r.created) for r in rows), held=len(held),
                      held_by_subject=by_subject)


class SurveyPlugin:
    @hookimpl
    def retention_register_backends(self, register):
        register(Surveyed)


def seed_mixed(store_name):
    for name, days in {"alice/new": 1, "bob/old": 400, "bob/older": 500, "carol/old": 200, "carol/new": 3,
                       "dave/old": 365}.items():
        memory.seed(store_name, name, NOW - timedelta(days=days))


def surveyed_run(path, *, itemize, requests=()):
    with Runtime.open(path, load_plugins(extra=[SurveyPlugin()])) as rt:
        for subject in requests:
            rt.state.add_request(subject, "ctl", NOW - timedelta(days=1))
        report = run(rt, RunOptions(now=NOW, itemize=itemize))
        report.close()
        return report


def surveyed_policy(make_policy, store_name, **extra):
    return make_policy(sources=[{"name": "calls", "backend": "surveyed", "options": {"store": store_name},
                                 "category": "call"}], **extra)


def test_without_items_a_push_down_source_is_counted_in_storage_not_scanned(make_policy, store_name, monkeypatch):
    hold = [{"id": "LH-1", "kind": "legal", "scope": {"subject": "carol"}, "reason": "case"}]
    seed_mixed(store_name)
    itemized = surveyed_run(surveyed_policy(make_policy, store_name, holds=hold), itemize=True)
    memory.reset(store_name)
    seed_mixed(store_name)
    monkeypatch.setattr(Surveyed, "forbid_scan", True)
    monkeypatch.setattr(Surveyed, "surveys", [])
    counted = surveyed_run(surveyed_policy(make_policy, store_name, holds=hold), itemize=False)
    assert len(Surveyed.surveys) == 1
    assert counted.sources["calls"].scanned == itemized.sources["calls"].scanned == 6
    assert counted.summary() == itemized.summary()
    assert counted.summary()["delete"] == 3 and counted.summary()["hold"] == 2
    assert counted.outcomes() == itemized.outcomes() and counted.outcomes()["deleted"] == 3
    assert counted.protected() == itemized.protected() == {"LH-1": 2}
    assert sorted(memory.get_store(store_name).items) == ["alice/new", "carol/new", "carol/old"]


def test_safety_limits_apply_to_surveyed_counts_before_anything_is_deleted(make_policy, store_name, monkeypatch):
    seed_mixed(store_name)
    monkeypatch.setattr(Surveyed, "forbid_scan", True)
    report = surveyed_run(surveyed_policy(make_policy, store_name, limits={"max_deletions": 2}), itemize=False)
    assert report.status == "limit-tripped" and "plans 4 deletions" in report.limit_tripped
    assert len(memory.get_store(store_name).items) == 6


def test_a_held_subject_with_an_erasure_request_is_scanned_so_its_held_records_are_counted(
        make_policy, store_name, monkeypatch):
    hold = [{"id": "LH-1", "kind": "legal", "scope": {"subject": "carol"}, "reason": "case"}]
    seed_mixed(store_name)
    monkeypatch.setattr(Surveyed, "surveys", [])
    path = surveyed_policy(make_policy, store_name, holds=hold)
    with Runtime.open(path, load_plugins(extra=[SurveyPlugin()])) as rt:
        rt.state.add_request("carol", "ctl-c", NOW - timedelta(days=1))
        report = run(rt, RunOptions(now=NOW, itemize=False))
        report.close()
        (request,) = rt.state.requests()
    assert Surveyed.surveys == []  # fell back to the scan
    assert request.done_at is None and request.held_remaining == 2 and request.status(NOW) == "held"


class WithdrawnWhileSelecting(SetBased):
    """The erasure request that made the rows due is withdrawn while the first batch is selected."""

    name = "withdrawn"
    state = None

    def push_down(self, source, plan):
        stream = super().push_down(source, plan)
        first = next(stream, None)
        if first is not None and WithdrawnWhileSelecting.state is not None:
            (request,) = [r for r in WithdrawnWhileSelecting.state.requests() if r.withdrawn_at is None]
            WithdrawnWhileSelecting.state.withdraw_request(request.id, "sent in error")
            WithdrawnWhileSelecting.state = None
        if first is not None:
            yield first
        yield from stream


def test_a_request_withdrawn_while_a_batch_is_selected_rolls_the_batch_back(make_policy, store_name):
    """Adversary 2: after `requests withdraw` returned, set-based batches went on deleting the
    rows that were due only because of the request (holds had a re-check; requests did not)."""

    class Plugin2:
        @hookimpl
        def retention_register_backends(self, register):
            register(WithdrawnWhileSelecting)

    for n in range(4):
        memory.seed(store_name, f"alice/{n}", NOW - timedelta(days=1))
    path = make_policy(sources=[{"name": "calls", "backend": "withdrawn", "options": {"store": store_name},
                                 "category": "call"}], limits={"max_fraction": 1.0})
    with Runtime.open(path, load_plugins(extra=[memory, Plugin2()])) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        WithdrawnWhileSelecting.state = rt.state
        with run(rt, RunOptions(now=NOW)):
            pass
    assert len(memory.get_store(store_name).items) == 4  # none deleted: the batch was rolled back
    rolled = [e for e in records(path.parent / "audit.jsonl") if e.get("outcome") == "not-executed"]
    assert rolled and "erasure requests changed" in rolled[0]["error"]


def test_a_hold_source_failing_before_the_commit_closes_the_intent(make_policy, store_name, monkeypatch):
    """Adversary 2: a hold source that became unreadable between a set-based batch's intent and
    its commit stopped the run (right) but left the intent without an outcome for good."""
    monkeypatch.setattr(SetBased, "hidden", 0)
    for n in range(2):
        memory.seed(store_name, f"bob/{n}", NOW - timedelta(days=400))
    path = policy(make_policy, store_name, limits={"max_fraction": 1.0})
    import retention_core.scheduler as scheduler

    real = scheduler.cutoffs

    trail = path.parent / "audit.jsonl"

    def flaky(*args, **kwargs):  # unreachable from the first read after a batch's intent: before its commit
        if trail.exists() and '"event":"intent"' in trail.read_text():
            raise RuntimeError("hold source unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler, "cutoffs", flaky)
    with Runtime.open(path, load_plugins(extra=[Plugin()])) as rt:
        try:
            with run(rt, RunOptions(now=NOW)):
                pass
        except RuntimeError:
            pass
    events = [e for e in records(path.parent / "audit.jsonl") if e.get("location")]
    intents = {e["location"] for e in events if e["event"] == "intent"}
    closed = {e["location"] for e in events if e["event"] == "outcome"}
    assert intents and intents <= closed
    assert len(memory.get_store(store_name).items) == 2  # rolled back


def test_a_hold_covering_the_whole_source_midway_is_reported_not_a_silent_ok(make_policy, store_name, monkeypatch):
    """Adversarial review F08: the walk stopped by a source-wide hold kept the due records, yet the
    run said 'delete 6 … deleted 2' with no word of the hold. Now they count as held, protected by it."""
    from retention_core.model import HoldScope

    monkeypatch.setattr(SetBased, "hidden", 0)
    report, _ = run_with_a_late_hold(make_policy, store_name, HoldScope(source="calls"))
    assert len(memory.get_store(store_name).items) == 4
    stats = report.sources["calls"]
    assert stats.decisions["delete"] == 2 and stats.decisions["hold"] == 4
    assert stats.protected["LH-9"] == 4
    assert any("LH-9" in w and "4 of its 6 due records were kept" in w for w in report.warnings), report.warnings
