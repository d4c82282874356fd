"""``InMemoryBackend``: the reference backend, kept in process-wide named stores.

It exists so the conformance suite has an implementation that passes it by construction,
and so the core (scheduler, CLI) can be tested without any storage. Tests seed and inspect
a store *out of band* with the module functions (:func:`seed`, :func:`exists`, :func:`lock`,
:func:`fault`), never through the backend, exactly as a plugin author's tests use a native
client. A config selects a store by name::

    sources:
      - {name: calls, backend: memory, options: {store: calls}, match: '(?P<subject>[^/]+)/.*'}
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from ..backend import Backend
from ..model import Outcome, Record, Source, Status
from ..options import Options

__all__ = [
    "InMemoryBackend",
    "MemoryStore",
    "StoredItem",
    "exists",
    "fault",
    "get_store",
    "lock",
    "reset",
    "seed",
    "unlock",
]


class TransientFault(Exception):
    """What an injected fault raises inside the store; the backend reports it as ``failed``."""


@dataclass
class StoredItem:
    """One item in a memory store. ``fields`` is free-form data that anonymize strips."""

    created: datetime
    size: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    anonymized: bool = False


@dataclass
class MemoryStore:
    """A named bag of items plus the storage behaviours tests need to provoke."""

    name: str
    items: dict[str, StoredItem] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    faults: dict[str, int] = field(default_factory=dict)
    #: Every operation the backend performed, e.g. ``("delete", location)``; tests assert on it.
    calls: list[tuple[str, str]] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _trip(self, location: str) -> None:
        """Raise once per pending injected fault on *location*."""
        left = self.faults.get(location, 0)
        if left:
            if left == 1:
                del self.faults[location]
            else:
                self.faults[location] = left - 1
            raise TransientFault(f"injected transient fault on {location!r}")


_STORES: dict[str, MemoryStore] = {}
_STORES_MUTEX = threading.Lock()


def get_store(name: str) -> MemoryStore:
    """The store called *name*, created empty on first use."""
    with _STORES_MUTEX:
        if name not in _STORES:
            _STORES[name] = MemoryStore(name)
        return _STORES[name]


def reset(name: str | None = None) -> None:
    """Forget the store *name*, or every store; tests call this between cases."""
    with _STORES_MUTEX:
        if name is None:
            _STORES.clear()
        else:
            _STORES.pop(name, None)


def seed(store: str, location: str, created: datetime, *, size: int = 0,
         fields: Mapping[str, Any] | None = None) -> None:
    """Put an item at *location* in *store* (out of band). *created* must be aware."""
    if created.tzinfo is None:
        raise ValueError(f"created must be timezone-aware, found naive {created.isoformat()}")
    target = get_store(store)
    with target.mutex:
        target.items[location] = StoredItem(created.astimezone(timezone.utc), size, dict(fields or {}))


def exists(store: str, location: str) -> bool:
    """Whether *location* is in *store*, checked without the backend."""
    return location in get_store(store).items


def item(store: str, location: str) -> StoredItem | None:
    """The stored item at *location*, e.g. to check that anonymize stripped its fields."""
    return get_store(store).items.get(location)


def lock(store: str, location: str) -> None:
    """Make storage refuse to delete or anonymize *location* (an Object Lock, say)."""
    target = get_store(store)
    with target.mutex:
        target.locked.add(location)


def unlock(store: str, location: str) -> None:
    target = get_store(store)
    with target.mutex:
        target.locked.discard(location)


def fault(store: str, location: str, times: int = 1) -> None:
    """Make the next *times* operations on *location* fail transiently."""
    target = get_store(store)
    with target.mutex:
        target.faults[location] = target.faults.get(location, 0) + times


class InMemoryBackend(Backend):
    """Reference backend: items of a named in-process store.

    Options: ``store`` (name, required), ``page_size`` (items per scan page, default 100).
    Refusals come from :func:`lock`; ``failed`` outcomes from :func:`fault` (never retried
    here, so the core's handling of failures can be tested). Anonymize clears an item's
    ``fields`` and keeps it.
    """

    name: ClassVar[str] = "memory"
    batch_size = 100
    can_refuse: ClassVar[bool] = True
    can_anonymize: ClassVar[bool] = True

    def __init__(self, options: Options) -> None:
        self.store_name: str = options.str("store")
        self.page_size: int = options.int("page_size", 100, minimum=1)
        options.done()

    @property
    def store(self) -> MemoryStore:
        return get_store(self.store_name)

    def scan(self, source: Source) -> Iterator[Record]:
        # Page through a sorted key space like a real listing, so items added or removed
        # while scanning behave as they would in object storage (no snapshot of everything).
        after: str | None = None
        while True:
            store = self.store
            with store.mutex:
                keys = sorted(k for k in store.items if after is None or k > after)[: self.page_size]
                page = [(k, store.items[k]) for k in keys]
                store.calls.append(("list", after or ""))
            if not page:
                return
            for location, stored in page:
                yield Record(source=source.name, location=location, created=stored.created,
                             size=stored.size)
            after = page[-1][0]

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            yield self._apply(record, "delete")

    def anonymize(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            yield self._apply(record, "anonymize")

    def _apply(self, record: Record, operation: str) -> Outcome:
        store = self.store
        with store.mutex:
            store.calls.append((operation, record.location))
            try:
                store._trip(record.location)
            except TransientFault as exc:
                return Outcome(record, Status.FAILED, str(exc))
            if record.location not in store.items:
                return Outcome(record, Status.ALREADY_GONE)
            if record.location in store.locked:
                return Outcome(record, Status.REFUSED, f"{record.location!r} is locked by storage")
            if operation == "delete":
                del store.items[record.location]
                return Outcome(record, Status.DELETED)
            stored = store.items[record.location]
            stored.fields.clear()
            stored.anonymized = True
            return Outcome(record, Status.ANONYMIZED)
