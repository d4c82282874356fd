"""``PushdownConformanceTests`` passes a correct set-based backend and fails broken ones.

The reference here is the memory store walked in key ranges, one "transaction" per batch:
a batch is yielded, and applied to the store only when the generator is resumed. Each broken
variant has one realistic bug of a push-down path; the named suite test must fail on it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Generator, Iterator
from datetime import datetime

import pytest

from retention_core import Action, Cutoffs, Options, Outcome, Problem, PushdownPlan, Record, Source, Status
from retention_core.engine import decide
from retention_core.testing import PushdownConformanceTests, memory
from retention_core.testing.memory import InMemoryBackend
from retention_core.testing.pushdown import SITUATIONS


class SetBasedMemory(InMemoryBackend):
    """The memory store as a push-down backend; the subject is the location's first segment."""

    can_push_down = True

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for item in super().scan(source):
            if isinstance(item, Record):
                item = dataclasses.replace(item, subject=item.location.split("/")[0])
            yield item

    def push_down(self, source: Source, plan: PushdownPlan) -> Generator[list[Outcome], None, None]:
        last: str | None = None
        while True:
            current = self.cutoffs(plan)
            if current.held or current.action not in (Action.DELETE, Action.ANONYMIZE):
                return
            batch, last = self.select(source, current, last)
            if last is None:
                return
            if batch:
                yield from self.commit_after_yield(batch, current.action)

    # -- the pieces a broken variant replaces ------------------------------------------------
    def cutoffs(self, plan: PushdownPlan) -> Cutoffs:
        return plan.refresh()

    def due(self, cutoffs: Cutoffs, subject: str, created: datetime) -> bool:
        return cutoffs.due(subject, created)

    def select(self, source: Source, cutoffs: Cutoffs, last: str | None) -> tuple[list[Record], str | None]:
        """The due items among the next ``batch_size`` keys after *last*, and the range's end."""
        store = self.store
        with store.mutex:
            keys = sorted(k for k in store.items if last is None or k > last)[: self.batch_size]
            items = [(k, store.items[k]) for k in keys]
        batch = [Record(source.name, k, item.created, item.size, subject=k.split("/")[0], category=source.category,
                        stamp=str(item.generation))
                 for k, item in items if item.problem is None and self.due(cutoffs, k.split("/")[0], item.created)]
        return batch, (keys[-1] if keys else None)

    def commit_after_yield(self, batch: list[Record], action: Action) -> Iterator[list[Outcome]]:
        status = Status.DELETED if action is Action.DELETE else Status.ANONYMIZED
        yield [Outcome(r, status) for r in batch]  # GeneratorExit here: nothing applied (rolled back)
        self.apply(batch, action)

    def apply(self, batch: list[Record], action: Action) -> None:
        store = self.store
        with store.mutex:
            for record in batch:
                if action is Action.DELETE:
                    del store.items[record.location]
                else:
                    store.items[record.location].fields.clear()


class CommitsBeforeYield(SetBasedMemory):
    """Deletes, then reports: a crash between the two leaves deletions nobody journalled."""

    def commit_after_yield(self, batch: list[Record], action: Action) -> Iterator[list[Outcome]]:
        self.apply(batch, action)
        yield [Outcome(r, Status.DELETED) for r in batch]


class CommitsWhenClosed(SetBasedMemory):
    """Commits in a ``finally``: closing the generator commits the batch instead of rolling back."""

    def commit_after_yield(self, batch: list[Record], action: Action) -> Iterator[list[Outcome]]:
        try:
            yield [Outcome(r, Status.DELETED) for r in batch]
        finally:
            self.apply(batch, action)


class ReadsHoldsOnce(SetBasedMemory):
    """Uses the cutoffs it was handed for the whole run: a hold placed mid-run protects nothing."""

    def cutoffs(self, plan: PushdownPlan) -> Cutoffs:
        return plan.cutoffs


class RefreshesOnlyAtStart(SetBasedMemory):
    """Re-reads holds once, when the walk starts, and keeps that answer for every batch."""

    def cutoffs(self, plan: PushdownPlan) -> Cutoffs:
        if not hasattr(self, "_first"):
            self._first = plan.refresh()
        return self._first


class RefreshesButKeepsTheOldCutoffs(SetBasedMemory):
    """Calls ``plan.refresh()`` every batch but goes on with the cutoffs it started with."""

    def cutoffs(self, plan: PushdownPlan) -> Cutoffs:
        plan.refresh()
        return plan.cutoffs


class IgnoresHeldSubjects(SetBasedMemory):
    def due(self, cutoffs: Cutoffs, subject: str, created: datetime) -> bool:
        return dataclasses.replace(cutoffs, held_subjects=frozenset()).due(subject, created)


class StrictCutoff(SetBasedMemory):
    """``created < cutoff``: the item exactly at the cutoff instant is kept (an SQL off-by-one)."""

    def due(self, cutoffs: Cutoffs, subject: str, created: datetime) -> bool:
        cutoff = cutoffs.per_subject.get(subject, cutoffs.default)
        return cutoffs.due(subject, created) and cutoff is not None and created < cutoff


class IgnoresPerSubject(SetBasedMemory):
    """One cutoff for everyone: erasure requests, minors and service-end clocks are lost."""

    def due(self, cutoffs: Cutoffs, subject: str, created: datetime) -> bool:
        return dataclasses.replace(cutoffs, per_subject={}).due(subject, created)


class OneBigBatch(SetBasedMemory):
    """Ignores batch_size: one long transaction, which a hold placed meanwhile cannot fence."""

    def select(self, source: Source, cutoffs: Cutoffs, last: str | None) -> tuple[list[Record], str | None]:
        if last is not None:
            return [], None
        self.batch_size, size = 10**9, self.batch_size
        try:
            return super().select(source, cutoffs, last)
        finally:
            self.batch_size = size


class PushdownSuite(PushdownConformanceTests):
    """The suite with out-of-band memory helpers; not collected (no Test prefix)."""

    store = ""

    def seed(self, location: str, created: datetime) -> None:
        memory.seed(self.store, location, created)

    def exists(self, location: str) -> bool:
        return memory.exists(self.store, location)


class TestSetBasedMemory(PushdownSuite):
    """The reference passes the whole push-down suite."""

    @pytest.fixture
    def backend(self) -> Iterator[SetBasedMemory]:
        self.store = f"pushdown-{uuid.uuid4().hex}"
        with SetBasedMemory(Options({"store": self.store})) as backend:
            backend.batch_size = 6
            yield backend
        memory.reset(self.store)


SELECTS = "test_push_down_selects_what_decide_selects"
CASES = [
    (CommitsBeforeYield, "test_push_down_yields_each_batch_before_committing_it", None),
    (CommitsWhenClosed, "test_push_down_rolls_back_the_batch_in_hand_when_closed", None),
    (ReadsHoldsOnce, "test_push_down_honours_a_subject_hold_placed_mid_run", None),
    (ReadsHoldsOnce, "test_push_down_stops_when_the_whole_source_is_held_mid_run", None),
    (RefreshesOnlyAtStart, "test_push_down_honours_a_subject_hold_placed_mid_run", None),
    (RefreshesButKeepsTheOldCutoffs, "test_push_down_honours_a_subject_hold_placed_mid_run", None),
    (RefreshesButKeepsTheOldCutoffs, "test_push_down_stops_when_the_whole_source_is_held_mid_run", None),
    (OneBigBatch, "test_push_down_honours_a_subject_hold_placed_mid_run", None),
    (IgnoresHeldSubjects, SELECTS, "by created, with holds, requests and minors"),
    (IgnoresHeldSubjects, SELECTS, "everything due"),
    (StrictCutoff, SELECTS, "by created"),
    (IgnoresPerSubject, SELECTS, "by created, with holds, requests and minors"),
    (IgnoresPerSubject, SELECTS, "by service end"),
]


def run_suite_test(backend_class: type[SetBasedMemory], test_name: str, situation: str | None) -> None:
    suite = PushdownSuite()
    suite.store = f"pushdown-catches-{uuid.uuid4().hex}"
    backend = backend_class(Options({"store": suite.store}))
    backend.batch_size = 6
    source = Source(name="conformance", backend=backend.name)
    method = getattr(suite, test_name)
    try:
        if situation is None:
            method(backend, source)
        else:
            method(backend, source, situation)
    finally:
        memory.reset(suite.store)


@pytest.mark.parametrize(("backend_class", "test_name", "situation"), CASES,
                         ids=[f"{cls.__name__}-{name}-{sit or ''}" for cls, name, sit in CASES])
def test_suite_catches(backend_class: type[SetBasedMemory], test_name: str, situation: str | None) -> None:
    with pytest.raises(AssertionError):
        run_suite_test(backend_class, test_name, situation)


def test_every_situation_splits_or_is_meant_to_select_nothing() -> None:
    """The selection test proves something only where decide keeps some items and selects others."""
    suite = PushdownSuite()
    suite.store = f"pushdown-situations-{uuid.uuid4().hex}"
    backend = SetBasedMemory(Options({"store": suite.store}))
    source = Source(name="conformance", backend=backend.name)
    try:
        records = suite._seed_subjects(backend, source, suite.pushdown_items)
        nothing = {"the category held", "the whole source held", "nothing due yet"}
        for label in SITUATIONS:
            category, ctx = suite._situation(label, source, records)
            due = sum(decide(dataclasses.replace(r, category=category.name), ctx).action is category.action
                      for r in records)
            if label in nothing:
                assert due == 0, label
            else:
                assert 0 < due < len(records), (label, due)
    finally:
        memory.reset(suite.store)


def test_the_suite_requires_push_down() -> None:
    with pytest.raises(AssertionError, match="does not declare can_push_down"):
        run_suite_test(InMemoryBackend, "test_push_down_yields_each_batch_before_committing_it", None)  # type: ignore[arg-type]
