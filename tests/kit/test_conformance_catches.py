"""The conformance suite is only worth something if broken backends fail it.

Each case below is the reference backend with one realistic bug; the named suite test must
fail (AssertionError) on it, and pass on the unbroken backend.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone

import pytest

from retention_core import Cutoffs, Options, Outcome, Problem, Record, Source, Status, Survey
from retention_core.testing import BackendConformanceTests, memory
from retention_core.testing.memory import InMemoryBackend


class MemorySuite(BackendConformanceTests):
    """The suite with out-of-band helpers for a memory store; not collected (no Test prefix)."""

    page_size = 7
    store = ""

    def seed(self, location: str, created: datetime) -> None:
        memory.seed(self.store, location, created)

    def exists(self, location: str) -> bool:
        return memory.exists(self.store, location)

    def recreate(self, location: str, created: datetime) -> None:
        memory.recreate(self.store, location, created)

    def modify(self, location: str) -> None:
        memory.modify(self.store, location)

    def seed_problem(self, location: str) -> None:
        memory.seed_problem(self.store, location)

    def lock(self, location: str) -> None:
        memory.lock(self.store, location)

    def fault(self, location: str) -> None:
        memory.fault(self.store, location)


class PrefixDelete(InMemoryBackend):
    """Deletes everything that starts with the location (a `rm -r`/prefix-listing bug)."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            store = self.store
            doomed = [k for k in store.items if k.startswith(record.location)]
            for key in doomed:
                del store.items[key]
            yield Outcome(record, Status.DELETED if doomed else Status.ALREADY_GONE)


class FirstPageOnly(InMemoryBackend):
    """Forgets to follow the continuation token."""

    def scan(self, source: Source) -> Iterator[Record]:
        for i, record in enumerate(super().scan(source)):
            if i >= self.page_size:
                return
            yield record


class NaiveCreated(InMemoryBackend):
    """Returns naive local datetimes (a classic `datetime.fromtimestamp` bug)."""

    def scan(self, source: Source) -> Iterator[Record]:
        for record in super().scan(source):
            yield Record(record.source, record.location, record.created.replace(tzinfo=None))


class SilentOnMissing(InMemoryBackend):
    """Skips records that are already gone instead of reporting them."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            if outcome.status is not Status.ALREADY_GONE:
                yield outcome


class MissingIsError(InMemoryBackend):
    """Reports a missing item as a failure (deleting must be idempotent)."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            if outcome.status is Status.ALREADY_GONE:
                yield Outcome(outcome.record, Status.FAILED, "NoSuchKey")
            else:
                yield outcome


class RaisesOnRefusal(InMemoryBackend):
    """Lets the storage refusal escape as an exception, aborting the batch."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            if outcome.status is Status.REFUSED:
                raise PermissionError(outcome.error)
            yield outcome


class RefusalAsFailure(InMemoryBackend):
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            refused = outcome.status is Status.REFUSED
            yield Outcome(outcome.record, Status.FAILED, "AccessDenied") if refused else outcome


class ClaimsWithoutDeleting(InMemoryBackend):
    """Says `deleted` after a fault swallowed the call (the lie the suite exists to catch)."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            yield Outcome(outcome.record, Status.DELETED) if outcome.status is Status.FAILED else outcome


class CapsBatch(InMemoryBackend):
    """Handles only batch_size records per call and silently drops the rest."""

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return super().delete(list(records)[: self.batch_size])


class DeletesOnAnonymize(InMemoryBackend):
    def anonymize(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for outcome in super().delete(records):
            yield Outcome(outcome.record, Status.ANONYMIZED) if outcome.status is Status.DELETED else outcome


class IgnoresUnknownOptions(InMemoryBackend):
    def __init__(self, options: Options) -> None:
        self.store_name = options.raw("store", "default")
        self.page_size = 100


class StripsNames(InMemoryBackend):
    """Normalises what it lists (strip + NFC-ish lowercasing): locations must be verbatim."""

    def scan(self, source: Source) -> Iterator[Record]:
        for record in super().scan(source):
            yield Record(record.source, record.location.replace("\n", " ").lower(), record.created)


class IgnoresTheGuard(InMemoryBackend):
    """Deletes whatever is at the location now: what it scanned may have been replaced since."""

    def _apply(self, record: Record, operation: str) -> Outcome:
        stored = self.store.items.get(record.location)
        if stored is not None:
            record = dataclasses.replace(record, stamp=str(stored.generation))
        return super()._apply(record, operation)


class GuardsCreatedOnly(InMemoryBackend):
    """Compares only the created time (fs compared mtime alone: `cp -p` and `touch -r` beat it)."""

    def _apply(self, record: Record, operation: str) -> Outcome:
        stored = self.store.items.get(record.location)
        if stored is not None and stored.created == record.created:
            record = dataclasses.replace(record, stamp=str(stored.generation))
        return super()._apply(record, operation)


class SaysChangedButDeletes(InMemoryBackend):
    """Detects the change, reports it, and deletes anyway (the check runs after the DELETE)."""

    def _apply(self, record: Record, operation: str) -> Outcome:
        outcome = super()._apply(record, operation)
        if outcome.status is Status.CHANGED:
            del self.store.items[record.location]
        return outcome


class StampsWhatTheCoreFillsIn(InMemoryBackend):
    """Compares the record it gets back with the one it listed, category included: the core
    fills the category in, so every record looks changed and nothing is ever deleted."""

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for item in super().scan(source):
            yield dataclasses.replace(item, stamp=f"{item.stamp}|{item.category}") if isinstance(item, Record) else item

    def _apply(self, record: Record, operation: str) -> Outcome:
        generation, _, category = (record.stamp or "").partition("|")
        if category != str(record.category):
            return Outcome(record, Status.CHANGED, "the record differs from the one listed")
        return super()._apply(dataclasses.replace(record, stamp=generation), operation)


class StampsTheFolder(InMemoryBackend):
    """One stamp per folder (a file's mtime for every line in it): a write to a neighbour makes
    every record beside it `changed`."""

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for item in super().scan(source):
            if isinstance(item, Record):
                item = dataclasses.replace(item, stamp=self._folder_stamp(item.location))
            yield item

    def _folder_stamp(self, location: str) -> str:
        folder = location.rpartition("/")[0]
        return str(max(i.generation for k, i in self.store.items.items() if k.rpartition("/")[0] == folder))

    def _apply(self, record: Record, operation: str) -> Outcome:
        stored = self.store.items.get(record.location)
        if stored is not None and record.stamp == self._folder_stamp(record.location):
            record = dataclasses.replace(record, stamp=str(stored.generation))
        return super()._apply(record, operation)


class RaisesOnProblem(InMemoryBackend):
    """Lets one unreadable item stop the whole scan."""

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for item in super().scan(source):
            if isinstance(item, Problem):
                raise PermissionError(13, "Permission denied", item.location)
            yield item


class ListsProblemsAsRecords(InMemoryBackend):
    """Makes up a created time for what it cannot read, so the item can be deleted."""

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for item in super().scan(source):
            if isinstance(item, Problem):
                stored = self.store.items[item.location]
                item = Record(item.source, item.location, datetime(1970, 1, 1, tzinfo=timezone.utc),
                              stamp=str(stored.generation))
            yield item


class DropsProblems(InMemoryBackend):
    """Logs what it cannot read and says nothing to the core (an erasure could be marked done)."""

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        return (item for item in super().scan(source) if not isinstance(item, Problem))


class SurveyingMemory(InMemoryBackend):
    """The reference store as a push-down backend that counts correctly (the subject is the
    location's first segment). Only ``survey`` is exercised; ``push_down`` is not offered."""

    can_push_down = True

    def scan(self, source: Source) -> Iterator[Record]:
        for record in super().scan(source):
            yield Record(record.source, record.location, record.created, subject=record.location.split("/")[0])

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        return self._count(source, cutoffs, lambda created, cutoff: created <= cutoff)

    def _count(self, source: Source, cutoffs: Cutoffs, within: Callable[[datetime, datetime], bool]) -> Survey:
        records = list(self.scan(source))
        if cutoffs.held:
            return Survey(len(records), 0, len(records))
        held = Counter(r.subject for r in records if r.subject in cutoffs.held_subjects)
        due = 0
        for r in records:
            assert r.subject is not None
            cutoff = cutoffs.per_subject.get(r.subject, cutoffs.default)
            due += r.subject not in cutoffs.held_subjects and cutoff is not None and within(r.created, cutoff)
        return Survey(len(records), due, sum(held.values()), dict(held))


class SurveyStrictCutoff(SurveyingMemory):
    """``created < cutoff``: the record exactly at the cutoff is missed (an off-by-one in SQL)."""

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        return self._count(source, cutoffs, lambda created, cutoff: created < cutoff)


class SurveyCountsHeldAsDue(SurveyingMemory):
    """Counts a held subject's old records as due: the limits would be checked against too many."""

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        counted = super().survey(source, dataclasses.replace(cutoffs, held_subjects=frozenset()))
        held = super().survey(source, cutoffs)
        return Survey(counted.total, counted.due, held.held, held.held_by_subject)


class SurveyIgnoresPerSubject(SurveyingMemory):
    """Uses the default cutoff for everyone: erasure requests and service-end clocks are lost."""

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        return super().survey(source, dataclasses.replace(cutoffs, per_subject={}))


SURVEY = "test_survey_counts_what_decide_selects"
RECREATED = "test_guard_keeps_an_item_recreated_since_the_scan"
SAME_TIME = "test_guard_keeps_an_item_recreated_with_the_same_created_time"
MODIFIED = "test_guard_keeps_an_item_modified_since_the_scan"
UNTOUCHED = "test_guard_never_reports_changed_for_untouched_records"
PROBLEM = "test_problem_is_reported_and_never_deleted"

CASES = [
    (PrefixDelete, "test_prefix_isolation"),
    (FirstPageOnly, "test_scan_finds_exactly_what_was_seeded_across_pages"),
    (NaiveCreated, "test_scan_finds_exactly_what_was_seeded_across_pages"),
    (SilentOnMissing, "test_deleting_what_is_gone_is_already_gone"),
    (SilentOnMissing, "test_delete_outcomes_in_any_order_one_per_record"),
    (MissingIsError, "test_never_seeded_is_already_gone"),
    (RaisesOnRefusal, "test_refusal_is_refused_and_does_not_abort_the_batch"),
    (RefusalAsFailure, "test_refusal_is_refused_and_does_not_abort_the_batch"),
    (ClaimsWithoutDeleting, "test_transient_fault_leaves_no_record_unaccounted_for"),
    (CapsBatch, "test_batch_larger_than_batch_size"),
    (DeletesOnAnonymize, "test_anonymize_keeps_items"),
    (IgnoresUnknownOptions, "test_bad_options_are_config_errors"),
    (StripsNames, "test_scan_reports_odd_names_verbatim"),
    (IgnoresTheGuard, RECREATED),
    (IgnoresTheGuard, SAME_TIME),
    (IgnoresTheGuard, MODIFIED),
    (GuardsCreatedOnly, SAME_TIME),
    (GuardsCreatedOnly, MODIFIED),
    (SaysChangedButDeletes, RECREATED),
    (SaysChangedButDeletes, MODIFIED),
    (StampsWhatTheCoreFillsIn, UNTOUCHED),
    (StampsTheFolder, UNTOUCHED),
    (StampsTheFolder, MODIFIED),
    (RaisesOnProblem, PROBLEM),
    (ListsProblemsAsRecords, PROBLEM),
    (DropsProblems, PROBLEM),
    (SurveyStrictCutoff, SURVEY),
    (SurveyCountsHeldAsDue, SURVEY),
    (SurveyIgnoresPerSubject, SURVEY),
]


def run_suite_test(backend_class: type[InMemoryBackend], test_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one suite test by hand against *backend_class*, with the fixtures it needs."""
    suite = MemorySuite()
    suite.monkeypatch = monkeypatch
    suite.store = f"catches-{uuid.uuid4().hex}"
    backend = backend_class(Options({"store": suite.store, "page_size": suite.page_size}))
    source = Source(name="conformance", backend=backend.name)
    method = getattr(suite, test_name)
    try:
        if test_name == "test_bad_options_are_config_errors":
            method(backend)
        else:
            method(backend, source)
    finally:
        memory.reset(suite.store)


@pytest.mark.parametrize(("backend_class", "test_name"), CASES,
                         ids=[f"{cls.__name__}-{name}" for cls, name in CASES])
def test_suite_catches(backend_class: type[InMemoryBackend], test_name: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception, PermissionError)):
        run_suite_test(backend_class, test_name, monkeypatch)


@pytest.mark.parametrize("test_name", sorted({name for _, name in CASES} - {SURVEY}))
def test_same_suite_tests_pass_on_the_reference(test_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_suite_test(InMemoryBackend, test_name, monkeypatch)


def test_survey_test_passes_on_a_correct_survey(monkeypatch: pytest.MonkeyPatch) -> None:
    run_suite_test(SurveyingMemory, SURVEY, monkeypatch)


def test_survey_test_skips_backends_without_push_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pytest.skip.Exception):
        run_suite_test(InMemoryBackend, SURVEY, monkeypatch)


def test_seed_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        memory.seed("x", "a", datetime(2020, 1, 1))
