"""``InMemoryBackend``: the reference backend, kept in process-wide named stores.

It exists so the conformance suite has an implementation that passes it by construction,
and so the core (scheduler, CLI) can be tested without any storage. Tests seed and inspect
a store *out of band* with the module functions (:func:`seed`, :func:`exists`, :func:`lock`,
:func:`fault`, :func:`recreate`, :func:`modify`, :func:`seed_problem`), never through the
backend, exactly as a plugin author's tests use a native client. A config selects a store
by name::

    sources:
      - {name: calls, backend: memory, options: {store: calls}, match: '(?P<subject>[^/]+)/.*'}

The module is also the plugin that registers the backend: ``load_plugins(extra=[memory])``
(the kit's fixtures do). Production never registers it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from .. import BackendRegistry, hookimpl
from ..backend import Backend, Partition
from ..model import Outcome, Problem, Record, Source, Status
from ..options import Options

__all__ = [
    "InMemoryBackend",
    "MemoryStore",
    "StoredItem",
    "exists",
    "fault",
    "get_store",
    "lock",
    "modify",
    "recreate",
    "reset",
    "seed",
    "seed_problem",
    "unlock",
]


class TransientFault(Exception):
    """What an injected fault raises inside the store; the backend reports it as ``failed``."""


@dataclass
class StoredItem:
    """One item in a memory store. ``fields`` is free-form data that anonymize strips.

    ``generation`` is unique within the store and changes on every write (seed, re-create,
    modify, anonymize): the scan hands it out as the record's ``stamp`` and the guard
    compares it, so a write since the scan is seen even when nothing else differs.
    ``problem`` marks an item the scan cannot list as a record (it yields a
    :class:`~retention_core.model.Problem` with that reason instead).
    """

    created: datetime
    size: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    anonymized: bool = False
    generation: int = 0
    problem: str | None = None


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
    #: The last generation handed out (see :attr:`StoredItem.generation`).
    generation: int = 0

    def put(self, location: str, stored: StoredItem) -> None:
        """Store *stored* at *location* under a new generation (the caller holds ``mutex``)."""
        self.generation += 1
        stored.generation = self.generation
        self.items[location] = stored

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
        target.put(location, StoredItem(created.astimezone(timezone.utc), size, dict(fields or {})))


def recreate(store: str, location: str, created: datetime, *, size: int = 0,
             fields: Mapping[str, Any] | None = None) -> None:
    """Remove the item at *location* and write a new one created at *created* (out of band).

    What an application does when it deletes a record and inserts another under the same
    name: even with the same *created*, it is not the item a scan saw before.
    """
    seed(store, location, created, size=size, fields=fields)


def modify(store: str, location: str, **fields: Any) -> None:
    """Change the item at *location* in place (new *fields*, one byte larger), keeping its
    created time: a write since the scan that the guard must see."""
    target = get_store(store)
    with target.mutex:
        stored = target.items[location]
        stored.fields.update(fields or {"modified": True})
        stored.size += 1
        target.put(location, stored)


def seed_problem(store: str, location: str, reason: str = "created is not a valid time") -> None:
    """Put an item at *location* that the scan cannot list as a record (a NULL ``created``,
    an unreadable entry): the backend yields a :class:`~retention_core.model.Problem`."""
    target = get_store(store)
    with target.mutex:
        target.put(location, StoredItem(datetime.min.replace(tzinfo=timezone.utc), problem=reason))


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
    ``fields`` and keeps it. Items marked by :func:`seed_problem` are yielded as
    :class:`~retention_core.model.Problem`.

    The guard: each record's ``stamp`` is its item's generation at scan time; delete and
    anonymize act only when the item still has that generation, checked and applied under
    the store's lock, else the outcome is ``changed``. A record without a stamp did not come
    from this backend's scan (or lost its stamp on the way), so nothing says what was seen:
    it is ``changed`` too, never deleted.
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

    def partitions(self, source: Source) -> list[Partition]:
        """One partition per first path segment (``calls/…``), plus one for the items whose
        location has no ``/``: what the fs backend does with top-level directories."""
        store = self.store
        with store.mutex:
            firsts = sorted({loc.split("/", 1)[0] if "/" in loc else None for loc in store.items},
                            key=lambda first: (first is not None, first or ""))
        return [Partition(source.name, json.dumps({"prefix": f"{first}/"}), f"prefix {first}/")
                if first is not None else Partition(source.name, json.dumps({"root": True}), "items at the top")
                for first in firsts] or super().partitions(source)

    def scan_partition(self, source: Source, partition: Partition) -> Iterator[Record | Problem]:
        if partition.token == "":
            return self.scan(source)
        token = json.loads(partition.token)
        prefix: str | None = token.get("prefix")
        if prefix is not None:
            return self._scan(source, lambda loc: loc.startswith(prefix))
        return self._scan(source, lambda loc: "/" not in loc)

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        return self._scan(source, lambda loc: True)

    def _scan(self, source: Source, wanted: Callable[[str], bool]) -> Iterator[Record | Problem]:
        # Page through a sorted key space like a real listing, so items added or removed
        # while scanning behave as they would in object storage (no snapshot of everything).
        after: str | None = None
        while True:
            store = self.store
            with store.mutex:
                keys = sorted(k for k in store.items
                              if (after is None or k > after) and wanted(k))[: self.page_size]
                page = [(k, store.items[k], store.items[k].generation) for k in keys]
                store.calls.append(("list", after or ""))
            if not page:
                return
            for location, stored, generation in page:
                if stored.problem is not None:
                    yield Problem(source.name, location, stored.problem)
                else:
                    yield Record(source=source.name, location=location, created=stored.created,
                                 size=stored.size, stamp=str(generation))
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
            stored = store.items.get(record.location)
            if stored is None:
                return Outcome(record, Status.ALREADY_GONE)
            if record.stamp != str(stored.generation):
                seen = "no stamp" if record.stamp is None else f"generation {record.stamp}"
                return Outcome(record, Status.CHANGED,
                               f"{record.location!r} is generation {stored.generation}, the scan saw {seen}")
            if record.location in store.locked:
                return Outcome(record, Status.REFUSED, f"{record.location!r} is locked by storage")
            if operation == "delete":
                del store.items[record.location]
                return Outcome(record, Status.DELETED)
            stored.fields.clear()
            stored.anonymized = True
            store.put(record.location, stored)
            return Outcome(record, Status.ANONYMIZED)


@hookimpl
def retention_register_backends(register: BackendRegistry) -> None:
    """The ``memory`` backend, for whoever loads this module as a plugin (tests, never production)."""
    register(InMemoryBackend)
