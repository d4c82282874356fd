"""The audit trail: append-only JSONL where each line carries the SHA-256 of the previous.

Lines are written per batch (buffered, one fsync per batch, never per record) under an
exclusive ``flock`` so that hold changes made while a run is going on cannot fork the chain.
``verify`` finds the first edited, deleted, reordered or truncated line.

A deletion batch is journalled as one ``intent`` line before the backend is called and one
``outcome`` line after, each listing every record of the batch as a row under ``fields``
(:func:`batch_entry`); :func:`expand` gives the per-record view every reader uses. One line
per batch rather than per record is what keeps the trail's cost (JSON and SHA-256) small
beside the deletions themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import Any

GENESIS = "0" * 64

#: The columns of a batch entry's ``records`` rows (what identifies a record, and why).
INTENT_FIELDS = ("location", "location_hex", "version", "subject", "category", "reason")
OUTCOME_FIELDS = (*INTENT_FIELDS, "outcome", "error")


#: One encoder for every line: json.dumps() built a new encoder per call, and encoding each
#: entry twice (once to hash, once to write) was most of an enforcing run's audit time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _canonical(body: Mapping[str, Any]) -> str:
    return _CANONICAL.encode(body)


def _digest(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + _canonical(body)).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last line of a trail: where the next line chains from."""

    seq: int
    hash: str


class AuditTrail:
    """Append entries to one trail file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The head as this object last wrote it, with the file's identity and size then: reused
        # while nobody else has appended (re-reading a 1,000-record batch line backwards to
        # find the head cost more than writing it, by profile).
        self._last: tuple[tuple[int, int, int, int], Head] | None = None

    def append(self, entries: Iterable[Mapping[str, Any]], *, sync: bool = True) -> Head:
        """Append *entries* as one batch; each gets seq, time, prev_hash and hash.

        The batch is on disk when this returns (fsync), unless ``sync`` is False: then it
        becomes durable with the next synced append. Only lines whose loss a later run can
        make good may skip it (a deletion's outcome: recovery settles an intent left without
        one from storage itself); an intent never does.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            head = self._last[1] if self._last is not None and self._last[0] == _identity(fd) else _read_head(fd)
            now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            lines = []
            seq, prev = head.seq, head.hash
            for entry in entries:
                seq += 1
                canonical = _canonical({"seq": seq, "time": now, **entry, "prev_hash": prev})
                prev = hashlib.sha256((prev + canonical).encode("ascii")).hexdigest()
                # The written line is the hashed text with "hash" appended as its last key:
                # verify() parses the line and re-canonicalises, so key order is free.
                lines.append(f'{canonical[:-1]},"hash":"{prev}"}}')
            if lines:
                data = ("\n".join(lines) + "\n").encode("ascii")
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to the audit trail {self.path}")
                if sync:
                    os.fsync(fd)
            self._last = (_identity(fd), Head(seq, prev))
            return Head(seq, prev)
        finally:
            os.close(fd)

    def head(self) -> Head:
        if not self.path.exists():
            return Head(0, GENESIS)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return _read_head(fd)
        finally:
            os.close(fd)


def _identity(fd: int) -> tuple[int, int, int, int]:
    """What changes when anyone else writes the file: device, inode, size, modification time."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_head(fd: int) -> Head:
    """The last complete line's seq and hash, reading backwards from the end."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Head(0, GENESIS)
    chunk = b""
    pos = size
    while pos > 0:
        step = min(8192, pos)
        pos -= step
        chunk = os.pread(fd, step, pos) + chunk
        lines = chunk.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            last = json.loads(lines[-1])
            return Head(int(last["seq"]), str(last["hash"]))
    return Head(0, GENESIS)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    head: Head
    problem: str | None = None
    line: int | None = None


def verify(path: Path, *, expect: Head | None = None) -> VerifyResult:
    """Check every line's hash and link; *expect* (from the state store) catches truncation."""
    prev, seq, count = GENESIS, 0, 0
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return VerifyResult(False, 0, Head(0, GENESIS), f"audit trail {path} does not exist")
    with handle:
        for number, raw in enumerate(handle, start=1):
            count = number
            problem = _check_line(raw, prev, seq)
            if problem:
                return VerifyResult(False, number, Head(seq, prev), problem, number)
            body = json.loads(raw)
            seq, prev = body["seq"], body["hash"]
    head = Head(seq, prev)
    if expect is not None and expect.seq > seq:
        return VerifyResult(False, count, head, f"trail ends at seq {seq} but the state store recorded "
                                                f"seq {expect.seq}: lines were truncated", count + 1)
    if expect is not None and expect.seq and not _contains(path, expect):
        return VerifyResult(False, count, head, f"line seq {expect.seq} does not carry the hash the state "
                                                "store recorded", expect.seq)
    return VerifyResult(True, count, head)


def _check_line(raw: bytes, prev: str, seq: int) -> str | None:
    if not raw.endswith(b"\n"):
        return "last line is incomplete (truncated)"
    try:
        body = json.loads(raw)
    except ValueError:
        return "not valid JSON"
    if not isinstance(body, dict) or "hash" not in body:
        return "not an audit entry"
    claimed = body.pop("hash")
    if body.get("seq") != seq + 1:
        return f"expected seq {seq + 1}, found {body.get('seq')!r} (a line was deleted or reordered)"
    if body.get("prev_hash") != prev:
        return "prev_hash does not match the previous line (a line was deleted, inserted or reordered)"
    if _digest(prev, body) != claimed:
        return "hash does not match the line's content (the line was edited)"
    return None


def _contains(path: Path, head: Head) -> bool:
    return any(e.get("seq") == head.seq and e.get("hash") == head.hash for e in read(path))


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a trail, in order (no verification)."""
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield json.loads(raw)


def batch_entry(event: str, run_id: str, source: str, action: str, rows: Sequence[Sequence[Any]]
                ) -> dict[str, Any]:
    """One line for a whole batch: *rows* are :data:`INTENT_FIELDS` (or, for ``outcome``,
    :data:`OUTCOME_FIELDS`) values, one row per record.

    A field with one value for every record of the batch (the reason, the category, a null
    version …) is written once, as a key of the line, and left out of ``fields`` and the
    rows: the same record reads back from :func:`expand`, and the line is a fraction of the
    size (and of the JSON and SHA-256 work).
    """
    names = OUTCOME_FIELDS if event == "outcome" else INTENT_FIELDS
    entry: dict[str, Any] = {"event": event, "run_id": run_id, "source": source, "action": action}
    varying = []
    for i, name in enumerate(names):
        # C-speed loops that stop at the first difference (this runs over every record; a set
        # per field hashed every location and was a sixth of a push-down run, by profile).
        if rows and not any(map(ne, repeat(rows[0][i]), map(itemgetter(i), rows))):
            entry[name] = rows[0][i]
        else:
            varying.append(i)
    entry["fields"] = [names[i] for i in varying]
    if len(varying) > 1:
        entry["records"] = list(map(itemgetter(*varying), rows))  # tuples encode as arrays
    elif varying:
        entry["records"] = [[value] for value in map(itemgetter(varying[0]), rows)]
    else:
        entry["records"] = [[] for _ in rows]
    return entry


def expand(entry: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The per-record view of *entry*: one dict per row of a batch entry (its shared keys
    plus the row's fields); any other entry (run-start, hold-placed …) unchanged."""
    rows, fields = entry.get("records"), entry.get("fields")
    if not isinstance(rows, list) or not isinstance(fields, list):
        yield dict(entry)
        return
    shared = {k: v for k, v in entry.items() if k not in ("records", "fields")}
    for row in rows:
        yield {**shared, **dict(zip(fields, row, strict=False))}  # a short row reads as nulls


def records(path: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a trail in order, batch entries expanded to one dict per record."""
    for entry in read(path):
        yield from expand(entry)
