"""The hold fence: a hold placed while a deletion batch is in flight protects that batch.

The protocol needs nothing but committed rows in the state store (SQLite, PostgreSQL), no lock
held across a storage call:

* a batch registers itself in ``retention_inflight`` and commits, *then* reads holds, decides,
  journals its intent, deletes, journals its outcome, and unregisters;
* ``holds place`` stores the hold and commits, *then* reads which batches are registered, and
  waits until each of them has unregistered.

Both sides write before they read, so at least one sees the other: either the batch read the
hold (and kept what it covers), or the placer saw the batch and waits for it — and then reads
from the audit trail exactly what that batch deleted in the hold's scope, before the hold took
effect. A batch whose run lost the lock (dead, stale) cannot delete any more and is not waited for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .audit import expand, read_backwards
from .errors import FenceTimeout
from .model import HoldScope, Record
from .state import StateStore

#: How long ``holds place`` waits for the batches in flight by default.
DEFAULT_WAIT = 600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Batch:
    """A deletion batch that was in flight when a hold was placed."""

    run_id: str
    source: str
    batch: str


@contextmanager
def in_flight(state: StateStore, run_id: str, source: str) -> Iterator[str]:
    """Register one deletion batch for its whole life; yields the batch id journalled with it.

    Holds must be read *inside* this block (after registration), never before it.
    """
    batch = uuid.uuid4().hex[:16]
    ticket = state.enter_batch(run_id, source, batch)
    try:
        yield batch
    finally:
        state.leave_batch(ticket)


def wait_for_batches(state: StateStore, *, timeout: float = DEFAULT_WAIT, poll: float = 0.05) -> list[Batch]:
    """Wait until every batch registered now has finished; return them (empty: none was in flight).

    Call only after the hold is committed. Raises :class:`FenceTimeout` after *timeout* seconds.
    """
    rows = state.batches_in_flight()
    waited = [Batch(r.run_id, r.source, r.batch) for r in rows]
    pending = {r.id for r in rows}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            names = ", ".join(f"{b.batch} of run {b.run_id} (source {b.source})" for b in waited)
            raise FenceTimeout(f"the hold is stored, but batch {names} was still deleting after {timeout:g} s; "
                               "it may delete records in the hold's scope: check `retention audit verify` and "
                               "the trail for that batch")
        time.sleep(poll)
        pending = {r.id for r in state.batches_in_flight(pending)}
    return waited


def deleted_in_scope(trail: Path, batches: list[Batch], scope: HoldScope) -> list[dict[str, Any]]:
    """The records *batches* deleted (or anonymized) that *scope* covers, read from the trail's end."""
    if not batches or not trail.exists():
        return []
    wanted = {(b.run_id, b.batch) for b in batches}
    runs = {b.run_id for b in batches}
    found: list[dict[str, Any]] = []
    for entry in read_backwards(trail):
        if entry.get("event") == "run-start" and entry.get("run_id") in runs:
            runs.discard(entry["run_id"])
            if not runs:
                break
        segment = "segment" in entry  # a partition's trail: its rows name their own run and batch
        if not segment and (entry.get("event") != "outcome" or (entry.get("run_id"), entry.get("batch")) not in wanted):
            continue
        for row in expand(entry, trail.parent):  # evidence files and segments read through
            if row.get("outcome") not in ("deleted", "anonymized"):
                continue
            if segment and (row.get("event") != "outcome" or (row.get("run_id"), row.get("batch")) not in wanted):
                continue
            record = Record(row.get("source", ""), row.get("location", ""), _EPOCH, None, row.get("version"),
                            row.get("subject"), row.get("category"))
            if scope.covers(record):
                found.append(row)
    return found
