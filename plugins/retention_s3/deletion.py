"""Deleting one chunk (at most 1000 keys) with DeleteObjects, reporting one outcome per record.

Before deleting, the chunk's key range is listed once: that is how a record already gone
is told apart (S3 answers "Deleted" for keys and version ids that do not exist) and which
delete markers will be left with no version behind them. A 200 answer can carry per-key
``Errors``: each becomes that record's outcome; transient ones are retried with backoff,
a bounded number of times; a key S3 does not mention at all is retried, then failed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from retention_core import Outcome, Record, Status

from .client import GONE_CODES, TRANSIENT_CODES, describe, error_code
from .listing import Inventory, inventory_current, inventory_versions
from .locks import storage_hold
from .settings import S3_MAX_KEYS, S3Settings

log = logging.getLogger("retention.s3")

Ident = tuple[str, str | None]

#: An unversioned object whose LastModified is this much newer than scanned was replaced.
REPLACED_SLACK = timedelta(seconds=2)
NO_VERSION = ("has no version id: in a versioned bucket retention deletes versions by id only, "
              "never with a bare delete that adds a delete marker")


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
    backoff_base: float = 0.2
    sleep: Callable[[float], None] = field(default=time.sleep)

    # -- one chunk ------------------------------------------------------------------------------
    def run(self, chunk: Sequence[Record]) -> list[Outcome]:
        keys = sorted({r.location for r in chunk})
        inventory = self._inventory(keys)
        results: dict[Ident, Result] = {}
        targets: dict[Ident, None] = {}
        for record in chunk:
            ident = (record.location, record.version)
            if ident in results or ident in targets:
                continue
            early = self._settled_before_deleting(record, inventory)
            if early is not None:
                results[ident] = early
            else:
                targets[ident] = None
        results.update(self._delete(list(targets)))
        if self.versioned:
            self._remove_orphaned_markers(keys, inventory, results)
        return [Outcome(r, results[(r.location, r.version)].status, results[(r.location, r.version)].error)
                for r in chunk]

    def _inventory(self, keys: list[str]) -> Inventory:
        try:
            if self.versioned:
                return inventory_versions(self.client, self.settings, keys)
            return inventory_current(self.client, self.settings, keys)
        except Exception as exc:  # without a listing we still delete, we just know less
            log.warning("%s: could not list keys before deleting (%s); deleting without that check",
                        self.settings.where, describe(exc))
            return Inventory()

    def _settled_before_deleting(self, record: Record, inv: Inventory) -> Result | None:
        known = inv.known(record.location)
        state = inv.state(record.location)
        if self.versioned:
            if record.version is None:
                return Result(Status.ALREADY_GONE) if known and not state.versions else Result(
                    Status.FAILED, NO_VERSION)
            if known and record.version not in state.versions:
                return Result(Status.ALREADY_GONE)
            return None
        if not known:
            return None
        if not state.versions:
            return Result(Status.ALREADY_GONE)
        modified = next(iter(state.versions.values()))
        if record.version is None and modified > record.created + REPLACED_SLACK:
            # Someone wrote a new object at this key since the scan: the scanned one is gone,
            # and the new one is not ours to delete until a scan has judged it.
            log.info("%s%s: replaced since the scan (LastModified %s); left alone",
                     self.settings.where, record.location, modified.isoformat())
            return Result(Status.ALREADY_GONE)
        return None

    # -- DeleteObjects with per-key outcomes ---------------------------------------------------
    def _delete(self, idents: list[Ident]) -> dict[Ident, Result]:
        results: dict[Ident, Result] = {}
        for start in range(0, len(idents), S3_MAX_KEYS):
            results.update(self._delete_some(idents[start:start + S3_MAX_KEYS]))
        return results

    def _delete_some(self, idents: list[Ident]) -> dict[Ident, Result]:
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
                    Delete={"Objects": [_object(k, v) for k, v in pending], "Quiet": False})
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
        for ident, result in self._delete(markers).items():
            if result.status not in (Status.DELETED, Status.ALREADY_GONE):
                log.warning("%s%s: could not remove the delete marker %s left with no version: %s",
                            self.settings.where, ident[0], ident[1], result.error)


def _object(key: str, version: str | None) -> dict[str, str]:
    return {"Key": key, "VersionId": version} if version is not None else {"Key": key}


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
