"""A source split by prefix: found with one delimited listing, listed in parallel.

Paging through one listing is a conversation: the next page cannot be asked for before the
last one came back and was parsed. Listing several prefixes at once keeps both ends busy.
:func:`discover` lists the source's prefix with ``Delimiter="/"``: every common prefix is a
part, and the keys directly under the prefix (no ``/`` after it) are one more. Together the
parts hold exactly the keys under the source's prefix, each key in one part. A level with a
single common prefix and nothing else is descended into (a bucket whose keys all sit under
``data/`` still splits). A level too wide to discover in a few pages (a flat bucket) is not
split at all: the whole source is then one part, listed once, as before.

:func:`in_parallel` lists parts on a few threads and yields their records in whatever order
pages arrive, holding at most a few pages in memory (a bounded queue).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from retention_core import Problem, Record

from .listing import DELIMITER, pages_of
from .settings import S3Settings

T = TypeVar("T")

#: Discovery pages read at one level before giving up on splitting it; a page holding more
#: keys than prefixes gives up at once (a flat level: discovering it would list it twice).
DISCOVERY_PAGES = 5
#: Levels descended while a level holds one common prefix and no key of its own.
MAX_DEPTH = 4
#: Records handed over from a listing thread at a time.
HANDOVER = 1000


@dataclass(frozen=True)
class Part:
    """Keys under ``prefix``; ``direct``: only those with no delimiter after it."""

    prefix: str
    direct: bool = False

    def token(self) -> str:
        return json.dumps({"prefix": self.prefix, "direct": self.direct}, ensure_ascii=False)

    def label(self) -> str:
        return f"keys directly under {self.prefix!r}" if self.direct else f"prefix {self.prefix!r}"

    @classmethod
    def parse(cls, token: str) -> Part:
        """The part a :meth:`token` names; ValueError for anything else."""
        try:
            data = json.loads(token)
            prefix, direct = data["prefix"], data["direct"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not an S3 prefix partition: {token!r}") from exc
        if not isinstance(prefix, str) or not isinstance(direct, bool):
            raise ValueError(f"not an S3 prefix partition: {token!r}")
        return cls(prefix, direct)


def discover(client: Any, settings: S3Settings, versioned: bool) -> list[Part]:
    """The source's parts; a single ``Part(settings.prefix)`` when it cannot be split."""
    prefix = settings.prefix
    for _ in range(MAX_DEPTH):
        found = _level(client, settings, prefix, versioned)
        if found is None:
            return [Part(prefix)]
        subs, direct = found
        if len(subs) == 1 and not direct:
            prefix = subs[0]
            continue
        return ([Part(prefix, direct=True)] if direct else []) + [Part(p) for p in subs]
    return [Part(prefix)]


def _level(client: Any, settings: S3Settings, prefix: str, versioned: bool) -> tuple[list[str], bool] | None:
    """Common prefixes directly under *prefix*, and whether any key sits there itself; None: too wide."""
    operation = "list_object_versions" if versioned else "list_objects_v2"
    pages = client.get_paginator(operation).paginate(
        Bucket=settings.bucket, Prefix=prefix, Delimiter=DELIMITER,
        PaginationConfig={"PageSize": settings.page_size})
    subs: list[str] = []
    direct = False
    for count, page in enumerate(pages_of(pages, settings, "ListObjectVersions" if versioned else "ListObjectsV2"),
                                 start=1):
        found = [p["Prefix"] for p in page.get("CommonPrefixes", ())]
        keys = len(page.get("Contents", ())) + len(page.get("Versions", ())) + len(page.get("DeleteMarkers", ()))
        subs += found
        direct = direct or keys > 0
        if not page.get("IsTruncated"):
            return subs, direct
        if count >= DISCOVERY_PAGES or keys > len(found):  # mostly keys of its own: a flat level
            return None
    return subs, direct


def split(parts: Sequence[Part], n: int) -> list[tuple[str | None, str | None]]:
    """At most *n* contiguous key ranges ``[lower, upper)`` covering the whole keyspace, cut at
    prefixes among *parts* (so each range is a run of whole prefixes; keys directly under the
    source's prefix fall into whichever range their name sorts into)."""
    subs = sorted(p.prefix for p in parts if not p.direct)
    n = max(1, min(n, len(subs)))
    cuts = [subs[len(subs) * i // n] for i in range(1, n)]
    bounds: list[str | None] = [None, *cuts, None]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def in_parallel(parts: Sequence[T], list_part: Callable[[T], Iterator[Record | Problem]],
                threads: int) -> Iterator[Record | Problem]:
    """Every record of every part (a :class:`Part`, a key range …), listed on up to *threads* threads.

    Memory is bounded: each thread hands over at most :data:`HANDOVER` records at a time and
    the queue holds two hand-overs per thread. The first error of any part is raised here
    (after the other threads stopped); closing the generator early stops them too.
    """
    if len(parts) <= 1 or threads <= 1:
        for part in parts:
            yield from list_part(part)
        return
    workers = min(threads, len(parts))
    handed: queue.Queue[Any] = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()
    todo = iter(parts)
    todo_lock = threading.Lock()
    finished = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                with todo_lock:
                    part = next(todo, None)
                if part is None:
                    break
                batch: list[Record | Problem] = []
                for item in list_part(part):
                    batch.append(item)
                    if len(batch) >= HANDOVER:
                        if not put(batch):
                            return
                        batch = []
                if batch and not put(batch):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        put(finished)

    pool = [threading.Thread(target=work, name=f"retention-s3-list-{i}", daemon=True) for i in range(workers)]
    for thread in pool:
        thread.start()
    try:
        done = 0
        while done < workers:
            item = handed.get()
            if item is finished:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield from item
    finally:
        stop.set()
        for thread in pool:
            thread.join()
