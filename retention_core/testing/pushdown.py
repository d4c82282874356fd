"""``PushdownConformanceTests``: the suite for backends that offer ``push_down``.

Set-based deletion is the hardest part of the backend contract: it must select exactly what
per-record :func:`~retention_core.engine.decide` selects, re-read holds inside every batch,
and hand each batch to the core *before* committing it. This suite checks all three, out of
band, with the same hooks as :class:`~retention_core.testing.conformance.BackendConformanceTests`
(one helpers mixin can serve both). Imports pytest; install ``retention[testing]``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import ClassVar

import pytest

from ..backend import Backend, Cutoffs, PushdownPlan, StreamedBatch
from ..durations import parse_duration
from ..engine import cutoffs, decide
from ..model import (
    Action,
    Category,
    Context,
    ErasureRequest,
    Hold,
    HoldScope,
    Outcome,
    Record,
    Source,
    Status,
    Subject,
)
from .conformance import StorageTests

__all__ = ["PushdownConformanceTests"]

#: Subjects of the selection test's items (the first path segment of each location).
SUBJECTS = ("held", "asked", "minor", "ended", "active", "released", "elsewhere", "plain")

#: The situations of :meth:`PushdownConformanceTests.test_push_down_selects_what_decide_selects`.
SITUATIONS = ("by created", "by created, with holds, requests and minors", "by service end",
              "the category held", "the whole source held", "nothing due yet", "everything due")

CATEGORY = "conformance"


class PushdownConformanceTests(StorageTests):
    """Subclass this (named ``Test…``) when your backend declares ``can_push_down``.

    **You provide** the same members as for
    :class:`~retention_core.testing.conformance.BackendConformanceTests` (only these are
    used here):

    ``backend`` *(fixture, required)*
        Yields an **empty** instance of your backend with a **small** ``batch_size``
        (at most 50: the suite seeds a few batches' worth of items), closed afterwards.
    ``seed(self, location, created) -> datetime | None`` *(required)*
        Create one item with the native client. Push-down backends read a record's subject
        from storage: store the location's first path segment (``asked`` for
        ``asked/item-00003``) as the item's subject.
    ``exists(self, location) -> bool`` *(required)*
        Whether *location* exists, checked with the native client **on its own connection**:
        the suite calls it while a batch is yielded but not yet committed, and expects the
        items still there.
    ``to_location(self, name)`` and ``source`` *(optional)*, as in the backend suite.

    **Capabilities** (class attributes of your test class):

    ``pushdown_items`` *(int, default 40)*
        How many items the selection test seeds, spread over the subjects ``held``,
        ``asked``, ``minor``, ``ended``, ``active``, ``released``, ``elsewhere`` and ``plain``.
    ``created_tolerance`` *(timedelta, default 1 s)*
        How far an outcome's ``created`` may be from the scanned one.

    **The suite checks** that ``push_down`` is a generator that deletes (or, with
    ``can_anonymize``, anonymizes) exactly the items per-record ``decide`` selects — under
    held subjects, released holds, holds scoped to another source, erasure requests, minors,
    both clocks (created and service end), a held category or source, nothing and everything
    due — naming each once with its subject, in batches of at most ``batch_size``; that it
    calls ``plan.refresh()`` inside every batch and honours a hold placed while a batch is in
    flight (on a subject, then on the whole source); that each batch is yielded **before**
    it is committed and committed when the generator is resumed; and that closing the
    generator (``GeneratorExit``) rolls the batch in hand back and leaves the backend usable.
    """

    pushdown_items: ClassVar[int] = 40
    created_tolerance: ClassVar[timedelta] = timedelta(seconds=1)

    #: How many refreshes push_down had made at each batch it yielded, in the test running.
    _refreshes_at_yield: list[int]

    # -- selection -------------------------------------------------------------------------

    @pytest.mark.parametrize("situation", SITUATIONS)
    def test_push_down_selects_what_decide_selects(self, backend: Backend, source: Source,
                                                   situation: str) -> None:
        self._require_push_down(backend)
        records = self._seed_subjects(backend, source, self.pushdown_items)
        category, ctx = self._situation(situation, source, records)
        self._check_selection(backend, source, records, category, ctx)

    def test_push_down_anonymizes_what_decide_selects(self, backend: Backend, source: Source) -> None:
        self._require_push_down(backend)
        if not backend.can_anonymize:
            pytest.skip(f"backend {backend.name!r} does not declare can_anonymize")
        records = self._seed_subjects(backend, source, self.pushdown_items)
        category, ctx = self._situation("by created, with holds, requests and minors", source, records,
                                        action=Action.ANONYMIZE)
        self._check_selection(backend, source, records, category, ctx)

    # -- holds re-read per batch -----------------------------------------------------------

    def test_push_down_honours_a_subject_hold_placed_mid_run(self, backend: Backend, source: Source) -> None:
        """After the first batch, a hold on a subject it did not touch: the rest of the run
        deletes every other subject's items and none of the held one's."""
        self._require_push_down(backend)
        size = self._small_batch_size(backend)
        records = self._seed_all_due(backend, source, [f"s{i:03d}" for i in range(size + 2)], per_subject=2)
        placed: list[Hold] = []
        src, plan, refreshed = self._mid_run_plan(source, records, placed)
        stream = backend.push_down(src, plan)
        first = self._first_batch(stream, refreshed, size)
        untouched = sorted({r.subject for r in records if r.subject is not None}
                           - {o.record.subject for o in first})
        held = untouched[-1]
        placed.append(Hold("H-mid-run", "legal", HoldScope(subject=held), "placed while a batch was in flight"))
        rest = self._resume_all(stream, refreshed)
        named = [o.record.location for batch in rest for o in batch]
        held_items = [r.location for r in records if r.subject == held]
        assert not set(named) & set(held_items), f"push_down deleted items of {held!r}, held since the first batch"
        assert all(self.exists(loc) for loc in held_items), f"items of {held!r}, held mid-run, are gone"
        others = [r.location for r in records if r.subject != held]
        assert [loc for loc in others if self.exists(loc)] == [], "the run must go on for subjects not held"

    def test_push_down_stops_when_the_whole_source_is_held_mid_run(self, backend: Backend,
                                                                   source: Source) -> None:
        self._require_push_down(backend)
        size = self._small_batch_size(backend)
        records = self._seed_all_due(backend, source, ["plain"], per_subject=3 * size)
        placed: list[Hold] = []
        src, plan, refreshed = self._mid_run_plan(source, records, placed)
        stream = backend.push_down(src, plan)
        first = self._first_batch(stream, refreshed, size)
        placed.append(Hold("H-source", "legal", HoldScope(source=source.name), "placed while a batch was in flight"))
        rest = self._resume_all(stream, refreshed)
        assert rest == [], f"push_down went on after the whole source was held: {len(rest)} more batches"
        deleted = {o.record.location for o in first}
        assert [r.location for r in records if r.location not in deleted and not self.exists(r.location)] == [], (
            "items not in the first batch were deleted after the whole source was held")

    # -- yield before commit, roll back on close ------------------------------------------

    def test_push_down_yields_each_batch_before_committing_it(self, backend: Backend, source: Source) -> None:
        """The core journals a batch as intent when it is yielded and as outcome after it
        resumes the generator: a deletion committed before the yield would be missing from
        the audit trail if the run died in between."""
        self._require_push_down(backend)
        size = self._small_batch_size(backend)
        records = self._seed_all_due(backend, source, ["plain"], per_subject=3 * size)
        src, plan, refreshed = self._mid_run_plan(source, records, [])
        stream = backend.push_down(src, plan)
        try:
            first = self._first_batch(stream, refreshed, size)
            committed = [o.record.location for o in first if not self.exists(o.record.location)]
            assert committed == [], f"push_down committed {committed[:3]}… before yielding their batch"
            second = _listed(next(stream, None))
            assert second, "push_down must yield the remaining due items in further batches"
            assert [o.record.location for o in first if self.exists(o.record.location)] == [], (
                "resuming the generator must commit the batch it yielded")
            committed = [o.record.location for o in second if not self.exists(o.record.location)]
            assert committed == [], f"push_down committed {committed[:3]}… before yielding their batch"
        finally:
            stream.close()

    def test_push_down_rolls_back_the_batch_in_hand_when_closed(self, backend: Backend, source: Source) -> None:
        """The core closes the generator instead of resuming it when a limit trips or a hold
        appeared: the batch in hand must be rolled back, and the backend stay usable."""
        self._require_push_down(backend)
        size = self._small_batch_size(backend)
        records = self._seed_all_due(backend, source, ["plain"], per_subject=2 * size + 1)
        src, plan, refreshed = self._mid_run_plan(source, records, [])
        stream = backend.push_down(src, plan)
        first = self._first_batch(stream, refreshed, size)
        stream.close()
        gone = [o.record.location for o in first if not self.exists(o.record.location)]
        assert gone == [], f"closing the generator must roll back its batch, but {gone[:3]}… are gone"
        assert all(self.exists(r.location) for r in records), "closing the generator deleted items"
        named = [o.record.location for batch in self._resume_all(backend.push_down(src, plan), refreshed)
                 for o in batch]
        assert sorted(named) == sorted(r.location for r in records), "a new push_down must finish the job"
        assert [r.location for r in records if self.exists(r.location)] == []

    # -- helpers ---------------------------------------------------------------------------

    def _require_push_down(self, backend: Backend) -> None:
        assert backend.can_push_down, f"backend {backend.name!r} does not declare can_push_down"

    def _small_batch_size(self, backend: Backend) -> int:
        size = backend.batch_size
        assert 1 <= size <= 50, f"configure the backend fixture with a batch_size of at most 50, not {size}"
        return size

    def _seed_subjects(self, backend: Backend, source: Source, count: int) -> list[Record]:
        names = [f"{SUBJECTS[i % len(SUBJECTS)]}/item-{i:05d}" for i in range(count)]
        locations = self._locations(names)
        self._seed_all(locations)
        return self._records(backend, source, locations)

    def _seed_all_due(self, backend: Backend, source: Source, subjects: Iterable[str],
                      per_subject: int) -> list[Record]:
        locations = self._locations(f"{s}/item-{j:04d}" for s in subjects for j in range(per_subject))
        self._seed_all(locations)
        return self._records(backend, source, locations)

    def _situation(self, label: str, source: Source, records: list[Record],
                   action: Action = Action.DELETE) -> tuple[Category, Context]:
        """The category and context of *label*; the cutoff falls exactly on a seeded instant."""
        by_created = sorted(r.created for r in records)
        boundary = by_created[len(by_created) // 2]
        now = boundary + timedelta(days=30)
        created = Category(CATEGORY, parse_duration("30d"), action=action)
        ended = Category(CATEGORY, parse_duration("30d"), after="service_end", action=action)
        subjects = {
            "held": Subject("held", service_ended_at=now - timedelta(days=400)),
            "asked": Subject("asked"),
            "minor": Subject("minor", minor=True),
            "ended": Subject("ended", service_ended_at=now - timedelta(days=31)),
            "active": Subject("active"),
            "released": Subject("released", service_ended_at=now - timedelta(days=400)),
            "elsewhere": Subject("elsewhere", service_ended_at=now - timedelta(days=400)),
        }
        requests = {"asked": ErasureRequest("R-1", "asked", "conformance", now - timedelta(days=1),
                                            now + timedelta(days=29))}
        holds = (Hold("H-subject", "legal", HoldScope(subject="held"), "conformance"),
                 Hold("H-released", "legal", HoldScope(subject="released"), "conformance",
                      released_at=now - timedelta(days=1)),
                 Hold("H-elsewhere", "legal", HoldScope(subject="elsewhere", source="another-source"),
                      "conformance"),
                 Hold("H-nobody", "legal", HoldScope(subject="nobody-has-this"), "conformance"))

        def ctx(category: Category, when: datetime = now, extra: tuple[Hold, ...] = (),
                known: bool = True) -> Context:
            return Context(now=when, categories={CATEGORY: category}, subjects=subjects if known else {},
                           holds=(holds if known else ()) + extra, requests=requests if known else {})

        situations = {
            "by created": (created, ctx(created, known=False)),
            "by created, with holds, requests and minors": (created, ctx(created)),
            "by service end": (ended, ctx(ended)),
            "the category held": (created, ctx(created, extra=(
                Hold("H-category", "legal", HoldScope(category=CATEGORY), "conformance"),))),
            "the whole source held": (created, ctx(created, extra=(
                Hold("H-source", "legal", HoldScope(source=source.name), "conformance"),))),
            "nothing due yet": (created, ctx(created, when=by_created[0] + timedelta(days=29), known=False)),
            "everything due": (created, ctx(created, when=by_created[-1] + timedelta(days=31))),
        }
        return situations[label]

    def _check_selection(self, backend: Backend, source: Source, records: list[Record],
                         category: Category, ctx: Context) -> None:
        """Run push_down to the end; it must act on exactly what ``decide`` selects, once each."""
        src = dataclasses.replace(source, category=category.name)
        plan = cutoffs(src, ctx)
        decided = [dataclasses.replace(r, category=category.name) for r in records]
        expected = {r.location for r in decided if decide(r, ctx).action is category.action}
        assert expected == {r.location for r in decided if plan.due(r.subject, r.created)}, (
            "engine.cutoffs disagrees with decide")
        stream = backend.push_down(src, PushdownPlan(plan, lambda: plan))
        assert isinstance(stream, collections.abc.Generator), (
            f"push_down must be a generator, returned {type(stream).__name__}")
        batches = [_listed(batch) for batch in stream]
        outcomes = [o for batch in batches for o in batch]
        named = [o.record.location for o in outcomes]
        assert len(named) == len(set(named)), "push_down named an item twice"
        assert set(named) == expected, (
            f"push_down acted on {len(named)} items, decide selects {len(expected)}: "
            f"only push_down {sorted(set(named) - expected)[:5]}, only decide {sorted(expected - set(named))[:5]}")
        self._check_outcomes(src, batches, records, backend.batch_size, category.action)
        kept = [r.location for r in records if r.location not in expected]
        assert [loc for loc in kept if not self.exists(loc)] == [], "push_down removed items it did not name"
        if category.action is Action.DELETE:
            assert [loc for loc in expected if self.exists(loc)] == [], "push_down named items it did not delete"
        else:
            assert all(self.exists(loc) for loc in expected), "anonymizing must keep the items"

    def _check_outcomes(self, source: Source, batches: list[list[Outcome]], records: list[Record],
                        batch_size: int, action: Action) -> None:
        """Each outcome names a scanned item truly: source, subject, created, status."""
        scanned = {r.location: r for r in records}
        status = Status.DELETED if action is Action.DELETE else Status.ANONYMIZED
        for batch in batches:
            assert len(batch) <= batch_size, f"a batch of {len(batch)} outcomes exceeds batch_size {batch_size}"
            for outcome in batch:
                assert isinstance(outcome, Outcome), f"expected an Outcome, got {outcome!r}"
                record = outcome.record
                assert outcome.status is status, f"{record.location!r}: {outcome.status} ({outcome.error})"
                assert record.source == source.name, f"{record.location!r}: source {record.source!r}"
                seen = scanned[record.location]
                assert record.subject == seen.subject, (
                    f"{record.location!r}: subject {record.subject!r}, scanned {seen.subject!r}")
                assert abs(record.created - seen.created) <= self.created_tolerance, (
                    f"{record.location!r}: created {record.created.isoformat()}, scanned {seen.created.isoformat()}")
                assert record.category in (None, source.category), f"{record.location!r}: category {record.category!r}"

    def _mid_run_plan(self, source: Source, records: list[Record], placed: list[Hold]
                      ) -> tuple[Source, PushdownPlan, list[int]]:
        """A plan where everything seeded is due and ``refresh`` sees the holds in *placed*
        (appended to by the test while a batch is in flight); the list counts refreshes."""
        category = Category(CATEGORY, parse_duration("30d"))
        now = max(r.created for r in records) + timedelta(days=31)
        src = dataclasses.replace(source, category=CATEGORY)
        subjects = {s: Subject(s) for s in {r.subject for r in records} if s is not None}

        def current() -> Cutoffs:
            return cutoffs(src, Context(now=now, categories={CATEGORY: category}, subjects=subjects,
                                        holds=tuple(placed)))

        refreshed = [0]

        def refresh() -> Cutoffs:
            refreshed[0] += 1
            return current()

        return src, PushdownPlan(current(), refresh), refreshed

    def _first_batch(self, stream: collections.abc.Generator[list[Outcome] | StreamedBatch, None, None],
                     refreshed: list[int], size: int) -> list[Outcome]:
        assert isinstance(stream, collections.abc.Generator), (
            f"push_down must be a generator, returned {type(stream).__name__}")
        first = _listed(next(stream, None))
        assert first, "push_down yielded no batch although every item is due"
        assert refreshed[0] >= 1, "push_down must call plan.refresh() inside each batch's transaction"
        assert len(first) <= size, f"a batch of {len(first)} outcomes exceeds batch_size {size}"
        self._refreshes_at_yield = [refreshed[0]]
        return list(first)

    def _resume_all(self, stream: collections.abc.Generator[list[Outcome] | StreamedBatch, None, None],
                    refreshed: list[int]) -> list[list[Outcome]]:
        """Resume *stream* to its end; each batch must come after a refresh of its own."""
        seen = self._refreshes_at_yield
        batches = []
        for batch in stream:
            assert not seen or refreshed[0] > seen[-1], (
                "push_down yielded a batch without calling plan.refresh() since the previous one: "
                "a hold placed meanwhile would not protect it")
            seen.append(refreshed[0])
            batches.append(_listed(batch))
        return batches


def _listed(batch: list[Outcome] | StreamedBatch | None) -> list[Outcome]:
    """A batch as outcomes: these plans name no evidence directory, so a backend must not stream."""
    assert not isinstance(batch, StreamedBatch), "push_down streamed a batch although plan.evidence is None"
    return list(batch or [])
