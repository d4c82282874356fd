"""``BackendConformanceTests``: the test suite every storage backend subclasses.

The suite seeds and inspects storage **out of band**, through helpers the plugin author
writes with the storage's native client, never through the backend under test: a backend
that misreports what it deleted cannot pass its own tests. :class:`StorageTests` holds
what this suite shares with :class:`~retention_core.testing.pushdown.PushdownConformanceTests`
(the helper hooks and the scan/outcome checks), so one helpers mixin serves both. Imports
pytest; install ``retention[testing]``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import pytest

from ..backend import Backend, Cutoffs, Partition, Survey
from ..durations import parse_duration
from ..engine import cutoffs, decide
from ..errors import ConfigError
from ..model import (
    Action,
    Category,
    Context,
    ErasureRequest,
    Hold,
    HoldScope,
    Outcome,
    Problem,
    Record,
    Source,
    Status,
    Subject,
)
from ..options import Options

__all__ = ["BackendConformanceTests", "StorageTests"]

#: Seeded creation times: whole seconds, hours apart, well in the past.
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)

#: Names that trip up quoting, URL-encoding, prefix matching and path handling.
ODD_NAMES = (
    "with space.txt",
    "ünïcødé-名前.txt",
    "plus+sign.txt",
    "percent%20encoded%.txt",
    "hash#tag.txt",
    "quote'and\"double.txt",
    "star*and?question.txt",
    "semi;colon&amp=eq.txt",
    "back\\slash.txt",
    "dots..txt",
)
NEWLINE_NAME = "new\nline.txt"

#: Subjects of the survey test's items (the first path segment of each location).
SURVEY_SUBJECTS = ("held", "asked", "ended", "active", "plain")

#: (deleted, kept) pairs: deleting the first must leave the second alone.
ISOLATION_PAIRS = (
    ("logs/a", "logs-a/a"),
    ("logs/b", "logs/bb"),
    ("logs/c.txt", "logs/c.txt.bak"),
    ("nested/one/x", "nested/one-x"),
    ("x", "x/"),
)


class StorageTests:
    """What both conformance suites share: the out-of-band hooks and the checks of a scan.

    Not collected on its own (no ``Test`` prefix). Subclass
    :class:`BackendConformanceTests` or
    :class:`~retention_core.testing.pushdown.PushdownConformanceTests`; their docstrings list
    the hooks (``backend``, ``seed``, ``exists``, ``to_location``, ``source``).
    """

    monkeypatch: pytest.MonkeyPatch

    # -- hooks the author implements -------------------------------------------------------

    def seed(self, location: str, created: datetime) -> datetime | None:
        raise NotImplementedError(f"{type(self).__name__} must implement seed(location, created)")

    def exists(self, location: str) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement exists(location)")

    def to_location(self, name: str) -> str | None:
        return name

    @pytest.fixture
    def source(self, backend: Backend) -> Source:
        return Source(name="conformance", backend=backend.name)

    @pytest.fixture(autouse=True)
    def _conformance_monkeypatch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    # -- helpers of the suites -------------------------------------------------------------

    def _locations(self, names: Iterable[str]) -> list[str]:
        """Map names to locations, dropping the ones storage cannot represent."""
        out = []
        for name in names:
            location = self.to_location(name)
            if location is not None:
                out.append(location)
        return out

    def _seed_all(self, locations: Iterable[str]) -> dict[str, datetime]:
        """Seed each location (hours apart); return the creation time storage recorded."""
        expected = {}
        for i, location in enumerate(locations):
            wanted = EPOCH + timedelta(hours=i, seconds=i % 60)
            recorded = self.seed(location, wanted)
            expected[location] = wanted if recorded is None else recorded
        return expected

    def _scan(self, backend: Backend, source: Source, problems: list[Problem] | None = None) -> dict[str, Record]:
        """Scan *source*; the records by location. A :class:`Problem` is collected into
        *problems* when given, and fails the test otherwise (nothing malformed was seeded)."""
        items = backend.scan(source)
        assert isinstance(items, collections.abc.Iterator), (
            f"scan must be lazy (an iterator or generator), returned {type(items).__name__}")
        by_location: dict[str, Record] = {}
        for item in items:
            if isinstance(item, Problem):
                assert problems is not None, f"scan yielded {item!r} for a well-formed item"
                assert item.source == source.name, f"{item!r}: source must be {source.name!r}"
                problems.append(item)
                continue
            assert isinstance(item, Record), f"scan yielded {item!r}, neither a Record nor a Problem"
            assert item.location not in by_location, f"scan yielded {item.location!r} twice"
            by_location[item.location] = item
        return by_location

    def _records(self, backend: Backend, source: Source, locations: Iterable[str]) -> list[Record]:
        """The scanned records at *locations* (so versions, stamps etc. are the backend's own)."""
        scanned = self._scan(backend, source)
        wanted = list(locations)
        missing = [loc for loc in wanted if loc not in scanned]
        assert not missing, f"scan did not find seeded locations {missing!r}"
        return [scanned[loc] for loc in wanted]

    def _outcomes(self, results: Iterable[Outcome], given: Sequence[Record]) -> dict[str, Outcome]:
        """Consume *results*; assert exactly one outcome per record given; key by location."""
        outcomes = list(results)
        for outcome in outcomes:
            assert isinstance(outcome, Outcome), f"expected an Outcome, got {outcome!r}"
            assert isinstance(outcome.status, Status), f"outcome status {outcome.status!r} is not a Status"
        got = Counter(o.record.key for o in outcomes)
        want = Counter(r.key for r in given)
        assert got == want, (
            "expected exactly one outcome per record given; "
            f"missing {sorted(map(str, (want - got).elements()))}, "
            f"extra {sorted(map(str, (got - want).elements()))}")
        return {o.record.location: o for o in outcomes}

    def _statuses(self, outcomes: dict[str, Outcome]) -> dict[str, Status]:
        return {loc: o.status for loc, o in outcomes.items()}


class BackendConformanceTests(StorageTests):
    """Subclass this (named ``Test…``) to run the backend conformance suite.

    **You provide** (as members of your subclass):

    ``backend`` *(fixture, required)*
        Yields an **empty**, configured instance of your backend, and closes it afterwards.
        Define it in the class: pytest binds class fixtures to the test instance, so the
        fixture can keep whatever the helpers need on ``self`` (a root directory, a native
        client, a bucket or table name)::

            @pytest.fixture
            def backend(self, tmp_path):
                self.root = tmp_path
                with FsBackend(Options({"root": str(tmp_path)})) as backend:
                    yield backend

    ``seed(self, location, created) -> datetime | None`` *(required)*
        Create one item at *location* with the native client (not the backend). *created*
        is an aware UTC datetime in whole seconds. Return ``None`` when storage recorded
        *created* as given (file mtime, an SQL column); return the creation time storage
        actually recorded when it cannot be chosen (S3 ``LastModified``), read back natively.

    ``exists(self, location) -> bool`` *(required)*
        Whether *location* exists, checked with the native client.

    ``recreate(self, location, created) -> datetime | None`` *(required)*
        Out of band, remove the item at *location* and write a **new** one there created at
        *created*, as an application would that deletes a record and inserts another under
        the same name (new content where the item has content: a new body, a new object; the
        same subject where storage keeps one). Return value as for ``seed``. The suite calls
        it between a scan and a delete: the guard must keep the new item (``changed``).

    ``modify(self, location) -> None`` *(required)*
        Out of band, change the item at *location* in place — new content, one more byte —
        keeping its created time where storage allows (``touch -r``, an ``UPDATE`` that
        leaves the created column alone; object storage writes a new object or version).
        The guard must keep it (``changed``).

    ``seed_problem(self, location) -> None`` *(optional)*
        Create at *location* an item that ``scan`` cannot list as a record — a NULL or
        unparseable created time, an unreadable directory, a date out of range — so that it
        yields a :class:`~retention_core.model.Problem` instead. Leave it unimplemented and
        the problem test is skipped.

    ``lock(self, location) -> None`` *(required when the backend's* ``can_refuse`` *is true)*
        Make storage itself refuse to delete *location* (S3 Object Lock in compliance mode,
        a database trigger, a read-only flag). The backend must report ``refused``. It is
        called after the scan: a lock is storage refusing, not a change the guard reports.

    ``fault(self, location) -> None`` *(optional)*
        Make the **next** storage operation on *location* fail once, transiently (a 503, a
        per-key ``InternalError`` in S3 DeleteObjects, a dropped connection, ``EIO``). Use
        ``self.monkeypatch`` (the test's monkeypatch fixture, set by the suite) or botocore
        event hooks; everything is undone after the test. Leave it unimplemented and the
        fault test is skipped.

    ``to_location(self, name) -> str | None`` *(optional)*
        Map a name the suite chose (``"logs/a"``, ``"with space.txt"``) to a location your
        backend can hold and that ``scan`` reports verbatim; return ``None`` when the storage
        cannot represent it (a file cannot be called ``x/``). Default: the name itself.

    ``source`` *(fixture, optional)*
        The :class:`~retention_core.Source` handed to ``scan``. Default:
        ``Source(name="conformance", backend=backend.name)``.

    **Capabilities** are class attributes: on your Backend class (``batch_size``,
    ``can_refuse``, ``can_anonymize``) and on your test class:

    ``page_size`` *(int, default 50)*
        How many items one page of your backend's listing holds (configure the backend
        fixture with a small page); the scan test seeds ``2 * page_size + 1`` items.
    ``supports_newlines`` *(bool, default True)*
        Storage can hold a location containing ``\\n``.
    ``created_tolerance`` *(timedelta, default 1 s)*
        How far a scanned ``created`` may be from the seeded (or returned) time.
    ``survey_items`` *(int, default 30)*
        How many items the survey test seeds (push-down backends only), spread over the
        subjects ``held``, ``asked``, ``ended``, ``active`` and ``plain`` as the first path
        segment of each location (``asked/item-00003``). Where your backend reads a record's
        subject from storage (an SQL column), let ``seed`` store that segment as the subject;
        the test works with records that have no subject too, but checks less.
    ``fault_isolated`` *(bool, default True)*
        A fault on one location leaves the rest of its batch ``deleted``. Set ``False`` when
        a batch is one transaction, so a fault may fail the whole batch (every outcome must
        still be present and true to storage).
    ``versioned`` *(bool, default False)*
        Storage keeps every version, ``scan`` yields one record per version and ``delete``
        removes exactly the scanned version (S3 versioned buckets). ``recreate`` and
        ``modify`` then write a new version: deleting the scanned one is allowed
        (``deleted``, or ``changed``), but the new version must survive.
    ``detects_identical_recreate`` *(bool, default True)*
        Set ``False`` only when the guard has nothing to tell an item re-created with the
        same location, created time (and subject) from the one scanned — an SQL table
        without a row-version column, whose ``DELETE`` compares the key, created and subject
        columns. Only ``test_guard_keeps_an_item_recreated_with_the_same_created_time`` is
        skipped; say so in your backend's docs.

    **The guard** ("delete only what was seen", see :class:`~retention_core.Backend`): the
    suite scans, changes storage out of band with ``recreate`` or ``modify``, then deletes
    the scanned records, and requires ``changed`` with the item still there — while the
    untouched records of the same batch, handed over as the core hands them (category and
    subject filled in, scanned twice), are ``deleted`` and never ``changed``.

    **The suite checks** that scan finds exactly what was seeded across several pages with
    correct aware-UTC ``created`` times; that ``delete`` removes exactly its targets
    (prefix isolation, odd names); one outcome per record given, in any order; that deleting
    what is gone is ``already_gone``; that batches above ``batch_size`` work; that refusals
    are ``refused`` without aborting the batch; that an injected fault leaves no record
    unaccounted for; that anonymize (when offered) keeps items; that ``survey`` (when a
    push-down backend offers it) counts what per-record ``decide`` selects; the guard, as
    above; that an item the scan cannot list is a ``Problem`` that stops neither the scan
    nor the deletion of the rest, and is never deleted; and that bad options raise
    :class:`~retention_core.ConfigError`.
    """

    page_size: ClassVar[int] = 50
    supports_newlines: ClassVar[bool] = True
    created_tolerance: ClassVar[timedelta] = timedelta(seconds=1)
    fault_isolated: ClassVar[bool] = True
    survey_items: ClassVar[int] = 30
    versioned: ClassVar[bool] = False
    detects_identical_recreate: ClassVar[bool] = True

    # -- hooks the author implements -------------------------------------------------------

    def recreate(self, location: str, created: datetime) -> datetime | None:
        raise NotImplementedError(f"{type(self).__name__} must implement recreate(location, created)")

    def modify(self, location: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement modify(location)")

    def seed_problem(self, location: str) -> None:
        raise NotImplementedError

    def lock(self, location: str) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} declares can_refuse but does not implement lock(location)")

    def fault(self, location: str) -> None:
        raise NotImplementedError

    # -- helpers of the suite --------------------------------------------------------------

    def _absent(self, source: Source, name: str) -> Record:
        location = self.to_location(name)
        assert location is not None, f"to_location({name!r}) must map a plain name"
        return Record(source=source.name, location=location, created=EPOCH)

    # -- scan ------------------------------------------------------------------------------

    def test_scan_empty(self, backend: Backend, source: Source) -> None:
        assert self._scan(backend, source) == {}

    def test_scan_finds_exactly_what_was_seeded_across_pages(self, backend: Backend, source: Source) -> None:
        names = [f"scan/item-{i:05d}.bin" for i in range(2 * self.page_size + 1)]
        expected = self._seed_all(self._locations(names))
        scanned = self._scan(backend, source)
        assert set(scanned) == set(expected), (
            f"missing {sorted(set(expected) - set(scanned))[:5]}, "
            f"unexpected {sorted(set(scanned) - set(expected))[:5]}")
        for location, record in scanned.items():
            assert record.source == source.name
            assert record.created.tzinfo is not None, f"{location!r}: created is naive"
            assert record.created.utcoffset() == timedelta(0), f"{location!r}: created is not UTC"
            drift = abs(record.created - expected[location])
            assert drift <= self.created_tolerance, (
                f"{location!r}: scanned created {record.created.isoformat()}, "
                f"seeded {expected[location].isoformat()}")

    def test_scan_reports_odd_names_verbatim(self, backend: Backend, source: Source) -> None:
        names = list(ODD_NAMES) + ([NEWLINE_NAME] if self.supports_newlines else [])
        expected = self._seed_all(self._locations(names))
        assert set(self._scan(backend, source)) == set(expected)

    def test_partitions_together_scan_exactly_the_source(self, backend: Backend, source: Source) -> None:
        """A distributed run scans each of ``partitions(source)`` on its own: together they must
        yield exactly what ``scan`` does (same keys and stamps, none twice, none missing), and
        the problems likewise; a partition travels between processes, so it is plain text."""
        names = ["top-level.txt", *(f"part-{p}/item-{i}" for p in "abc" for i in range(3)),
                 "part-a/deeper/item", "part-ab/item"]
        self._seed_all(self._locations(names))
        for broken in self._locations(["part-b/broken"]):
            try:
                self.seed_problem(broken)
            except NotImplementedError:
                pass
        whole = list(backend.scan(source))
        parts = backend.partitions(source)
        assert parts, "partitions() returned no partition"
        together: list[Record | Problem] = []
        for part in parts:
            assert isinstance(part, Partition), f"partitions() returned {part!r}, not a Partition"
            assert part.source == source.name, f"{part!r}: source must be {source.name!r}"
            assert isinstance(part.token, str) and isinstance(part.label, str) and part.label, f"{part!r}"
            items = backend.scan_partition(source, part)
            assert isinstance(items, collections.abc.Iterator), (
                f"scan_partition must be lazy, returned {type(items).__name__} for {part.label!r}")
            together.extend(items)

        def keyed(items: list[Record | Problem]) -> Counter[tuple[object, ...]]:
            return Counter((r.key, r.stamp, r.created) if isinstance(r, Record)
                           else ("problem", r.location, r.reason) for r in items)

        got, want = keyed(together), keyed(whole)
        assert got == want, (
            f"partitions {[p.label for p in parts]} yield "
            f"missing {sorted(map(str, (want - got).elements()))[:5]}, "
            f"extra or twice {sorted(map(str, (got - want).elements()))[:5]}")

    # -- delete ----------------------------------------------------------------------------

    def test_delete_removes_exactly_the_targets(self, backend: Backend, source: Source) -> None:
        targets = self._locations(f"del/target-{i}" for i in range(5))
        keep = self._locations(f"del/keep-{i}" for i in range(5))
        self._seed_all(targets + keep)
        records = self._records(backend, source, targets)
        outcomes = self._outcomes(backend.delete(records), records)
        assert self._statuses(outcomes) == {loc: Status.DELETED for loc in targets}
        assert [loc for loc in targets if self.exists(loc)] == []
        assert [loc for loc in keep if not self.exists(loc)] == []
        assert set(self._scan(backend, source)) == set(keep)

    def test_delete_empty_batch(self, backend: Backend, source: Source) -> None:
        assert list(backend.delete([])) == []

    def test_prefix_isolation(self, backend: Backend, source: Source) -> None:
        pairs = [(self.to_location(a), self.to_location(b)) for a, b in ISOLATION_PAIRS]
        usable = [(a, b) for a, b in pairs if a is not None and b is not None]
        assert usable, "to_location rejected every isolation pair"
        targets = [a for a, _ in usable]
        keep = [b for _, b in usable]
        self._seed_all(targets + keep)
        records = self._records(backend, source, targets)
        outcomes = self._outcomes(backend.delete(records), records)
        assert self._statuses(outcomes) == {loc: Status.DELETED for loc in targets}
        assert [loc for loc in keep if not self.exists(loc)] == [], "deleting one name removed its neighbour"
        assert [loc for loc in targets if self.exists(loc)] == []

    def test_delete_odd_names(self, backend: Backend, source: Source) -> None:
        names = list(ODD_NAMES) + ([NEWLINE_NAME] if self.supports_newlines else [])
        targets = self._locations(names)
        keep = self._locations(["plain-neighbour.txt"])
        self._seed_all(targets + keep)
        records = self._records(backend, source, targets)
        outcomes = self._outcomes(backend.delete(records), records)
        assert self._statuses(outcomes) == {loc: Status.DELETED for loc in targets}
        assert [loc for loc in targets if self.exists(loc)] == []
        assert all(self.exists(loc) for loc in keep)

    def test_delete_outcomes_in_any_order_one_per_record(self, backend: Backend, source: Source) -> None:
        present = self._locations(f"mixed/present-{i}" for i in range(4))
        self._seed_all(present)
        records = self._records(backend, source, present)
        gone = [self._absent(source, f"mixed/never-{i}") for i in range(3)]
        # Interleave existing and missing records: outcomes must still match one to one.
        batch = [r for pair in zip(records, gone, strict=False) for r in pair] + records[len(gone):]
        outcomes = self._outcomes(backend.delete(batch), batch)
        statuses = self._statuses(outcomes)
        assert statuses == {**{r.location: Status.DELETED for r in records},
                            **{r.location: Status.ALREADY_GONE for r in gone}}

    def test_deleting_what_is_gone_is_already_gone(self, backend: Backend, source: Source) -> None:
        locations = self._locations(["again/one", "again/two"])
        self._seed_all(locations)
        records = self._records(backend, source, locations)
        first = self._outcomes(backend.delete(records), records)
        assert set(self._statuses(first).values()) == {Status.DELETED}
        second = self._outcomes(backend.delete(records), records)
        assert self._statuses(second) == {loc: Status.ALREADY_GONE for loc in locations}
        for outcome in second.values():
            assert outcome.error is None, f"already_gone must not carry an error: {outcome.error!r}"

    def test_never_seeded_is_already_gone(self, backend: Backend, source: Source) -> None:
        batch = [self._absent(source, "never/was-here")]
        outcomes = self._outcomes(backend.delete(batch), batch)
        assert [o.status for o in outcomes.values()] == [Status.ALREADY_GONE]

    def test_batch_larger_than_batch_size(self, backend: Backend, source: Source) -> None:
        count = backend.batch_size + 1
        locations = self._locations(f"big/item-{i:06d}" for i in range(count))
        self._seed_all(locations)
        records = self._records(backend, source, locations)
        outcomes = self._outcomes(backend.delete(records), records)
        assert Counter(self._statuses(outcomes).values()) == {Status.DELETED: count}
        assert self._scan(backend, source) == {}

    # -- refusals and faults ---------------------------------------------------------------

    def test_refusal_is_refused_and_does_not_abort_the_batch(self, backend: Backend, source: Source) -> None:
        if not backend.can_refuse:
            pytest.skip(f"backend {backend.name!r} does not declare can_refuse")
        locations = self._locations(f"locked/item-{i}" for i in range(5))
        self._seed_all(locations)
        records = self._records(backend, source, locations)
        locked = locations[2]
        self.lock(locked)
        outcomes = self._outcomes(backend.delete(records), records)
        expected = {loc: Status.DELETED for loc in locations}
        expected[locked] = Status.REFUSED
        assert self._statuses(outcomes) == expected
        assert self.exists(locked), "a refused record must still exist"
        assert [loc for loc in locations if loc != locked and self.exists(loc)] == []

    def test_transient_fault_leaves_no_record_unaccounted_for(self, backend: Backend, source: Source) -> None:
        locations = self._locations(f"fault/item-{i}" for i in range(7))
        self._seed_all(locations)
        records = self._records(backend, source, locations)
        faulty = locations[len(locations) // 2]
        try:
            self.fault(faulty)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} does not implement fault(location)")
        outcomes = self._outcomes(backend.delete(records), records)
        for location, outcome in outcomes.items():
            # Retrying inside is allowed (deleted); giving up is allowed (failed). Either way
            # the outcome must be true to storage.
            assert outcome.status in (Status.DELETED, Status.FAILED), f"{location!r}: {outcome}"
            if outcome.status is Status.DELETED:
                assert not self.exists(location), f"{location!r} reported deleted but still exists"
            else:
                assert self.exists(location), f"{location!r} reported failed but is gone"
                assert outcome.error, f"{location!r}: a failed outcome must say why"
            if self.fault_isolated and location != faulty:
                assert outcome.status is Status.DELETED, f"the fault on {faulty!r} spilled onto {location!r}"
        # The fault was transient: deleting the leftovers again finishes the job.
        left = [o.record for o in outcomes.values() if o.status is Status.FAILED]
        again = self._outcomes(backend.delete(left), left)
        assert set(self._statuses(again).values()) <= {Status.DELETED}
        assert [loc for loc in locations if self.exists(loc)] == []

    # -- the guard: delete only what was seen ----------------------------------------------

    def test_guard_keeps_an_item_recreated_since_the_scan(self, backend: Backend, source: Source) -> None:
        batch, target = self._guarded_batch(backend, source, "recreated")
        self.recreate(target.location, datetime.now(timezone.utc).replace(microsecond=0))
        self._check_guarded(backend, source, batch, target, "re-created")

    def test_guard_keeps_an_item_recreated_with_the_same_created_time(self, backend: Backend,
                                                                      source: Source) -> None:
        """A file replaced by ``cp -p`` or ``touch -r``, a row deleted and inserted again with
        its old timestamp: a guard that compares the created time alone deletes the new item."""
        if not self.detects_identical_recreate:
            pytest.skip(f"{type(self).__name__} declares detects_identical_recreate = False")
        batch, target = self._guarded_batch(backend, source, "same-time")
        recorded = self.recreate(target.location, target.created)
        if recorded is None and not self.versioned:
            again = self._scan(backend, source)[target.location].created
            assert abs(again - target.created) <= self.created_tolerance, (
                f"recreate({target.location!r}, {target.created.isoformat()}) recorded {again.isoformat()}: "
                "the helper must keep the created time it is given")
        self._check_guarded(backend, source, batch, target, "re-created with the same created time")

    def test_guard_keeps_an_item_modified_since_the_scan(self, backend: Backend, source: Source) -> None:
        batch, target = self._guarded_batch(backend, source, "modified")
        self.modify(target.location)
        self._check_guarded(backend, source, batch, target, "modified")

    def test_guard_never_reports_changed_for_untouched_records(self, backend: Backend, source: Source) -> None:
        """No false positives: records nobody touched are ``deleted`` when handed over as the
        core hands them, after a second scan, and while their neighbours change."""
        targets = self._locations(f"untouched/item-{i}" for i in range(6))
        neighbours = self._locations(["untouched/item-modified", "untouched/item-recreated"])
        self._seed_all(targets + neighbours)
        records = [self._as_the_core_hands_it(r) for r in self._records(backend, source, targets)]
        self._scan(backend, source)  # scanning again changes nothing a guard may compare
        self.modify(neighbours[0])
        self.recreate(neighbours[1], EPOCH)
        outcomes = self._outcomes(backend.delete(records), records)
        assert self._statuses(outcomes) == {loc: Status.DELETED for loc in targets}, (
            "records untouched since the scan must be deleted: " + ", ".join(
                f"{o.record.location!r} {o.status} ({o.error})" for o in outcomes.values()
                if o.status is not Status.DELETED))
        assert [loc for loc in targets if self.exists(loc)] == []
        assert all(self.exists(loc) for loc in neighbours)

    def test_problem_is_reported_and_never_deleted(self, backend: Backend, source: Source) -> None:
        """An item the scan cannot list is a ``Problem``: the scan goes on past it, and deleting
        everything it listed leaves the item in storage."""
        good = self._locations(["problem/a-good", "problem/c-good"])
        [bad] = self._locations(["problem/b-bad"])
        self._seed_all(good[:1])
        try:
            self.seed_problem(bad)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} does not implement seed_problem(location)")
        self._seed_all(good[1:])
        problems: list[Problem] = []
        scanned = self._scan(backend, source, problems)
        assert problems, f"scan yielded no Problem for {bad!r}"
        for problem in problems:
            assert isinstance(problem.location, str) and problem.location, f"{problem!r}: no location"
            assert isinstance(problem.reason, str) and problem.reason.strip(), f"{problem!r}: no reason"
        assert bad not in scanned, f"{bad!r} was listed as a record as well as a problem"
        assert set(good) <= set(scanned), f"the scan stopped at the problem: found only {sorted(scanned)}"
        records = [self._as_the_core_hands_it(r) for r in scanned.values()]
        outcomes = self._outcomes(backend.delete(records), records)
        assert set(self._statuses(outcomes).values()) == {Status.DELETED}
        assert self.exists(bad), "the item behind a Problem must never be deleted"

    def _as_the_core_hands_it(self, record: Record) -> Record:
        """*record* as the core passes it to ``delete``: the category filled in from the policy,
        the subject from ``match`` when the backend gave none; location, version, created and
        stamp exactly as scanned. A guard must not compare what the core fills in."""
        subject = record.subject if record.subject is not None else record.location.split("/", 1)[0]
        return dataclasses.replace(record, category="conformance", subject=subject)

    def _guarded_batch(self, backend: Backend, source: Source, name: str) -> tuple[list[Record], Record]:
        """Seed ``guard/<name>`` between two neighbours and scan: (the batch, the middle record)."""
        locations = self._locations([f"guard/{name}-0", f"guard/{name}-1", f"guard/{name}-2"])
        self._seed_all(locations)
        batch = [self._as_the_core_hands_it(r) for r in self._records(backend, source, locations)]
        return batch, batch[1]

    def _check_guarded(self, backend: Backend, source: Source, batch: list[Record], target: Record,
                       what: str) -> None:
        """Delete *batch* after *target* was changed out of band: the rest ``deleted``, *target*
        ``changed`` and still there (on versioned storage its scanned version may go)."""
        statuses = self._statuses(self._outcomes(backend.delete(batch), batch))
        got = statuses.pop(target.location)
        assert statuses == {r.location: Status.DELETED for r in batch if r is not target}, (
            f"the untouched records of the batch must be deleted: {statuses}")
        assert self.exists(target.location), (
            f"{target.location!r} was {what} after the scan, and delete removed it (outcome {got})")
        if not self.versioned:
            assert got is Status.CHANGED, f"{target.location!r} was {what} after the scan: outcome {got}, not changed"
            return
        assert got in (Status.CHANGED, Status.DELETED), f"{target.location!r}: outcome {got}"
        versions = [r.version for r in backend.scan(source)
                    if isinstance(r, Record) and r.location == target.location]
        assert any(v != target.version for v in versions), (
            f"{target.location!r}: the version written after the scan is gone (left: {versions})")
        if got is Status.DELETED:
            assert target.version not in versions, f"{target.location!r}: version {target.version} reported deleted"

    # -- anonymize -------------------------------------------------------------------------

    def test_anonymize_keeps_items(self, backend: Backend, source: Source) -> None:
        if not backend.can_anonymize:
            pytest.skip(f"backend {backend.name!r} does not declare can_anonymize")
        locations = self._locations(f"anon/item-{i}" for i in range(3))
        self._seed_all(locations)
        records = self._records(backend, source, locations[:2])
        gone = [self._absent(source, "anon/never")]
        outcomes = self._outcomes(backend.anonymize(records + gone), records + gone)
        assert self._statuses(outcomes) == {records[0].location: Status.ANONYMIZED,
                                            records[1].location: Status.ANONYMIZED,
                                            gone[0].location: Status.ALREADY_GONE}
        assert all(self.exists(loc) for loc in locations), "anonymize must keep the items"

    # -- tally (a dry run's count of a plain source) ----------------------------------------

    def test_tally_counts_what_the_scan_lists(self, backend: Backend, source: Source) -> None:
        """``tally`` stands in for the scan in a dry run: the same records counted, the same
        split at the cutoff (items created exactly at it, and a microsecond either side, are
        due, due and kept), the same Problems."""
        if not backend.can_tally:
            pytest.skip(f"backend {backend.name!r} does not declare can_tally")
        self._seed_all(self._locations([f"tally/item-{i:03d}" for i in range(6)]))
        try:
            self.seed_problem(self._locations(["tally/problem"])[0])
        except NotImplementedError:
            pass
        problems: list[Problem] = []
        records = list(self._scan(backend, source, problems).values())
        instants = sorted({r.created for r in records})
        assert len(instants) >= 3, "the tally test needs items created at three different instants"
        middle = instants[len(instants) // 2]
        for cutoff in (instants[0] - timedelta(days=1), middle - timedelta(microseconds=1), middle,
                       middle + timedelta(microseconds=1), instants[-1] + timedelta(days=1)):
            told: list[Problem] = []
            got = backend.tally(source, cutoff, told.append)
            due = sum(r.created <= cutoff for r in records)
            assert (got.total, got.due) == (len(records), due), (
                f"cutoff {cutoff.isoformat()}: tally counted total/due {got.total}/{got.due}, "
                f"the scan {len(records)}/{due}")
            assert sorted((p.location, p.reason) for p in told) == sorted((p.location, p.reason) for p in problems), (
                f"cutoff {cutoff.isoformat()}: tally told problems {told!r}, the scan yielded {problems!r}")


    def test_survey_counts_what_decide_selects(self, backend: Backend, source: Source) -> None:
        """``survey`` is what the safety limits trust instead of a scan: its counts must be
        exactly the per-record ones, at the cutoff instant itself, under holds, erasure
        requests and service-end clocks, and with the whole source held."""
        if not backend.can_push_down:
            pytest.skip(f"backend {backend.name!r} does not declare can_push_down")
        names = [f"{SURVEY_SUBJECTS[i % len(SURVEY_SUBJECTS)]}/item-{i:05d}" for i in range(self.survey_items)]
        self._seed_all(self._locations(names))
        records = list(self._scan(backend, source).values())
        assert len(records) >= 3, "the survey test needs at least three seeded items"
        checked = []
        for label, category, ctx in self._survey_situations(source, records):
            surveyed = dataclasses.replace(source, category=category.name)
            plan = cutoffs(surveyed, ctx)
            try:
                got = backend.survey(surveyed, plan)
            except NotImplementedError:
                pytest.skip(f"backend {backend.name!r} does not implement survey")
            expected = self._expected_survey(records, category, ctx, plan)
            assert isinstance(got, Survey), f"{label}: survey returned {got!r}, not a Survey"
            assert (got.total, got.due, got.held) == (expected.total, expected.due, expected.held), (
                f"{label}: survey counted total/due/held {got.total}/{got.due}/{got.held}, "
                f"per-record decide {expected.total}/{expected.due}/{expected.held}")
            assert dict(got.held_by_subject) == dict(expected.held_by_subject), (
                f"{label}: held_by_subject {dict(got.held_by_subject)}, expected {dict(expected.held_by_subject)}")
            checked.append(expected)
        assert any(0 < e.due < e.total for e in checked), "no situation split the records into due and kept"

    def _survey_situations(self, source: Source, records: list[Record]) -> list[tuple[str, Category, Context]]:
        """(label, category, context) cases; the cutoff falls exactly on a seeded instant."""
        by_created = sorted(r.created for r in records)
        boundary = by_created[len(by_created) // 2]
        created = Category("conformance", parse_duration("30d"), action=Action.DELETE)
        ended = Category("conformance", parse_duration("30d"), after="service_end", action=Action.DELETE)
        now = boundary + timedelta(days=30)
        subjects = {
            "held": Subject("held", service_ended_at=now - timedelta(days=400)),
            "asked": Subject("asked"),
            "ended": Subject("ended", service_ended_at=now - timedelta(days=31)),
            "active": Subject("active"),
        }
        request = ErasureRequest("R-1", "asked", "conformance", now - timedelta(days=1), now + timedelta(days=29))
        holds = (Hold("H-subject", "legal", HoldScope(subject="held"), "conformance"),
                 Hold("H-nobody", "legal", HoldScope(subject="nobody-has-this"), "conformance"))
        source_hold = (Hold("H-source", "legal", HoldScope(source=source.name), "conformance"),)

        def ctx(category: Category, when: datetime = now, holds: tuple[Hold, ...] = (),
                known: bool = True) -> Context:
            return Context(now=when, categories={category.name: category}, subjects=subjects if known else {},
                           holds=holds, requests={"asked": request} if known else {})

        return [
            ("by created, up to the cutoff instant", created, ctx(created, known=False)),
            ("by created, with a held subject and an erasure request", created, ctx(created, holds=holds)),
            ("by service end", ended, ctx(ended, holds=holds)),
            ("the whole source held", created, ctx(created, holds=holds + source_hold)),
            ("nothing due yet", created, ctx(created, when=by_created[0] + timedelta(days=29), known=False)),
            ("everything due", created, ctx(created, when=by_created[-1] + timedelta(days=31), known=False)),
        ]

    def _expected_survey(self, records: list[Record], category: Category, ctx: Context, plan: Cutoffs) -> Survey:
        """The counts per record: ``decide`` for due, the plan's holds for held."""
        decided = [dataclasses.replace(r, category=category.name) for r in records]
        due = sum(decide(r, ctx).action is category.action for r in decided)
        assert due == sum(plan.due(r.subject, r.created) for r in decided), "engine.cutoffs disagrees with decide"
        if plan.held:
            return Survey(total=len(records), due=due, held=len(records))
        held = Counter(r.subject for r in records if r.subject is not None and r.subject in plan.held_subjects)
        return Survey(total=len(records), due=due, held=sum(held.values()), held_by_subject=dict(held))

    # -- options ---------------------------------------------------------------------------

    def test_bad_options_are_config_errors(self, backend: Backend) -> None:
        with pytest.raises(ConfigError):
            type(backend)(Options({"surely_not_an_option_of_any_backend": 1}))

