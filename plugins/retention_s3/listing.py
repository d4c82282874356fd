"""Turning S3 listings into Records, and a cheap look at what a batch's keys hold right now.

Everything comes from listings (key, size, LastModified, ETag, version id): never a HEAD
per object. Pages are fetched lazily, so memory stays flat however large the bucket is.
botocore asks for ``EncodingType=url`` on every listing and decodes the keys itself, so
keys holding characters XML cannot carry (``\x01``) list intact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retention_core import BackendError, Problem, Record

from .client import describe, unreachable
from .guard import Seen, xml_safe
from .settings import S3Settings

#: Listing pages one batch's look-up may read before giving up on the rest of its keys.
INVENTORY_PAGE_BUDGET = 4
#: What folders are made of: the delimiter of the listings that find a source's prefixes.
DELIMITER = "/"
#: Keys tried one by one to find an existing key to start a versions listing after.
ANCHOR_TRIES = 8


def utc(value: datetime) -> datetime:
    """botocore's tzutc datetimes as plain aware UTC (our own parser's already are).

    Raises TypeError for anything but a datetime (an unparseable date comes through as text).
    """
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {value!r}")
    if value.tzinfo is timezone.utc:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def scan_current(client: Any, settings: S3Settings, source: str, prefix: str | None = None,
                 direct: bool = False) -> Iterator[Record | Problem]:
    """Current objects under *prefix* (the source's by default) with ``list_objects_v2``, one
    Record each; *direct*: only keys with no ``/`` after the prefix (a delimited listing)."""
    pages = client.get_paginator("list_objects_v2").paginate(**_listing_args(settings, prefix, direct))
    for page in pages_of(pages, settings, "ListObjectsV2"):
        for obj in page.get("Contents", ()):
            yield _item(source, obj, None)


def scan_versions(client: Any, settings: S3Settings, source: str, prefix: str | None = None,
                  direct: bool = False) -> Iterator[Record | Problem]:
    """Every object version under *prefix* (the source's by default; *direct*: only keys with
    no ``/`` after it) with ``list_object_versions``; delete markers are not data."""
    pages = client.get_paginator("list_object_versions").paginate(**_listing_args(settings, prefix, direct))
    for page in pages_of(pages, settings, "ListObjectVersions"):
        for version in page.get("Versions", ()):
            yield _item(source, version, version["VersionId"])


def scan_range(client: Any, settings: S3Settings, source: str, lower: str | None,
               upper: str | None) -> Iterator[Record | Problem]:
    """Current objects under the source's prefix with ``lower <= key < upper`` (None: unbounded).

    The listing starts just before *lower* (``StartAfter``, where the key can travel in XML)
    and stops at the first key at or past *upper*; keys outside the range are dropped, so the
    ranges of one split hold each key exactly once whatever ``StartAfter`` skips or not.
    """
    args = _listing_args(settings, None, False)
    if lower and len(lower) > len(settings.prefix) and xml_safe(lower[:-1]):
        args["StartAfter"] = lower[:-1]  # strictly before every key >= lower
    pages = client.get_paginator("list_objects_v2").paginate(**args)
    for page in pages_of(pages, settings, "ListObjectsV2"):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if upper is not None and key >= upper:
                return
            if lower is None or key >= lower:
                yield _item(source, obj, None)


def _listing_args(settings: S3Settings, prefix: str | None, direct: bool) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": settings.prefix if prefix is None else prefix,
                            "PaginationConfig": {"PageSize": settings.page_size}}
    if direct:
        args["Delimiter"] = DELIMITER
    return args


def _item(source: str, obj: dict[str, Any], version: str | None) -> Record | Problem:
    """One listed object as a Record whose stamp is what the guard compares, or a Problem.

    An object whose LastModified cannot be represented (unparseable, out of datetime's
    range) is reported, never raised: one odd object must not stop the listing.
    """
    key = obj["Key"]
    try:
        seen = Seen(obj.get("ETag"), obj.get("Size"), utc(obj["LastModified"]))
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raw = obj.get("LastModified")
        reason = f"LastModified {raw!r} cannot be read as a date" if raw is not None else \
            f"listed without a LastModified ({type(exc).__name__})"
        return Problem(source, key, reason + (f" (version {version})" if version else ""))
    return Record(source=source, location=key, created=seen.modified, size=seen.size, version=version,
                  stamp=seen.stamp())


def pages_of(pages: Any, settings: S3Settings, operation: str) -> Iterator[dict[str, Any]]:
    """The listing's pages; a failure is a BackendError, except that S3 being unreachable at
    all (no credentials, endpoint down) is raised as it came, for the backend to report as
    the configuration problem it is."""
    iterator = iter(pages)
    while True:
        try:
            page = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            if unreachable(exc) is not None:
                raise
            raise BackendError(f"{settings.where}: {operation} failed: {describe(exc)}") from exc
        yield page


# -- what a batch's keys hold right now ---------------------------------------------------------


@dataclass
class KeyState:
    """What one key holds: real versions (id → what is listed; ``None`` id when unversioned) and markers."""

    versions: dict[str | None, Seen] = field(default_factory=dict)
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
    if first[:-1] and xml_safe(first[:-1]):  # (answers echo StartAfter: moto's then breaks the XML)
        kwargs["StartAfter"] = first[:-1]  # strictly before the first key
    pages = client.get_paginator("list_objects_v2").paginate(**kwargs)
    seen = None
    for count, page in enumerate(pages, start=1):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if key > last:
                inv.upto = last
                return inv
            inv.keys.setdefault(key, KeyState()).versions[None] = _seen(obj)
            seen = key
        if not page.get("IsTruncated"):
            inv.upto = last
            return inv
        if count >= INVENTORY_PAGE_BUDGET:
            break
    inv.upto = seen  # every key up to the last one listed is known
    return inv


def _seen(obj: dict[str, Any]) -> Seen:
    """What a listing says of an object now; an unreadable date compares unequal to any stamp."""
    try:
        modified = utc(obj["LastModified"])
    except (TypeError, ValueError, OverflowError, KeyError):
        modified = datetime.min.replace(tzinfo=timezone.utc)
    return Seen(obj.get("ETag"), obj.get("Size"), modified)


def exact_current(client: Any, settings: S3Settings, key: str) -> KeyState:
    """What exactly *key* holds now on an unversioned bucket (the key sorts first under itself)."""
    state = KeyState()
    page = client.list_objects_v2(Bucket=settings.bucket, Prefix=key, MaxKeys=1)
    for obj in page.get("Contents", ()):
        if obj["Key"] == key:
            state.versions[None] = _seen(obj)
    return state


def exact_versions(client: Any, settings: S3Settings, key: str) -> KeyState:
    """Every version and delete marker of exactly *key*."""
    state = KeyState()
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=settings.bucket, Prefix=key, PaginationConfig={"PageSize": settings.page_size})
    for page in pages:
        beyond = False
        for version in page.get("Versions", ()):
            if version["Key"] == key:
                state.versions[version["VersionId"]] = _seen(version)
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
                inv.keys.setdefault(key, KeyState()).versions[version["VersionId"]] = _seen(version)
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
