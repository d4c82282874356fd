"""The core's share of "never delete what changed, what is held, or what was not seen" (issue 15):
the hold fence, one key encoding, listing problems, recovery that never invents a deletion,
erasure requests that are done only when proven."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

import pytest

from retention_core import hookimpl
from retention_core.audit import records
from retention_core.fence import in_flight, wait_for_batches
from retention_core.model import Outcome, Problem, Record, Source, Status
from retention_core.plugins import load_plugins
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing import memory
from retention_core.testing.memory import InMemoryBackend

from .conftest import NOW


class Paused(InMemoryBackend):
    """Deletes only once the test lets it: a batch held in flight deterministically, no sleeps."""

    name = "paused"
    entered = threading.Event()
    release = threading.Event()

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        Paused.entered.set()
        assert Paused.release.wait(30), "the test never released the batch"
        return super().delete(records)


class Unlistable(InMemoryBackend):
    """Lists its store but reports one directory it could not read (a Problem)."""

    name = "unlistable"
    problem_subject: str | None = None

    def scan(self, source: Source) -> Iterator[Record | Problem]:  # type: ignore[override]
        yield Problem(source.name, "locked-dir", "unreadable directory: Permission denied",
                      Unlistable.problem_subject)
        yield from super().scan(source)


class OneByOne(InMemoryBackend):
    """One record a batch: what happens between batches of one run is visible."""

    name = "onebyone"
    batch_size = 1


class SafetyPlugin:
    @hookimpl
    def retention_register_backends(self, register):
        register(Paused)
        register(Unlistable)
        register(OneByOne)


def runtime(path) -> Runtime:
    return Runtime.open(path, load_plugins(extra=[memory, SafetyPlugin()]))


@pytest.fixture
def retention_plugin() -> SafetyPlugin:
    """The CLI tests here run with this module's backends (and the kit's memory backend) …"""
    return SafetyPlugin()


@pytest.fixture
def retention_entry_points() -> bool:
    """… and the installed ones (fs, sql)."""
    return True


def seed(store: str, **ages: int) -> None:
    for location, days in ages.items():
        memory.seed(store, location.replace("__", "/"), NOW - timedelta(days=days), size=1)


def source(store: str, backend: str = "memory", **extra) -> dict:
    return {"name": "calls", "backend": backend, "options": {"store": store},
            "match": r"(?P<subject>[^/]+)/.+", "category": "call", **extra}


def enforce(rt: Runtime, now=NOW):
    report = run(rt, RunOptions(now=now))
    try:
        return report, {i.record.location: (i.decision.action.value, i.outcome) for i in report.items()}
    finally:
        report.close()


# -- the hold fence ----------------------------------------------------------------------------------
def test_holds_place_waits_for_the_batch_in_flight_and_says_what_it_deleted(retention_cli, make_policy, store_name):
    """Issue 15 #2: `holds place` printed "placed" while a batch went on deleting what it held.
    Now it returns only once that batch is done, and names what it deleted in the hold's scope."""
    seed(store_name, alice__a=400, alice__b=400, bob__c=400)
    path = make_policy(sources=[source(store_name, "paused")])
    Paused.entered.clear()
    Paused.release.clear()
    with runtime(path) as rt:
        runner = threading.Thread(target=enforce, args=(rt,))
        runner.start()
        assert Paused.entered.wait(30)  # the batch is in flight: decided, inside delete()
        placed: dict[str, object] = {}

        def place() -> None:
            result = retention_cli("holds", "place", "-c", str(path), "--id", "LH-9", "--kind", "legal",
                                   "--reason", "case", "--subject", "alice", "--wait", "30")
            placed["result"] = result

        placer = threading.Thread(target=place)
        placer.start()
        placer.join(0.5)
        assert placer.is_alive(), "holds place returned while a batch that could touch its scope was in flight"
        Paused.release.set()
        runner.join(30)
        placer.join(30)
    result = placed["result"]
    assert result.exit_code == 0, result.output
    assert "in effect after waiting for the deletion batch in flight" in result.output
    assert "deleted 2 record(s) in the hold's scope" in result.output
    assert "alice/a" in result.output and "alice/b" in result.output and "bob/c" not in result.output
    events = [e for e in records(path.parent / "audit.jsonl") if e.get("event") == "hold-effective"]
    assert events and events[0]["deleted_in_scope"] == 2


def test_a_hold_stored_before_the_batch_registers_protects_the_batch(make_policy, store_name):
    """The other side of the fence: a batch reads holds only after registering, so a hold
    committed before that is seen and nothing in its scope is deleted."""
    seed(store_name, alice__a=400, bob__c=400)
    with runtime(make_policy()) as rt:
        rt.state.place_hold("LH-1", "legal", __import__("retention_core").HoldScope(subject="alice"), "case")
        _, items = enforce(rt)
    assert items["alice/a"] == ("hold", None) and memory.exists(store_name, "alice/a")
    assert items["bob/c"] == ("delete", "deleted")


def test_the_fence_does_not_wait_for_a_batch_of_a_run_that_lost_its_lock(make_policy):
    with runtime(make_policy()) as rt:
        with in_flight(rt.state, "dead-run", "calls"):  # registered, but no run owns the lock
            assert wait_for_batches(rt.state, timeout=1) == []


def test_the_fence_waits_for_a_live_batch_until_it_leaves(make_policy):
    with runtime(make_policy()) as rt:
        with rt.state.lock("live-run"):
            fence = in_flight(rt.state, "live-run", "calls")
            batch = fence.__enter__()
            timer = threading.Timer(0.3, fence.__exit__, (None, None, None))
            timer.start()
            waited = wait_for_batches(rt.state, timeout=10)
            timer.join()
    assert [(b.run_id, b.batch) for b in waited] == [("live-run", batch)]


# -- one encoding for keys ----------------------------------------------------------------------------
def test_a_key_that_looks_like_the_spools_old_escape_code_deletes_only_itself(make_policy, store_name):
    """Issue 15 #3: a due key "\\x00se:" + hex("victim") made the run delete row "victim"."""
    forged = "x/\x00se:" + b"x/victim".hex()
    memory.seed(store_name, forged, NOW - timedelta(days=400), size=1)
    memory.seed(store_name, "x/victim", NOW - timedelta(days=1), size=1)
    with runtime(make_policy()) as rt:
        _, items = enforce(rt)
    assert items[forged] == ("delete", "deleted") and not memory.exists(store_name, forged)
    assert items["x/victim"] == ("keep", None) and memory.exists(store_name, "x/victim")


def test_non_utf8_names_round_trip_through_the_spool(make_policy, store_name):
    name = "x/caf\udce9"  # a Latin-1 file name as os.fsdecode gives it
    memory.seed(store_name, name, NOW - timedelta(days=400), size=1)
    memory.seed(store_name, "x/caf\u00e9", NOW - timedelta(days=1), size=1)
    with runtime(make_policy()) as rt:
        _, items = enforce(rt)
    assert items[name] == ("delete", "deleted") and memory.exists(store_name, "x/caf\u00e9")


# -- listing problems ---------------------------------------------------------------------------------
def test_a_listing_problem_is_reported_and_the_rest_is_still_deleted(make_policy, store_name):
    seed(store_name, alice__old=400, alice__new=1)
    Unlistable.problem_subject = None
    with runtime(make_policy(sources=[source(store_name, "unlistable")])) as rt:
        report = run(rt, RunOptions(now=NOW))
        stats = report.sources["calls"]
        report.close()
    assert stats.problems == 1 and "locked-dir: unreadable directory" in stats.problem_samples[0]
    assert stats.decisions["skip"] == 1
    assert not memory.exists(store_name, "alice/old") and memory.exists(store_name, "alice/new")


def test_an_erasure_request_stays_open_while_a_source_could_not_be_listed(make_policy, store_name):
    """Issue 15 #8: a request was marked done while the subject's data sat in an unreadable place."""
    seed(store_name, alice__a=1)
    Unlistable.problem_subject = None
    with runtime(make_policy(sources=[source(store_name, "unlistable")])) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        report = run(rt, RunOptions(now=NOW))
        warnings = list(report.warnings)
        report.close()
        (request,) = rt.state.requests()
    assert not memory.exists(store_name, "alice/a")  # what could be listed was erased
    assert request.done_at is None and request.status(NOW) == "pending"
    assert any("stays open" in w and "calls" in w for w in warnings)


def test_a_problem_naming_another_subject_does_not_hold_the_request_open(make_policy, store_name):
    seed(store_name, alice__a=1)
    Unlistable.problem_subject = "bob"
    with runtime(make_policy(sources=[source(store_name, "unlistable")])) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        enforce(rt)
        (request,) = rt.state.requests()
    assert request.status(NOW) == "done"


# -- recovery never invents a deletion ---------------------------------------------------------------
def test_recovery_journals_unknown_when_the_source_was_not_listed_completely(make_policy, store_name):
    """Issue 15 #7: after a failure, a run that could not see the record journalled it deleted."""
    seed(store_name, alice__a=400)
    memory.fault(store_name, "alice/a", times=1)
    path = make_policy(sources=[source(store_name, "unlistable")])
    Unlistable.problem_subject = None
    with runtime(path) as rt:
        _, items = enforce(rt)
        assert items["alice/a"] == ("delete", "failed")
        memory.get_store(store_name).items.pop("alice/a")  # gone out of band
        enforce(rt)  # the listing is incomplete: no conclusion
        trail = [e for e in records(path.parent / "audit.jsonl") if e.get("location") == "alice/a"]
        assert [e.get("outcome") for e in trail if e["event"] == "outcome"][-1] == "failed"
        assert len(rt.state.unsettled()) == 1  # carried
    path = make_policy(sources=[source(store_name)])  # the same source, now listed completely
    with runtime(path) as rt:
        enforce(rt)
        trail = [e for e in records(path.parent / "audit.jsonl") if e.get("location") == "alice/a"]
        assert trail[-1]["outcome"] == Status.DELETED.value and "absent from storage" in trail[-1]["error"]
        assert rt.state.unsettled() == []


def test_recovery_does_not_read_absence_outside_the_sources_match(make_policy, store_name, tmp_path):
    """A changed `match` hides a record from the scan: that is not evidence it was deleted."""
    seed(store_name, alice__a=400)
    memory.fault(store_name, "alice/a", times=1)
    with runtime(make_policy()) as rt:
        enforce(rt)
    narrowed = make_policy(sources=[source(store_name, match=r"(?P<subject>bob)/.+")])
    with runtime(narrowed) as rt:
        enforce(rt)
        assert len(rt.state.unsettled()) == 1
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert not any(line.get("event") == "outcome" and "deleted" in json.dumps(line) for line in lines)
    assert memory.exists(store_name, "alice/a")


# -- hostile names and patterns ---------------------------------------------------------------------
def test_a_pattern_with_nested_repetition_cannot_hang_a_run_on_a_hostile_name(make_policy, store_name):
    """Issue 15 #9: `match: (a+)+` against a hostile name hung the run (Python's re backtracks)."""
    hostile = "x/" + "a" * 5000 + "!"
    memory.seed(store_name, hostile, NOW - timedelta(days=400), size=1)
    memory.seed(store_name, "x/aaa", NOW - timedelta(days=400), size=1)
    path = make_policy(sources=[source(store_name, match=r"(?P<subject>[^/]+)/(a+)+")])
    with runtime(path) as rt:
        _, items = enforce(rt)
    assert items == {"x/aaa": ("delete", "deleted")} and memory.exists(store_name, hostile)


def test_a_pattern_that_needs_backtracking_is_a_config_error(retention_cli, make_policy, store_name):
    path = make_policy(sources=[source(store_name, match=r"(?P<subject>[^/]+)/(a)\1")])
    result = retention_cli(*["validate", "-c", str(path)])
    assert result.exit_code == 2
    assert "sources[0].match" in result.output and "linear time" in result.output
    assert "Traceback" not in result.output


# -- overlapping sources ------------------------------------------------------------------------------
def _overlapping_fs_policy(make_policy, tmp_path, **outer_extra):
    mail = tmp_path / "data" / "mail" / "alice"
    mail.mkdir(parents=True)
    old = (NOW - timedelta(days=400)).timestamp()
    for name in ("a.eml", "b.eml"):
        (mail / name).write_text("x")
        __import__("os").utime(mail / name, (old, old))
    return make_policy(
        sources=[{"name": "mail", "backend": "fs", "options": {"root": str(tmp_path / "data" / "mail")},
                  "match": r"(?P<subject>[^/]+)/.+", "category": "call"},
                 {"name": "everything", "backend": "fs", "options": {"root": str(tmp_path / "data")},
                  "match": r".+", "category": "call", **outer_extra}],
        holds=[{"id": "LH-1", "kind": "legal", "scope": {"source": "mail"}, "reason": "case"},
               {"id": "LH-2", "kind": "legal", "scope": {"subject": "alice"}, "reason": "case"}])


def test_sources_that_can_list_the_same_records_are_refused(retention_cli, make_policy, tmp_path):
    """Issue 15 #5: a second fs source whose root contained the first's deleted what holds protected."""
    path = _overlapping_fs_policy(make_policy, tmp_path)
    for command in (["validate", "-c", str(path)], ["run", "-c", str(path)], ["run", "-c", str(path), "--dry-run"]):
        result = retention_cli(*command)
        assert result.exit_code == 2, (command, result.output)
        assert "'mail' and 'everything' can list the same records" in result.output
    assert (tmp_path / "data" / "mail" / "alice" / "a.eml").exists()


def test_a_declared_overlap_runs_and_source_holds_cover_both_sources(retention_cli, make_policy, tmp_path):
    path = _overlapping_fs_policy(make_policy, tmp_path, overlaps=["mail"])
    result = retention_cli(*["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "mail" / "alice" / "a.eml").exists()
    assert (tmp_path / "data" / "mail" / "alice" / "b.eml").exists()


def test_listing_problems_and_kept_erasures_reach_the_html_and_json_reports(make_policy, store_name, tmp_path):
    from retention_core import html_report
    from retention_core.report import write_json

    seed(store_name, alice__a=1)
    Unlistable.problem_subject = None
    with runtime(make_policy(sources=[source(store_name, "unlistable")])) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        with run(rt, RunOptions(now=NOW)) as report:
            html_report.write_html(report, tmp_path / "r.html")
            write_json(report, tmp_path / "r.json")
    page = (tmp_path / "r.html").read_text()
    assert "listing incomplete: 1 item(s) could not be listed" in page and "locked-dir" in page
    assert "stays open" in page
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["sources"]["calls"]["problems"] == 1 and any("stays open" in w for w in data["warnings"])


def test_an_erasure_request_over_a_push_down_source_stays_open_while_rows_cannot_be_read(make_policy, tmp_path):
    """Issue 15 #8: rows whose `created` is NULL survive the set-based DELETE; a run without a
    report used to count the source in storage and mark the request done while they remained."""
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, tenant TEXT, created TEXT)")
        conn.executemany("INSERT INTO contacts VALUES (?, ?, ?)",
                         [(1, "alice", "2020-01-01 00:00:00"), (2, "alice", None),
                          (3, "bob", "2020-01-01 00:00:00")])
    path = make_policy(sources=[{"name": "contacts", "backend": "sql", "category": "call",
                                 "options": {"url": f"sqlite:///{db}", "table": "contacts", "key": "id",
                                             "subject": "tenant", "created": "created", "timezone": "UTC"}}],
                       limits={"max_fraction": 1.0})
    with runtime(path) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        with run(rt, RunOptions(now=NOW, itemize=False)) as report:
            warnings = list(report.warnings)
            problems = report.sources["contacts"].problems
        (request,) = rt.state.requests()
    with sqlite3.connect(db) as conn:
        left = sorted(r[0] for r in conn.execute("SELECT id FROM contacts"))
    assert left == [2]  # what could be read was erased (and bob's old row by its rule); the NULL row remains
    assert problems == 1
    assert request.done_at is None and any("stays open" in w for w in warnings)


# -- safety limits: per source, predicted by the dry run (issue 17 #1) ---------------------------
def _two_sources(make_policy, store_name, now=NOW, **extra):
    """Two memory sources; *now* is what the records' ages count from (the CLI runs at the real now)."""
    other = f"{store_name}-b"
    memory.reset(other)
    for store, ages in ((store_name, {"alice/a": 400, "alice/b": 400, "alice/c": 1}),
                        (other, {"bob/a": 400, "bob/b": 1, "bob/c": 1})):
        for location, days in ages.items():
            memory.seed(store, location, now - timedelta(days=days), size=1)
    return other, make_policy(sources=[source(store_name), {**source(other), "name": "mail"}], **extra)


def test_a_tripped_source_deletes_nothing_and_the_others_go_on(make_policy, store_name):
    other, path = _two_sources(make_policy, store_name, limits={"max_fraction": 0.5})
    with runtime(path) as rt:
        with run(rt, RunOptions(now=NOW)) as report:
            assert report.status == "limit-tripped" and set(report.tripped) == {"calls"}
            assert "source 'calls' plans 2 of 3 records" in report.limit_tripped
            assert "--allow-over-limit calls" in report.limit_tripped
    assert memory.exists(store_name, "alice/a") and memory.exists(store_name, "alice/b")
    assert not memory.exists(other, "bob/a")  # the other source was within its limit


def test_the_dry_run_predicts_the_enforcing_run_limits_and_exit_code(retention_cli, make_policy, store_name):
    other, path = _two_sources(make_policy, store_name, datetime.now(timezone.utc), limits={"max_fraction": 0.5})
    dry = retention_cli(*["run", "-c", str(path), "--dry-run"])
    real = retention_cli(*["run", "-c", str(path)])
    assert dry.exit_code == real.exit_code == 3
    assert "SAFETY LIMIT: source 'calls'" in dry.output and "SAFETY LIMIT: source 'calls'" in real.output


def test_per_source_limits_and_one_off_overrides_are_journalled(retention_cli, make_policy, store_name):
    other, path = _two_sources(make_policy, store_name, datetime.now(timezone.utc), limits={"max_fraction": 0.5})
    raw = __import__("yaml").safe_load(path.read_text())
    raw["sources"][0]["limits"] = {"max_fraction": 0.9}  # the source's own, over the policy's
    path.write_text(__import__("yaml").safe_dump(raw))
    assert retention_cli(*["run", "-c", str(path), "--dry-run"]).exit_code == 0
    raw["sources"][0]["limits"] = {"max_deletions": 1}
    path.write_text(__import__("yaml").safe_dump(raw))
    assert retention_cli(*["run", "-c", str(path), "--dry-run"]).exit_code == 3
    unknown = retention_cli(*["run", "-c", str(path), "--allow-over-limit", "nope"])
    assert unknown.exit_code == 2 and "nope" in unknown.output
    result = retention_cli(*["run", "-c", str(path), "--allow-over-limit", "calls"])
    assert result.exit_code == 0, result.output
    assert not memory.exists(store_name, "alice/a")
    overrides = [e for e in records(path.parent / "audit.jsonl") if e.get("event") == "limit-override"]
    assert overrides and overrides[0]["allow_over_limit"] == ["calls"]


def test_a_crashed_runs_intent_is_not_journalled_deleted_while_its_source_cannot_be_listed(make_policy, store_name):
    """Issue 15 #7: after a kill, a run that could not see the files (volume not mounted yet,
    unreadable directory) journalled every open intent `deleted`, and certificates listed files
    that still existed."""
    from retention_core.audit import trail_for
    from retention_core.journal import Journal
    from retention_core.model import Action, Decision

    seed(store_name, alice__a=400)
    path = make_policy(sources=[source(store_name, "unlistable")])
    Unlistable.problem_subject = None
    with runtime(path) as rt:  # a run that died right after journalling its intent
        rt.state.start_run("crashed-run", NOW, dry_run=False)
        record = next(r for r in rt.records(rt.policy.sources[0]))
        journal = Journal(trail_for(rt.policy.audit, rt.state), "crashed-run")
        journal.intent("calls", Action.DELETE, [(record, Decision(Action.DELETE, "due"))], "b1")
        memory.get_store(store_name).items.pop("alice/a")  # gone, but this listing is incomplete
        enforce(rt)
        settled = [e for e in records(path.parent / "audit.jsonl")
                   if e.get("event") == "outcome" and e.get("location") == "alice/a"]
        assert [e["outcome"] for e in settled] == ["unknown"]
        assert "not observed" in settled[0]["error"]
        assert len(rt.state.unsettled()) == 1  # carried to the next run
    with runtime(make_policy(sources=[source(store_name)])) as rt:  # listed completely now
        enforce(rt)
        settled = [e for e in records(path.parent / "audit.jsonl")
                   if e.get("event") == "outcome" and e.get("location") == "alice/a"]
        assert [e["outcome"] for e in settled] == ["unknown", "deleted"]
        assert rt.state.unsettled() == []


def test_a_source_reaching_another_through_a_bind_mount_is_an_overlap(retention_cli, make_policy, tmp_path):
    """Adversary: root B a bind mount of root A passed validate, and B deleted what a hold on A kept."""
    import subprocess

    a, b = tmp_path / "data" / "a", tmp_path / "data" / "b"
    (a / "acme").mkdir(parents=True)
    b.mkdir()
    (a / "acme" / "x").write_text("1")
    if subprocess.run(["mount", "--bind", str(a), str(b)], capture_output=True).returncode:
        pytest.skip("bind mounts need privileges this machine does not give")
    try:
        path = make_policy(sources=[{"name": n, "backend": "fs", "options": {"root": str(root)},
                                     "match": r"(?P<subject>[^/]+)/.+", "category": "call"}
                                    for n, root in (("A", a), ("B", b))],
                           holds=[{"id": "LH-A", "kind": "legal", "scope": {"source": "A"}, "reason": "x"}])
        result = retention_cli("validate", "-c", str(path))
        assert result.exit_code == 2 and "'A' and 'B' can list the same records" in result.output
    finally:
        subprocess.run(["umount", str(b)], check=True)
    assert (a / "acme" / "x").exists()


def test_a_run_refuses_a_state_store_emptied_since_the_trails_last_run(retention_cli, make_policy, store_name):
    """Adversary: `: > state.db` (or rm) dropped every CLI hold and erasure request; the next run
    deleted the held data with exit 0, and `audit verify -c` passed."""
    seed(store_name, alice__a=400)
    path = make_policy()
    assert retention_cli("holds", "place", "-c", str(path), "--id", "LH-1", "--kind", "legal", "--reason", "case",
                         "--subject", "alice").exit_code == 0
    with runtime(path) as rt:
        enforce(rt, now=datetime.now(timezone.utc))
    assert memory.exists(store_name, "alice/a")
    (path.parent / "state.db").write_bytes(b"")  # emptied
    for args in (["run", "-c", str(path)], ["run", "-c", str(path), "--dry-run"]):
        result = retention_cli(*args)
        assert result.exit_code == 2 and "is not the one the audit trail's line" in result.output
    assert memory.exists(store_name, "alice/a")


def test_an_erasure_request_stays_open_while_records_of_the_subject_are_kept_or_skipped(make_policy, store_name):
    """Adversary: a request read `done` while a record of an unknown category (skip) — or of a
    subject the subjects source no longer lists — was still there."""
    seed(store_name, alice__call__a=1, alice__nocategory__b=1)
    path = make_policy(sources=[{**source(store_name), "match": r"(?P<subject>[^/]+)/(?P<category>[^/]+)/.+"}])
    with runtime(path) as rt:
        rt.state.add_request("alice", "ctl-a", NOW - timedelta(days=1))
        with run(rt, RunOptions(now=NOW)) as report:
            warnings = list(report.warnings)
        (request,) = rt.state.requests()
    assert not memory.exists(store_name, "alice/call/a") and memory.exists(store_name, "alice/nocategory/b")
    assert request.done_at is None and any("1 of its records were kept or skipped" in w for w in warnings)


def test_a_hold_added_to_the_policy_file_mid_run_protects_the_rest_of_the_run(make_policy, store_name):
    """Adversary: a static hold written into policy.yaml while a run was deleting was ignored for
    the rest of that run (98,000 held files deleted)."""
    import yaml

    seed(store_name, alice__a=400, alice__b=400, alice__c=400)
    path = make_policy(sources=[source(store_name, "onebyone")], limits={"max_fraction": 1.0})

    class EditsThePolicy:
        done = False

        @hookimpl
        def retention_after_delete(self, outcomes, context):
            if not EditsThePolicy.done:
                EditsThePolicy.done = True
                raw = yaml.safe_load(path.read_text())
                raw["holds"] = [{"id": "LH-STATIC", "kind": "legal", "scope": {"subject": "alice"}, "reason": "x"}]
                path.write_text(yaml.safe_dump(raw))

    with Runtime.open(path, load_plugins(extra=[memory, SafetyPlugin(), EditsThePolicy()])) as rt:
        enforce(rt)
    left = sorted(k for k in ("alice/a", "alice/b", "alice/c") if memory.exists(store_name, k))
    assert len(left) == 2  # the first batch was gone before the edit; the rest is held


def test_a_certificate_marks_deletions_recovery_inferred_from_absence(make_policy, store_name):
    """Adversary: after a crash, files moved out of the root were journalled deleted by the next
    run and certified as 'Per-record outcome reported by the storage API'."""
    from retention_core.audit import trail_for
    from retention_core.certificate import INFERRED, build
    from retention_core.journal import Journal
    from retention_core.model import Action, Decision

    seed(store_name, alice__a=400)
    path = make_policy()
    with runtime(path) as rt:
        rt.state.start_run("crashed-run", NOW, dry_run=False)
        record = next(iter(rt.records(rt.policy.sources[0])))
        journal = Journal(trail_for(rt.policy.audit, rt.state), "crashed-run")
        journal.event("run-start", as_of=NOW.isoformat(), sources=["calls"])
        journal.intent("calls", Action.DELETE, [(record, Decision(Action.DELETE, "due"))], "b1")
        memory.get_store(store_name).items.pop("alice/a")  # moved away, say
        enforce(rt)
    cert = build(path.parent / "audit.jsonl", "crashed-run", run_status="crashed")
    assert cert.totals == {INFERRED: 1}
    assert [r["outcome"] for r in cert.records()] == [INFERRED]


def test_small_input_holes_are_one_line_errors(retention_cli, make_policy, tmp_path):
    """Adversary: an empty hold reason was accepted; a non-UTF-8 --subject and a trail or
    subjects file that cannot be read were internal errors; `audit verify` on a FIFO hung;
    an unwritable --metrics-file failed only after the deletions."""
    import os

    path = make_policy()
    base = ["holds", "place", "-c", str(path), "--id", "LH-1", "--kind", "legal"]
    empty = retention_cli(*base, "--reason", " ", "--subject", "alice")
    assert empty.exit_code == 2 and "--reason" in empty.output
    odd = retention_cli(*base, "--reason", "r", "--subject", "caf\udcff")
    assert odd.exit_code == 2 and "expected UTF-8 text" in odd.output and "internal error" not in odd.output
    fifo = tmp_path / "trail.fifo"
    os.mkfifo(fifo)
    verify = retention_cli("audit", "verify", str(fifo))
    assert verify.exit_code == 2 and "not a regular file" in verify.output
    metrics = retention_cli("run", "-c", str(path), "--metrics-file", str(tmp_path / "subjects.csv" / "m.prom"))
    assert metrics.exit_code == 2 and "--metrics-file" in metrics.output


def test_a_whole_last_line_missing_only_its_newline_is_completed_not_cut(retention_cli, make_policy, store_name):
    """Adversary: `truncate -s -1` on the trail made the next writer 'repair' the complete last
    line by cutting it, and every verify mode then passed: a one-byte edit erased evidence."""
    from retention_core.audit import records as trail

    seed(store_name, alice__a=400)
    path = make_policy()
    with runtime(path) as rt:
        enforce(rt, now=datetime.now(timezone.utc))
    audit = path.parent / "audit.jsonl"
    before = [e["seq"] for e in trail(audit)]
    audit.write_bytes(audit.read_bytes()[:-1])  # drop only the final newline of run-end
    assert retention_cli("holds", "place", "-c", str(path), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                         "--subject", "alice").exit_code == 0
    entries = list(trail(audit))
    assert [e["seq"] for e in entries][:len(before)] == before  # nothing cut
    assert entries[len(before)]["event"] == "trail-repaired" and entries[len(before)]["cut_bytes"] == 0
    assert retention_cli("audit", "verify", "-c", str(path)).exit_code == 0


def test_one_database_or_bucket_under_two_urls_is_an_overlap(tmp_path):
    """Adversary 2: `localhost` and `127.0.0.1`, a MariaDB schema given as the URL's database
    or as `schema:`, an S3 endpoint by name and by address, a SQLite hard link: each made one
    table or bucket two sources, and a hold on one did not protect the rows the other deleted."""
    import os
    import sqlite3

    from retention_core import Options
    from retention_s3.backend import S3Backend
    from retention_sql.backend import SqlBackend

    def sql(**options):
        return SqlBackend(Options(options, where="sources[0].options")).territory(Source("s", "sql"))

    base = {"table": "t", "key": "id", "subject": "s", "created": "c"}
    pg = "postgresql+psycopg://postgres@{}/test"
    assert sql(url=pg.format("127.0.0.1:5432"), **base) == sql(url=pg.format("localhost"), **base)
    assert sql(url=pg.format("localhost"), **base) == sql(url=pg.format("localhost"), schema="public", **base)
    my = "mysql+pymysql://root@{}"
    assert sql(url=my.format("127.0.0.1/test"), **base) == sql(url=my.format("localhost:3306/mysql"), schema="test",
                                                               **base)
    db = tmp_path / "a.db"
    sqlite3.connect(db).close()
    os.link(db, tmp_path / "b.db")
    assert sql(url=f"sqlite:///{db}", **base) == sql(url=f"sqlite:///{tmp_path / 'b.db'}", **base)

    def s3(endpoint):
        return S3Backend(Options({"bucket": "media", "endpoint_url": endpoint}, where="o")).territory(Source("s", "s3"))

    assert s3("http://localhost:5999") == s3("http://127.0.0.1:5999/")


def test_match_dot_covers_newlines_inside_a_name(make_policy, store_name):
    """Adversary 2: RE2's `.` stopped at a newline, so a key 'a2\\nx' fell silently outside
    `match: '.*'` and an erasure request read done while that row remained."""
    seed(store_name, alice__a=400)
    memory.seed(store_name, "alice/b\nx", NOW - timedelta(days=400), size=1)
    with runtime(make_policy(limits={"max_fraction": 1.0})) as rt:
        _, items = enforce(rt)
    assert items["alice/b\nx"] == ("delete", "deleted")
