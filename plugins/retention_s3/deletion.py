"""Deleting one chunk (at most 1000 keys) with DeleteObjects, reporting one outcome per record.

The guard (see :mod:`.guard`): versions are deleted by id; unversioned objects with their
ETag as a condition where the endpoint enforces it, else after a fresh listing shows each
still holds what the scan saw (``changed`` otherwise). That listing also tells a record
already gone apart (S3 answers "Deleted" for keys and version ids that do not exist) and
which delete markers will be left with no version behind them; it is skipped where the
conditional delete itself answers those questions. A 200 answer can carry per-key
``Errors``: each becomes that record's outcome; transient ones are retried with backoff, a
bounded number of times; a key S3 does not mention at all is retried, then failed. Keys an
XML body cannot carry are deleted one by one with DeleteObject, under the same guard.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from retention_core import Outcome, Record, Status

from .client import GONE_CODES, TRANSIENT_CODES, describe, error_code
from .guard import CHANGED_CODES, NOT_ENFORCED, ConditionalDeletes, Seen, xml_safe
from .listing import Inventory, KeyState, exact_current, exact_versions, inventory_current, inventory_versions
from .locks import storage_hold
from .settings import S3_MAX_KEYS, S3Settings

log = logging.getLogger("retention.s3")

Ident = tuple[str, str | None]

NO_VERSION = ("has no version id: in a versioned bucket retention deletes versions by id only, "
              "never with a bare delete that adds a delete marker")
#: The version id S3 gives objects written while versioning is off or suspended: unlike a
#: real version id, a later write while suspended replaces it in place, so it is guarded like
#: an unversioned object.
NULL_VERSION = "null"


@dataclass
class Result:
    status: Status
    error: str | None = None


@dataclass
class ChunkDeleter:
    """Deletes chunks of one bucket. Thread-safe: it keeps no state between chunks."""

    client: Any
    settings: S3Settings
    versioned: bool
    lock_enabled: Callable[[], bool]
    conditional: ConditionalDeletes = NOT_ENFORCED
    backoff_base: float = 0.2
    sleep: Callable[[float], None] = field(default=time.sleep)

    # -- one chunk ------------------------------------------------------------------------------
    def run(self, chunk: Sequence[Record]) -> list[Outcome]:
        keys = sorted({r.location for r in chunk})
        unique: dict[Ident, Record] = {}
        for record in chunk:
            unique.setdefault((record.location, record.version), record)
        inventory = self._inventory(keys) if self._needs_listing(unique.values()) else None
        look = _Lookups(self, inventory)
        results: dict[Ident, Result] = {}
        targets: dict[Ident, str | None] = {}  # what to delete, with the ETag it must still have
        for ident, record in unique.items():
            early, etag = self._before_deleting(record, inventory, look)
            if early is not None:
                results[ident] = early
            else:
                targets[ident] = etag
        results.update(self._delete({i: e for i, e in targets.items() if xml_safe(i[0])}))
        results.update(self._delete_singly({i: e for i, e in targets.items() if not xml_safe(i[0])}))
        if self.versioned and inventory is not None:
            self._remove_orphaned_markers(keys, inventory, results)
        return [Outcome(r, results[(r.location, r.version)].status, results[(r.location, r.version)].error)
                for r in chunk]

    def _needs_listing(self, records: Iterable[Record]) -> bool:
        """Only an endpoint that enforces the ETag and names missing keys makes the listing useless."""
        if self.versioned or not (self.conditional.enforced and self.conditional.reports_missing):
            return True
        return any(_seen(r) is None for r in records)

    def _inventory(self, keys: list[str]) -> Inventory | None:
        try:
            if self.versioned:
                return inventory_versions(self.client, self.settings, keys)
            return inventory_current(self.client, self.settings, keys)
        except Exception as exc:  # each key is then looked up on its own where the guard needs it
            log.warning("%s: could not list keys before deleting (%s)", self.settings.where, describe(exc))
            return None

    def _before_deleting(self, record: Record, inv: Inventory | None,
                         look: _Lookups) -> tuple[Result | None, str | None]:
        """The record's outcome if it is settled without deleting, else the ETag to delete it under."""
        if self.versioned:
            return self._version_before_deleting(record, inv, look), None
        seen = _seen(record)
        if inv is None and seen is not None and seen.etag and self.conditional.enforced:
            return None, seen.etag  # S3 itself checks the ETag, and names a missing key
        return self._compare(record, seen, None, look)

    def _version_before_deleting(self, record: Record, inv: Inventory | None, look: _Lookups) -> Result | None:
        known = inv is not None and inv.known(record.location)
        state = inv.state(record.location) if inv is not None else KeyState()
        if record.version is None:
            return Result(Status.ALREADY_GONE) if known and not state.versions else Result(
                Status.FAILED, NO_VERSION)
        if known and record.version not in state.versions:
            return Result(Status.ALREADY_GONE)
        if record.version == NULL_VERSION:
            return self._compare(record, _seen(record), NULL_VERSION, look)[0]
        return None  # a version id names immutable content: deleting it is the guard

    def _compare(self, record: Record, seen: Seen | None, version: str | None,
                 look: _Lookups) -> tuple[Result | None, str | None]:
        """Compare what the scan saw with what the key holds now (the guard without server help)."""
        try:
            now = look(record.location)
        except Exception as exc:
            return Result(Status.FAILED, f"not deleted: could not check that it is unchanged since the "
                                         f"scan ({describe(exc)})"), None
        current = now.versions.get(version)
        if current is None:
            return Result(Status.ALREADY_GONE), None
        expected = seen or Seen(None, record.size, record.created)
        if not expected.matches(current):
            log.info("%s%s: changed since the scan; left alone", self.settings.where, record.location)
            return Result(Status.CHANGED, _difference(expected, current)), None
        return None, expected.etag or current.etag

    # -- DeleteObjects with per-key outcomes ---------------------------------------------------
    def _delete(self, targets: dict[Ident, str | None]) -> dict[Ident, Result]:
        """DeleteObjects over *targets* (ident → ETag), the ETag sent only where the endpoint enforces it."""
        idents = list(targets)
        etags = targets if self.conditional.enforced and not self.versioned else {}
        results: dict[Ident, Result] = {}
        for start in range(0, len(idents), S3_MAX_KEYS):
            results.update(self._delete_some(idents[start:start + S3_MAX_KEYS], etags))
        return results

    def _delete_some(self, idents: list[Ident], etags: dict[Ident, str | None]) -> dict[Ident, Result]:
        results: dict[Ident, Result] = {}
        denied: dict[Ident, str] = {}
        pending = list(idents)
        last_error: dict[Ident, str] = {}
        attempt = 0
        while pending:
            attempt += 1
            try:
                response = self.client.delete_objects(
                    Bucket=self.settings.bucket,
                    Delete={"Objects": [_object(k, v, etags.get((k, v))) for k, v in pending], "Quiet": False})
            except Exception as exc:  # botocore already retried the whole call (standard mode)
                if error_code(exc) in TRANSIENT_CODES and attempt < self.settings.max_attempts:
                    last_error.update((i, describe(exc)) for i in pending)
                    self._backoff(attempt)
                    continue
                for asked in pending:
                    results[asked] = Result(Status.FAILED, f"DeleteObjects failed: {describe(exc)}")
                return results
            match = _Matcher(pending)
            retry: list[Ident] = []
            for item in response.get("Deleted", ()):
                done = match(item.get("Key"), item.get("VersionId"))
                if done is not None:
                    results[done] = Result(Status.DELETED)
            for item in response.get("Errors", ()):
                ident = match(item.get("Key"), item.get("VersionId"))
                if ident is None:
                    continue
                code, message = item.get("Code", ""), item.get("Message", "")
                if code in GONE_CODES:
                    results[ident] = Result(Status.ALREADY_GONE)
                elif code in CHANGED_CODES:
                    results[ident] = Result(Status.CHANGED, f"changed since the scan: {code}: {message}")
                elif code in TRANSIENT_CODES:
                    retry.append(ident)
                    last_error[ident] = f"{code}: {message} (after {attempt} attempts)"
                elif code == "AccessDenied":
                    denied[ident] = message
                else:
                    results[ident] = Result(Status.FAILED, f"{code}: {message}")
            for ident in match.unanswered():
                retry.append(ident)
                last_error[ident] = f"S3 reported nothing for this key (after {attempt} attempts)"
            pending = retry
            if pending and attempt >= self.settings.max_attempts:
                for ident in pending:
                    results[ident] = Result(Status.FAILED, last_error.get(ident, "gave up retrying"))
                break
            if pending:
                self._backoff(attempt)
        results.update(self._classify_denied(denied))
        return results

    def _delete_singly(self, targets: dict[Ident, str | None]) -> dict[Ident, Result]:
        """DeleteObject per key (the key travels in the URL), for keys an XML body cannot carry.

        Versions go by id; an unversioned object with ``If-Match`` on its ETag whenever it is
        known (endpoints that enforce it answer 412 when it changed). botocore's standard
        retries cover transient errors; whatever still fails fails that key only.
        """
        results: dict[Ident, Result] = {}
        denied: dict[Ident, str] = {}
        for (key, version), etag in targets.items():
            kwargs: dict[str, str] = {"Bucket": self.settings.bucket, "Key": key}
            if version is not None:
                kwargs["VersionId"] = version
            elif etag:
                kwargs["IfMatch"] = etag
            try:
                self.client.delete_object(**kwargs)
            except Exception as exc:
                code = error_code(exc)
                if code in GONE_CODES:
                    results[(key, version)] = Result(Status.ALREADY_GONE)
                elif code in CHANGED_CODES:
                    results[(key, version)] = Result(Status.CHANGED, f"changed since the scan: {describe(exc)}")
                elif code in ("AccessDenied", "403"):
                    denied[(key, version)] = describe(exc)
                else:
                    results[(key, version)] = Result(Status.FAILED, f"DeleteObject failed: {describe(exc)}")
            else:
                results[(key, version)] = Result(Status.DELETED)
        results.update(self._classify_denied(denied))
        return results

    def _classify_denied(self, denied: dict[Ident, str]) -> dict[Ident, Result]:
        results: dict[Ident, Result] = {}
        locked_bucket = bool(denied) and self.versioned and self.lock_enabled()
        for (key, version), message in denied.items():
            reason = storage_hold(self.client, self.settings.bucket, key, version, message) \
                if locked_bucket else None
            if reason is not None:
                results[(key, version)] = Result(Status.REFUSED, reason)
            else:
                results[(key, version)] = Result(Status.FAILED, f"AccessDenied: {message or 'Access Denied'} "
                                                                f"(not an Object Lock: check bucket and IAM policies)")
        return results

    def _backoff(self, attempt: int) -> None:
        delay = min(5.0, self.backoff_base * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)
        if delay > 0:
            self.sleep(delay)

    # -- delete markers with nothing behind them ------------------------------------------------
    def _remove_orphaned_markers(self, keys: list[str], inv: Inventory, results: dict[Ident, Result]) -> None:
        gone = {ident for ident, r in results.items() if r.status in (Status.DELETED, Status.ALREADY_GONE)}
        markers: list[Ident] = []
        for key in keys:
            if not inv.known(key):
                continue
            state = inv.state(key)
            if state.markers and all((key, v) in gone for v in state.versions):
                markers += [(key, m) for m in state.markers]
        if not markers:
            return
        for ident, result in self._delete(dict.fromkeys(markers)).items():
            if result.status not in (Status.DELETED, Status.ALREADY_GONE):
                log.warning("%s%s: could not remove the delete marker %s left with no version: %s",
                            self.settings.where, ident[0], ident[1], result.error)


class _Lookups:
    """What a chunk's keys hold now: from its listing, else each key looked up exactly.

    After one look-up fails, the rest of the chunk fails the same way without asking again
    (an endpoint that refused the range listing and one key will not answer 999 more).
    """

    def __init__(self, deleter: ChunkDeleter, inv: Inventory | None) -> None:
        self.deleter = deleter
        self.inv = inv
        self.error: Exception | None = None

    def __call__(self, key: str) -> KeyState:
        if self.inv is not None and self.inv.known(key):
            return self.inv.state(key)
        if self.error is not None:
            raise self.error
        d = self.deleter
        try:
            if d.versioned:
                return exact_versions(d.client, d.settings, key)
            return exact_current(d.client, d.settings, key)
        except Exception as exc:
            self.error = exc
            raise


def _object(key: str, version: str | None, etag: str | None = None) -> dict[str, str]:
    if version is not None:
        return {"Key": key, "VersionId": version}
    return {"Key": key, "ETag": etag} if etag else {"Key": key}


def _seen(record: Record) -> Seen | None:
    return Seen.parse(record.stamp)


def _difference(expected: Seen, current: Seen) -> str:
    """Which of ETag, size and LastModified differ, for the outcome's explanation."""
    parts = []
    if expected.etag and current.etag and expected.etag.strip('"') != current.etag.strip('"'):
        parts.append(f"ETag {expected.etag} → {current.etag}")
    if expected.size is not None and current.size is not None and expected.size != current.size:
        parts.append(f"size {expected.size} → {current.size}")
    if expected.modified != current.modified:
        parts.append(f"LastModified {expected.modified.isoformat()} → {current.modified.isoformat()}")
    return "changed since the scan: " + ", ".join(parts)


class _Matcher:
    """Pairs DeleteObjects' answers with what was asked, by key and version id."""

    def __init__(self, pending: list[Ident]) -> None:
        self.open = set(pending)
        self.by_key: dict[str, list[Ident]] = {}
        for ident in pending:
            self.by_key.setdefault(ident[0], []).append(ident)

    def __call__(self, key: str | None, version: str | None) -> Ident | None:
        if key is None:
            return None
        if (key, version) in self.open:
            self.open.discard((key, version))
            return (key, version)
        candidates = [i for i in self.by_key.get(key, ()) if i in self.open]
        if len(candidates) == 1 and (version is None or candidates[0][1] is None):
            self.open.discard(candidates[0])
            return candidates[0]
        return None

    def unanswered(self) -> list[Ident]:
        return sorted(self.open, key=lambda i: (i[0], i[1] or ""))
