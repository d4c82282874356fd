"""The deletion evidence: how a run's batches become audit-trail lines, and how they read back.

The scheduler decides *when* a line is written (an intent before storage is touched, the
outcome after); the journal owns *what* is written. One intent line and one outcome line per
batch, each record a row of :data:`~retention_core.audit.INTENT_FIELDS` (names that are not
UTF-8 as ``location_hex``, the encoding the spool shares), the fenced batch's id on both. It
also reads back what earlier runs left open and writes the lines that settle them, so no
deletion is ever missing from the trail and none is ever invented.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .audit import INTENT_FIELDS, OUTCOME_FIELDS, STREAMED_FIELDS, AuditTrail, Head, Line, batch_entry, expand, walk
from .errors import AuditError
from .model import Action, Decision, Record, RecordKey, TrailOutcome
from .text import exact_hex, from_entry, printable

#: The line recovery writes for a crashed run's batch whose evidence file cannot be believed.
BATCH_UNREADABLE = "batch-unreadable"


@dataclass(frozen=True)
class JournalBatch:
    """What one intent line wrote, kept for its outcome line (rows are built once per batch)."""

    source: str
    action: Action
    rows: list[list[Any]]
    batch_id: str
    #: A streamed batch: its rows are in an evidence file (``evidence`` is the lines' reference
    #: to it, ``shared`` the values every row has), not in ``rows``.
    evidence: dict[str, Any] | None = None
    shared: dict[str, Any] | None = None


class Journal:
    """One run's lines in the audit trail."""

    def __init__(self, trail: AuditTrail, run_id: str, places: Mapping[str, str | None] | None = None) -> None:
        self.trail = trail
        self.run_id = run_id
        #: Per source, the storage it lists now (:meth:`Backend.fingerprint`), written with
        #: every intent so recovery knows what a later listing is evidence about.
        self.places = dict(places or {})

    def event(self, event: str, **fields: Any) -> Head:
        """A run-level line (run-start, clock-override, run-end), fsynced."""
        return self.trail.append([{"event": event, "run_id": self.run_id, **fields}])

    def intent(self, source: str, action: Action, decided: Iterable[tuple[Record, Decision]],
               batch_id: str) -> JournalBatch:
        """Journal a batch's intent, durably, before storage is touched."""
        batch = JournalBatch(source, action, [row(r, d) for r, d in decided], batch_id)
        self.trail.append([self._line("intent", batch, batch.rows)])
        return batch

    def streamed_intent(self, source: str, action: Action, evidence: dict[str, Any], batch_id: str, *,
                        category: str | None, reason: str) -> JournalBatch:
        """Journal, durably, the intent of a batch whose rows are already in a durable evidence
        file (:data:`~retention_core.audit.STREAMED_FIELDS`): the line names the file, its row
        count and SHA-256, and reads back (``audit.expand``) as the per-record line would."""
        shared = {"version": None, "category": category, "reason": reason}
        batch = JournalBatch(source, action, [], batch_id, evidence=evidence, shared=shared)
        self.trail.append([self._streamed_line("intent", batch, {})])
        return batch

    def streamed_outcome(self, batch: JournalBatch, status: str, error: str | None = None, *,
                         sync: bool = False) -> None:
        """Every row of a streamed batch has the same outcome (all-or-nothing in one transaction)."""
        self.trail.append([self._streamed_line("outcome", batch, {"outcome": status, "error": error})], sync=sync)

    def _streamed_line(self, event: str, batch: JournalBatch, extra: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"event": event, "run_id": self.run_id, "source": batch.source,
                                 "action": batch.action.value, **(batch.shared or {}), **extra,
                                 "fields": list(STREAMED_FIELDS), "evidence": batch.evidence, "batch": batch.batch_id}
        if event == "intent" and self.places.get(batch.source) is not None:
            entry["where"] = self.places[batch.source]
        return entry

    def outcome(self, batch: JournalBatch, results: Iterable[tuple[str, str | None]]) -> None:
        """Journal each record's (status, error). Not fsynced: the next intent (or the run's
        end) makes it durable, and a lost outcome line is an intent a later run settles."""
        rows = [[*r, status, error] for r, (status, error) in zip(batch.rows, results, strict=True)]
        self.trail.append([self._line("outcome", batch, rows)], sync=False)

    def rolled_back(self, batch: JournalBatch, why: str) -> None:
        """Journal a batch storage rolled back before it took effect (a hold placed meanwhile)."""
        if batch.evidence is not None:  # streamed: not_executed for the same evidence file
            self.streamed_outcome(batch, TrailOutcome.NOT_EXECUTED, why, sync=True)
            return
        rows = [[*r, TrailOutcome.NOT_EXECUTED, why] for r in batch.rows]
        self.trail.append([self._line("outcome", batch, rows)])

    def settle(self, settled: list[dict[str, Any]]) -> None:
        """Journal the outcomes that close earlier runs' open intents (see :func:`settlement`)."""
        groups: dict[tuple[str, str, str], list[list[Any]]] = {}
        for entry in settled:
            groups.setdefault((entry["run_id"], entry["source"], entry["action"]), []).append(
                [entry.get(k) for k in OUTCOME_FIELDS])
        lines = [batch_entry("outcome", *group, rows) for group, rows in groups.items()]
        for line in lines:  # a later run's inference from absence, not storage's report
            line["settled_by"] = self.run_id
        self.trail.append(lines)

    def unreadable(self, intent: dict[str, Any], why: str) -> None:
        """Close a crashed run's batch whose evidence file cannot be believed: one line naming the
        file, outcome ``unknown`` for the whole batch (its records cannot be named, so none is
        settled, inferred deleted, or carried)."""
        self.trail.append([{"event": BATCH_UNREADABLE, "run_id": intent.get("run_id"), "batch": intent.get("batch"),
                            "source": intent.get("source"), "action": intent.get("action"),
                            "file": (intent.get("evidence") or {}).get("file"), "outcome": TrailOutcome.UNKNOWN,
                            "settled_by": self.run_id, "error": why}])

    def unsettled(self, record: Record, decision: Decision) -> dict[str, Any]:
        """A failed deletion's intent as the state store keeps it until a later run settles it."""
        return unsettled_entry(self.run_id, record, decision, self.places.get(record.source))

    def _line(self, event: str, batch: JournalBatch, rows: list[list[Any]]) -> dict[str, Any]:
        entry = batch_entry(event, self.run_id, batch.source, batch.action.value, rows)
        entry["batch"] = batch.batch_id
        if event == "intent" and self.places.get(batch.source) is not None:
            entry["where"] = self.places[batch.source]
        return entry


def row(record: Record, decision: Decision) -> list[Any]:
    """A record's row in a batch line (:data:`~retention_core.audit.INTENT_FIELDS`)."""
    location = record.location
    if location.isascii():
        return [location, None, record.version, record.subject, record.category, decision.reason]
    return [printable(location), exact_hex(location), record.version, record.subject, record.category,
            decision.reason]


def unsettled_entry(run_id: str, record: Record, decision: Decision, where: str | None = None) -> dict[str, Any]:
    """One record's intent as the state store keeps a failed deletion until it is settled
    (with the time it failed: a listing taken before then is no evidence about it)."""
    entry = {"event": "intent", "run_id": run_id, "action": decision.action.value, "source": record.source,
             "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
             **dict(zip(INTENT_FIELDS, row(record, decision), strict=True))}
    if where is not None:
        entry["where"] = where
    return entry


def trail_key(entry: dict[str, Any]) -> RecordKey:
    """The identity of the record a per-record trail entry names."""
    return RecordKey(entry["source"], from_entry(entry["location"], entry.get("location_hex")), entry.get("version"))


def settlement(intent: dict[str, Any], settled_by: str, why: str, *, observed: bool, present: bool) -> dict[str, Any]:
    """The outcome that closes *intent*: judged only where the settling run's scan is evidence.

    Not *observed* (its source not listed completely): ``unknown``, carried. Observed and
    absent: deleted (anonymize: already gone). Observed and present: not executed (anonymize:
    unknown — an anonymized row is still there either way).
    """
    if not observed:
        outcome, seen = TrailOutcome.UNKNOWN, ("not observed: its source was not listed completely in this run; "
                                               "carried to the next run")
    else:
        seen = "record " + ("still present" if present else "absent from storage")
        if intent["action"] == Action.ANONYMIZE.value:
            outcome = TrailOutcome.UNKNOWN if present else TrailOutcome.ALREADY_GONE
        else:
            outcome = TrailOutcome.NOT_EXECUTED if present else TrailOutcome.DELETED
    return {**{k: intent.get(k) for k in ("run_id", "action", "source", *INTENT_FIELDS)},
            "outcome": outcome, "error": f"settled by run {settled_by} {why}: {seen}"}


@dataclass
class OpenIntents:
    """What earlier runs left open, read before a run's scan so the scan keeps those records:
    intents of runs that died before journalling their outcome (``dangling``), and deletions
    reported ``failed`` — or settled ``unknown`` — that storage may have carried out (``failed``,
    from the state store's unsettled table, with their row ids)."""

    crashed: frozenset[str] = frozenset()
    dangling: dict[RecordKey, dict[str, Any]] = field(default_factory=dict)
    failed: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: Intent lines whose evidence file cannot be believed (missing, altered), left without an
    #: outcome: their records cannot be named, so nothing of them is settled or inferred;
    #: recovery journals each as ``batch-unreadable`` (one line naming the file) and warns.
    unreadable: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    #: Segments a crashed distributed run dispatched whose ``segment`` line it never wrote (the
    #: main process died after its workers journalled there): (run id, source, partition, file),
    #: file relative to the trail's directory. Recovery names each in the main trail, so its
    #: deletions are read (and verified) with the rest.
    orphans: list[tuple[str, str, str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, trail: Path, crashed: Iterable[str], unsettled: list[tuple[int, dict[str, Any]]]) -> OpenIntents:
        crashed = frozenset(crashed)
        dangling: dict[RecordKey, dict[str, Any]] = {}
        broken: dict[tuple[Any, Any], tuple[dict[str, Any], str]] = {}
        dispatched: dict[str, tuple[str, str, str, str]] = {}
        if crashed and trail.exists():
            for line in _with_dispatched(walk(trail), crashed):
                entry = line.entry
                event = entry.get("event")
                if line.top.get("run_id") in crashed:
                    _track_segments(line.top if line.top is not entry else entry, dispatched)
                if entry.get("run_id") not in crashed or event not in ("intent", "outcome", BATCH_UNREADABLE):
                    continue
                batch = (entry.get("run_id"), entry.get("batch"))
                if event == BATCH_UNREADABLE:
                    broken.pop(batch, None)
                    continue
                try:
                    rows = list(expand(entry, line.base))
                except AuditError as exc:
                    if "evidence" not in entry:
                        raise
                    if event == "intent":
                        broken[batch] = (entry, str(exc))
                    else:  # the batch's outcome: all-or-nothing, so the batch is closed
                        broken.pop(batch, None)
                    continue
                for one in rows:
                    if one.get("location") is None:
                        continue
                    if event == "intent":
                        dangling[trail_key(one)] = one
                    else:
                        dangling.pop(trail_key(one), None)
        return cls(crashed, dangling, unsettled, list(broken.values()), list(dispatched.values()))

    @property
    def keys(self) -> set[RecordKey]:
        return set(self.dangling) | {trail_key(intent) for _, intent in self.failed}

    @property
    def sources(self) -> set[str]:
        return {key.source for key in self.keys}


def _track_segments(entry: dict[str, Any], dispatched: dict[str, tuple[str, str, str, str]]) -> None:
    """Keep the segments a crashed run dispatched until a line of it records each one."""
    event = entry.get("event")
    if event == "segments-dispatched":
        for segment in entry.get("segments") or ():
            rel = str(segment.get("file"))
            dispatched[rel] = (str(entry.get("run_id")), str(entry.get("source")), str(segment.get("partition")), rel)
    elif event == "segment" and isinstance(entry.get("segment"), dict):
        dispatched.pop(str(entry["segment"].get("file")), None)
    elif event == "segment-not-written":
        dispatched.pop(str(entry.get("file")), None)


def _with_dispatched(lines: Iterator[Line], runs: frozenset[str]) -> Iterator[Line]:
    """*lines*, and after each ``segments-dispatched`` line of one of *runs* the lines of the
    segments it names: a distributed run that died before recording a segment's ``segment``
    line left its intents there (``retention_core.partitioned``)."""
    for line in lines:
        yield line
        entry = line.entry
        if entry.get("event") == "segments-dispatched" and entry.get("run_id") in runs:
            for segment in entry.get("segments") or ():
                path = line.base / str(segment.get("file"))
                if path.is_file():
                    yield from walk(path)


