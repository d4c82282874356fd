"""The run loop over the in-memory backend: dry-run safety, holds, limits, journal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from retention_core import hookimpl
from retention_core.audit import records, verify
from retention_core.errors import LockedError
from retention_core.model import Hold, HoldScope
from retention_core.plugins import load_plugins
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing import memory
from retention_core.testing.memory import InMemoryBackend

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)  # as in conftest



class SmallBatches(InMemoryBackend):
    name = "small"
    batch_size = 2


class SmallBatchPlugin:
    @hookimpl
    def retention_register_backends(self, register):
        register(SmallBatches)


def runtime(policy_path, *extra) -> Runtime:
    return Runtime.open(policy_path, load_plugins(extra=[memory, SmallBatchPlugin(), *extra]))


def seed_calls(store, **ages):
    for location, days in ages.items():
        memory.seed(store, location.replace("__", "/"), NOW - timedelta(days=days), size=10)


def do_run(rt, dry_run=False, now=NOW, sources=()):
    report = run(rt, RunOptions(now=now, dry_run=dry_run, sources=sources))
    try:
        items = {i.record.location: (i.decision.action.value, i.outcome) for i in report.items()}
        return report, items
    finally:
        report.close()


def test_dry_run_decides_but_never_reaches_delete(make_policy, store_name):
    seed_calls(store_name, alice__old=400, alice__new=1, kid__new=0)
    with runtime(make_policy()) as rt:
        report, items = do_run(rt, dry_run=True)
    assert items == {"alice/new": ("keep", None), "alice/old": ("delete", None), "kid/new": ("delete", None)}
    assert not [c for c in memory.get_store(store_name).calls if c[0] != "list"]
    assert memory.exists(store_name, "alice/old")
    assert not (make_policy().parent / "audit.jsonl").exists()  # dry-run leaves no trail


def test_enforce_deletes_due_keeps_the_rest_and_journals_intent_before_outcome(make_policy, store_name):
    seed_calls(store_name, alice__old=400, alice__new=1, bob__old=400)
    path = make_policy(holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "bob"}, "reason": "case"}])
    with runtime(path) as rt:
        report, items = do_run(rt)
    assert items["alice/old"] == ("delete", "deleted")
    assert items["bob/old"] == ("hold", None) and items["alice/new"] == ("keep", None)
    assert not memory.exists(store_name, "alice/old") and memory.exists(store_name, "bob/old")
    entries = list(records(path.parent / "audit.jsonl"))
    events = [(e["event"], e.get("location")) for e in entries]
    assert events.index(("intent", "alice/old")) < events.index(("outcome", "alice/old"))
    assert [e for e in entries if e["event"] == "outcome"][0]["outcome"] == "deleted"
    assert not any(e.get("location", "").startswith("bob") for e in entries if e["event"] in ("intent", "outcome"))
    assert verify(path.parent / "audit.jsonl").ok
    assert report.outcomes()["deleted"] == 1 and report.status == "ok"


def test_safety_limit_trips_before_anything_is_deleted(make_policy, store_name):
    seed_calls(store_name, alice__a=400, alice__b=400, alice__c=1)
    with runtime(make_policy(limits={"max_fraction": 0.5})) as rt:
        report, items = do_run(rt)
    assert "max_fraction" in report.limit_tripped and "2 of 3" in report.limit_tripped
    assert memory.exists(store_name, "alice/a") and memory.exists(store_name, "alice/b")
    with runtime(make_policy(limits={"max_deletions": 1})) as rt:
        report, _ = do_run(rt)
    assert "max_deletions = 1" in report.limit_tripped
    assert len(memory.get_store(store_name).items) == 3


def test_a_hold_placed_mid_run_protects_every_record_not_yet_deleted(make_policy, store_name):
    for i in range(10):
        memory.seed(store_name, f"alice/{i:02d}", NOW - timedelta(days=400))
    class LateHold:
        @hookimpl
        def retention_register_hold_sources(self, register):
            def provider():
                # counsel places a hold once two batches (of two) have been deleted
                if sum(c[0] == "delete" for c in memory.get_store(store_name).calls) < 4:
                    return []
                return [Hold("LH-late", "legal", HoldScope(subject="alice"), "late")]
            register("late", provider)

    path = make_policy(sources=[{"name": "calls", "backend": "small", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])
    with runtime(path, LateHold()) as rt:
        report, items = do_run(rt)
    deleted = sorted(k for k, v in items.items() if v[1] == "deleted")
    held = sorted(k for k, v in items.items() if v[0] == "hold")
    assert deleted == ["alice/00", "alice/01", "alice/02", "alice/03"]
    assert len(held) == 6 and all(memory.exists(store_name, k) for k in held)


def test_erasure_request_is_done_once_unheld_records_are_gone_and_held_ones_stay_owed(make_policy, store_name):
    seed_calls(store_name, alice__a=1, alice__b=2)
    path = make_policy(sources=[{"name": "calls", "backend": "memory", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])
    with runtime(path) as rt:
        rt.state.place_hold("LH-1", "legal", HoldScope(subject="alice", category="call"), "case")
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        _, items = do_run(rt)
        assert set(items.values()) == {("hold", None)}
        (req,) = rt.state.requests()
        # "held" is its own state, never "done" (issue 15 #8): the held records are still there.
        assert req.done_at is None and req.held_remaining == 2 and req.status(NOW) == "held"
        rt.state.release_hold("LH-1", "settled")
        _, items = do_run(rt)
        assert set(items.values()) == {("delete", "deleted")}
        (req,) = rt.state.requests()
        assert req.held_remaining == 0 and req.done_at is not None and req.status(NOW) == "done"
    assert not memory.get_store(store_name).items


def test_failures_and_refusals_are_outcomes_not_crashes(make_policy, store_name):
    seed_calls(store_name, alice__a=400, alice__b=400, alice__c=400)
    memory.fault(store_name, "alice/a")
    memory.lock(store_name, "alice/b")
    with runtime(make_policy()) as rt:
        report, items = do_run(rt)
    assert items["alice/a"][1] == "failed" and items["alice/b"][1] == "refused"
    assert items["alice/c"][1] == "deleted"
    assert report.failed == 1 and report.status == "failed-deletions"


def test_a_backend_that_raises_mid_batch_leaves_no_record_unaccounted(make_policy, store_name):
    seed_calls(store_name, alice__a=400, alice__b=400, alice__c=400)

    class Crashy(InMemoryBackend):
        name = "crashy"

        def delete(self, records):
            yield from super().delete(records[:1])
            raise ConnectionError("storage went away")

    class P:
        @hookimpl
        def retention_register_backends(self, register):
            register(Crashy)

    path = make_policy(sources=[{"name": "calls", "backend": "crashy", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])
    with runtime(path, P()) as rt:
        report, items = do_run(rt)
    outcomes = sorted(v[1] for v in items.values())
    assert outcomes == ["deleted", "failed", "failed"]
    assert report.failed == 2


def test_anonymize_keeps_the_record_and_strips_its_fields(make_policy, store_name):
    memory.seed(store_name, "bob/profile", NOW - timedelta(days=5), fields={"name": "Bob"})
    path = make_policy(categories={"emp": {"retain": "30d", "after": "service_end", "action": "anonymize"}},
                       sources=[{"name": "calls", "backend": "memory", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "emp"}])
    with runtime(path) as rt:
        _, items = do_run(rt)
    assert items["bob/profile"] == ("anonymize", "anonymized")
    stored = memory.item(store_name, "bob/profile")
    assert stored is not None and stored.fields == {} and stored.anonymized


def test_enforcing_run_refuses_while_another_holds_the_lock(make_policy, store_name):
    seed_calls(store_name, alice__a=400)
    with runtime(make_policy()) as rt:
        with rt.state.lock("other-run"):
            with pytest.raises(LockedError):
                do_run(rt)
            do_run(rt, dry_run=True)  # a dry-run does not need the lock
    assert memory.exists(store_name, "alice/a")


def test_as_of_forecast_uses_the_given_now(make_policy, store_name):
    seed_calls(store_name, alice__a=10)
    with runtime(make_policy()) as rt:
        _, now_items = do_run(rt, dry_run=True)
        _, later = do_run(rt, dry_run=True, now=NOW + timedelta(days=81))
    assert now_items["alice/a"][0] == "keep" and later["alice/a"][0] == "delete"


def test_a_lost_acknowledgement_is_journalled_as_a_deletion_by_the_next_run(make_policy, store_name):
    seed_calls(store_name, alice__a=400, alice__b=400)

    class LostAck(InMemoryBackend):
        name = "lostack"
        lose = True

        def delete(self, records):
            outcomes = list(super().delete(records))  # storage acts...
            if LostAck.lose:
                raise ConnectionError("connection reset")  # ...but the answer never arrives
            yield from outcomes

    class P:
        @hookimpl
        def retention_register_backends(self, register):
            register(LostAck)

    path = make_policy(sources=[{"name": "calls", "backend": "lostack", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])
    with runtime(path, P()) as rt:
        report, items = do_run(rt)
        assert report.failed == 2 and not memory.get_store(store_name).items
        LostAck.lose = False
        report, items = do_run(rt)
        assert report.status == "ok" and rt.state.unsettled() == []
    outcomes = [e for e in records(path.parent / "audit.jsonl") if e["event"] == "outcome"]
    assert sorted((e["location"], e["outcome"]) for e in outcomes) == [
        ("alice/a", "deleted"), ("alice/a", "failed"), ("alice/b", "deleted"), ("alice/b", "failed")]
    assert all("after a failed delete" in e["error"] for e in outcomes if e["outcome"] == "deleted")


def test_a_run_whose_lock_was_taken_over_stops_before_its_next_batch(make_policy, store_name):
    import sqlalchemy as sa

    from retention_core.state import lock_table

    for i in range(6):
        memory.seed(store_name, f"alice/{i}", NOW - timedelta(days=400))
    path = make_policy(sources=[{"name": "calls", "backend": "small", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])

    with runtime(path) as rt:
        class Usurper:
            @hookimpl
            def retention_after_delete(self, outcomes, context):  # another run took the lock as stale
                with rt.state.engine.begin() as conn:
                    conn.execute(sa.update(lock_table).values(run_id="usurper"))

        rt.plugins.pm.register(Usurper())
        with pytest.raises(LockedError, match="lost the state store's lock"):
            do_run(rt)
    assert len(memory.get_store(store_name).items) == 4  # only the first batch of two went


@pytest.mark.parametrize("paused_at", ["before_delete", "mid_batch"])
def test_a_run_stopped_long_enough_to_look_dead_deletes_nothing_more(make_policy, store_name, paused_at):
    """Red team, C1/C2: a run stopped (Ctrl-Z, docker pause) past the lock's stale time resumed
    its batch after `holds place` had stopped waiting for it. Now, on running again, it deletes
    nothing more: the rest of the batch is journalled failed and the run stops (exit 4)."""
    for i in range(6):
        memory.seed(store_name, f"alice/{i}", NOW - timedelta(days=400))
    path = make_policy(sources=[{"name": "calls", "backend": "small", "options": {"store": store_name},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])

    def pause(rt):  # as if SIGSTOPped for an hour: the heartbeat last confirmed the lock then
        for beat in rt.state._beats.values():
            beat.confirmed -= 3600

    with runtime(path) as rt:
        class Stop:
            if paused_at == "before_delete":
                @hookimpl
                def retention_before_delete(self, batch, context):
                    if memory.get_store(store_name).items and len(memory.get_store(store_name).items) == 4:
                        pause(rt)  # the second batch, before its first deletion
            else:
                @hookimpl
                def retention_after_delete(self, outcomes, context):
                    pause(rt)

        rt.plugins.pm.register(Stop())
        with pytest.raises(LockedError, match="without refreshing its lock"):
            do_run(rt)
        trail = rt.policy.audit
    assert len(memory.get_store(store_name).items) == 4  # the first batch of two only
    assert verify(trail).ok
    outcomes = [r for r in records(trail) if r.get("outcome")]
    assert {r["outcome"] for r in outcomes} <= {"deleted", "failed"}


def test_without_items_the_counters_and_deletions_are_those_of_an_itemized_run(make_policy, tmp_path):
    hold = [{"id": "LH-1", "kind": "legal", "scope": {"subject": "bob"}, "reason": "case"}]
    results = []
    for itemize in (True, False):
        store = f"itemize-{itemize}"
        memory.reset(store)
        seed_calls(store, alice__old=400, alice__new=1, bob__old=400, kid__new=0)
        path = make_policy(holds=hold, sources=[{"name": "calls", "backend": "small", "options": {"store": store},
                                                  "match": r"(?P<subject>[^/]+)/.+", "category": "call"}])
        with runtime(path) as rt:
            dry = run(rt, RunOptions(now=NOW, dry_run=True, itemize=itemize))
            dry_items = list(dry.items())
            dry.close()
            report = run(rt, RunOptions(now=NOW, itemize=itemize))
            items = sorted(i.record.location for i in report.items())
            report.close()
        results.append((dry.summary(), dry.protected(), report.summary(), report.outcomes(), report.protected(),
                        sorted(memory.get_store(store).items)))
        if not itemize:
            assert items == ["alice/old", "kid/new"]  # only what the run read back
            assert dry_items == []  # a dry run reads nothing back: it only counts
        else:
            assert len(dry_items) == 4
        (path.parent / "audit.jsonl").unlink()
        (path.parent / "state.db").unlink()
    assert results[0] == results[1]
    assert results[1][0]["delete"] == 2 and results[1][1] == {"LH-1": 1} and results[1][5] == ["alice/new", "bob/old"]


def test_a_crashed_runs_intent_is_settled_without_items_from_what_the_scan_saw(make_policy, store_name):
    from retention_core.audit import AuditTrail, batch_entry

    seed_calls(store_name, alice__old=400, bob__old=400)
    path = make_policy(holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "bob"}, "reason": "case"}])
    with runtime(path) as rt:
        rt.state.start_run("crashed-1", NOW, dry_run=False)
        AuditTrail(path.parent / "audit.jsonl").append([batch_entry(
            "intent", "crashed-1", "calls", "delete",
            [["bob/old", None, None, "bob", "call", "expired"],
             ["carol/gone", None, None, "carol", "call", "expired"]])])
        report = run(rt, RunOptions(now=NOW, itemize=False))
        report.close()
    settled = {e["location"]: (e["outcome"], e["error"]) for e in records(path.parent / "audit.jsonl")
               if e.get("run_id") == "crashed-1" and e["event"] == "outcome"}
    assert settled["bob/old"][0] == "not-executed" and "still present" in settled["bob/old"][1]  # held now: kept
    assert settled["carol/gone"][0] == "deleted" and "absent from storage" in settled["carol/gone"][1]
    assert memory.exists(store_name, "bob/old") and not memory.exists(store_name, "alice/old")
