"""Turning S3 listings into Records, and a cheap look at what a batch's keys hold right now.

Everything comes from listings (key, size, LastModified, version id): never a HEAD per
object. Pages are fetched lazily, so memory stays flat however large the bucket is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retention_core import BackendError, Record

from .client import describe
from .settings import S3Settings

#: Listing pages one batch's look-up may read before giving up on the rest of its keys.
INVENTORY_PAGE_BUDGET = 4
#: Keys tried one by one to find an existing key to start a versions listing after.
ANCHOR_TRIES = 8


def utc(value: datetime) -> datetime:
    """botocore's tzutc datetimes as plain aware UTC (our own parser's already are)."""
    if value.tzinfo is timezone.utc:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def scan_current(client: Any, settings: S3Settings, source: str) -> Iterator[Record]:
    """Current objects under the prefix (``list_objects_v2``), one Record each."""
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=settings.prefix, PaginationConfig={"PageSize": settings.page_size})
    for page in _pages(pages, settings, "ListObjectsV2"):
        for obj in page.get("Contents", ()):
            yield Record(source=source, location=obj["Key"], created=utc(obj["LastModified"]),
                         size=obj.get("Size"))


def scan_versions(client: Any, settings: S3Settings, source: str) -> Iterator[Record]:
    """Every object version under the prefix (``list_object_versions``); delete markers are not data."""
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=settings.bucket, Prefix=settings.prefix, PaginationConfig={"PageSize": settings.page_size})
    for page in _pages(pages, settings, "ListObjectVersions"):
        for version in page.get("Versions", ()):
            yield Record(source=source, location=version["Key"], created=utc(version["LastModified"]),
                         size=version.get("Size"), version=version["VersionId"])


def _pages(pages: Any, settings: S3Settings, operation: str) -> Iterator[dict[str, Any]]:
    iterator = iter(pages)
    while True:
        try:
            page = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise BackendError(f"{settings.where}: {operation} failed: {describe(exc)}") from exc
        yield page


# -- what a batch's keys hold right now ---------------------------------------------------------


@dataclass
class KeyState:
    """What one key holds: real versions (id → LastModified; ``None`` id when unversioned) and markers."""

    versions: dict[str | None, datetime] = field(default_factory=dict)
    markers: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    """A listing of a batch's key range. Keys outside :meth:`known` were not looked at."""

    keys: dict[str, KeyState] = field(default_factory=dict)
    exact: set[str] = field(default_factory=set)  # looked up one by one
    after: str | None = None  # the range listing covered keys > after ...
    upto: str | None = None  # ... and <= upto (None: no range was covered) ...
    before: str | None = None  # ... or, when set, only keys < before

    def known(self, key: str) -> bool:
        if key in self.exact:
            return True
        if self.upto is None or (self.after is not None and key <= self.after):
            return False
        return key < self.before if self.before is not None else key <= self.upto

    def state(self, key: str) -> KeyState:
        return self.keys.get(key) or KeyState()


def _range_prefix(keys: Sequence[str]) -> str:
    return os.path.commonprefix([keys[0], keys[-1]])


def inventory_current(client: Any, settings: S3Settings, keys: Sequence[str]) -> Inventory:
    """List the sorted *keys*' range with ``list_objects_v2`` (StartAfter is exclusive everywhere)."""
    inv = Inventory()
    first, last = keys[0], keys[-1]
    kwargs: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": _range_prefix(keys),
                              "PaginationConfig": {"PageSize": settings.page_size}}
    if first[:-1]:
        kwargs["StartAfter"] = first[:-1]  # strictly before the first key
    pages = client.get_paginator("list_objects_v2").paginate(**kwargs)
    seen = None
    for count, page in enumerate(pages, start=1):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if key > last:
                inv.upto = last
                return inv
            inv.keys.setdefault(key, KeyState()).versions[None] = utc(obj["LastModified"])
            seen = key
        if not page.get("IsTruncated"):
            inv.upto = last
            return inv
        if count >= INVENTORY_PAGE_BUDGET:
            break
    inv.upto = seen  # every key up to the last one listed is known
    return inv


def exact_versions(client: Any, settings: S3Settings, key: str) -> KeyState:
    """Every version and delete marker of exactly *key*."""
    state = KeyState()
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=settings.bucket, Prefix=key, PaginationConfig={"PageSize": settings.page_size})
    for page in pages:
        beyond = False
        for version in page.get("Versions", ()):
            if version["Key"] == key:
                state.versions[version["VersionId"]] = utc(version["LastModified"])
            else:
                beyond = True
        for marker in page.get("DeleteMarkers", ()):
            if marker["Key"] == key:
                state.markers.append(marker["VersionId"])
            else:
                beyond = True
        if beyond:  # longer keys sharing the prefix sort after it: key is complete
            break
    return state


def inventory_versions(client: Any, settings: S3Settings, keys: Sequence[str]) -> Inventory:
    """List the sorted *keys*' versions and delete markers.

    The range listing starts after an existing key (``KeyMarker``), found by looking up the
    first keys one by one. Starting after a key that exists reads the same on S3 and on
    stores that treat ``KeyMarker`` loosely (moto skips one extra entry otherwise).
    """
    inv = Inventory()
    anchor = None
    for key in keys[:ANCHOR_TRIES]:
        state = exact_versions(client, settings, key)
        inv.keys[key] = state
        inv.exact.add(key)
        if state.versions or state.markers:
            anchor = key
            break
    if anchor is None or anchor == keys[-1]:
        return inv
    last = keys[-1]
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=settings.bucket, Prefix=_range_prefix(keys), KeyMarker=anchor,
        PaginationConfig={"PageSize": settings.page_size})
    inv.after = anchor
    for count, page in enumerate(pages, start=1):
        done = False
        for version in page.get("Versions", ()):
            key = version["Key"]
            if key > last:
                done = True
            elif key > anchor:
                inv.keys.setdefault(key, KeyState()).versions[version["VersionId"]] = utc(version["LastModified"])
        for marker in page.get("DeleteMarkers", ()):
            key = marker["Key"]
            if key > last:
                done = True
            elif key > anchor:
                inv.keys.setdefault(key, KeyState()).markers.append(marker["VersionId"])
        if done or not page.get("IsTruncated"):
            inv.upto = last
            return inv
        if count >= INVENTORY_PAGE_BUDGET:
            # The page's last key may continue on the next page: only keys before it are complete.
            boundary = page.get("NextKeyMarker")
            if boundary:
                inv.upto, inv.before = last, boundary
                for key in [k for k in inv.keys if k >= boundary and k not in inv.exact]:
                    del inv.keys[key]
            return inv
    inv.upto = last
    return inv
