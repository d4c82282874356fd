"""The guard tests on versioned storage (``versioned = True``): deleting the scanned version
after a new one was written is allowed, deleting the new one is not.

The reference is a tiny versioned store (every write adds a version, as an S3 versioned
bucket does; ``delete`` removes the version the record names). Its broken twin deletes the
current version whatever the record names — a bare ``DeleteObject`` on a versioned bucket.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime

import pytest

from retention_core import Backend, Options, Outcome, Record, Source, Status
from retention_core.testing import BackendConformanceTests

GUARD_TESTS = ["test_guard_keeps_an_item_recreated_since_the_scan",
               "test_guard_keeps_an_item_recreated_with_the_same_created_time",
               "test_guard_keeps_an_item_modified_since_the_scan",
               "test_guard_never_reports_changed_for_untouched_records"]

#: location -> [(version id, created)], oldest first; one store per test, by name.
STORES: dict[str, dict[str, list[tuple[str, datetime]]]] = {}
_ids = itertools.count(1)


class VersionedMemory(Backend):
    """Options: ``store``. One record per version; delete removes exactly the named version."""

    name = "versioned-memory"

    def __init__(self, options: Options) -> None:
        self.store = STORES.setdefault(options.str("store"), {})
        options.done()

    def scan(self, source: Source) -> Iterator[Record]:
        for location in sorted(self.store):
            for version, created in list(self.store[location]):
                yield Record(source.name, location, created, version=version, stamp=version)

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            versions = self.store.get(record.location, [])
            doomed = self.victim(record, versions)
            if doomed is None:
                yield Outcome(record, Status.ALREADY_GONE)
                continue
            versions.remove(doomed)
            if not versions:
                del self.store[record.location]
            yield Outcome(record, Status.DELETED)

    def victim(self, record: Record, versions: list[tuple[str, datetime]]) -> tuple[str, datetime] | None:
        return next((v for v in versions if v[0] == record.version), None)


class DeletesTheCurrentVersion(VersionedMemory):
    def victim(self, record: Record, versions: list[tuple[str, datetime]]) -> tuple[str, datetime] | None:
        return versions[-1] if versions else None


class VersionedSuite(BackendConformanceTests):
    versioned = True
    store = ""

    def _write(self, location: str, created: datetime) -> None:
        STORES.setdefault(self.store, {}).setdefault(location, []).append((f"v{next(_ids)}", created))

    def seed(self, location: str, created: datetime) -> None:
        self._write(location, created)

    def exists(self, location: str) -> bool:
        return bool(STORES.get(self.store, {}).get(location))

    def recreate(self, location: str, created: datetime) -> None:
        self._write(location, created)  # on a versioned store the old version stays, noncurrent

    def modify(self, location: str) -> None:
        self._write(location, STORES[self.store][location][-1][1])


def run(backend_class: type[VersionedMemory], test_name: str) -> None:
    suite = VersionedSuite()
    suite.store = f"versioned-{next(_ids)}"
    backend = backend_class(Options({"store": suite.store}))
    try:
        getattr(suite, test_name)(backend, Source(name="conformance", backend=backend.name))
    finally:
        STORES.pop(suite.store, None)


@pytest.mark.parametrize("test_name", GUARD_TESTS)
def test_deleting_the_scanned_version_passes(test_name: str) -> None:
    run(VersionedMemory, test_name)


@pytest.mark.parametrize("test_name", GUARD_TESTS[:3])
def test_deleting_the_version_written_after_the_scan_fails(test_name: str) -> None:
    with pytest.raises(AssertionError, match="written after the scan is gone"):
        run(DeletesTheCurrentVersion, test_name)
