"""The data that flows through a run: small frozen dataclasses, no behaviour beyond naming."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from .durations import Duration

if TYPE_CHECKING:
    from .patterns import LinearPattern


class Action(StrEnum):
    """What the policy says should happen to a record."""

    DELETE = "delete"
    ANONYMIZE = "anonymize"
    KEEP = "keep"
    HOLD = "hold"
    SKIP = "skip"


class Status(StrEnum):
    """What storage did with a record we asked it to delete or anonymize."""

    DELETED = "deleted"
    ANONYMIZED = "anonymized"
    ALREADY_GONE = "already_gone"
    REFUSED = "refused"  # storage itself refused, e.g. an S3 Object Lock: held by storage
    FAILED = "failed"
    #: Storage no longer holds what the scan saw (re-created, modified, moved): not deleted,
    #: reported, and decided again by the next run. Never treated as a failure to retry.
    CHANGED = "changed"


class TrailOutcome(StrEnum):
    """What the audit trail says became of a record: every :class:`Status`, and two outcomes
    only the core writes — a batch rolled back before it ran (a hold placed meanwhile), and an
    open intent whose record no run could observe yet (carried to the next run)."""

    DELETED = Status.DELETED.value
    ANONYMIZED = Status.ANONYMIZED.value
    ALREADY_GONE = Status.ALREADY_GONE.value
    REFUSED = Status.REFUSED.value
    FAILED = Status.FAILED.value
    CHANGED = Status.CHANGED.value
    NOT_EXECUTED = "not-executed"
    UNKNOWN = "unknown"


class RunStatus(StrEnum):
    """How an enforcing run ended, as the state store and the trail's run-end line record it."""

    OK = "ok"
    FAILED = "failed"  # stopped by an error
    FAILED_DELETIONS = "failed-deletions"  # finished, some deletions failed
    LIMIT_TRIPPED = "limit-tripped"
    CRASHED = "crashed"  # died; settled by a later run


@dataclass(frozen=True, slots=True)
class Record:
    """One item in storage, as a backend lists it.

    ``location`` is the backend's own address (a path relative to the fs root, an S3 key, a
    primary-key value as text). ``version`` distinguishes versions at one location (S3
    version ids). ``subject``/``category`` are usually filled in by the core from the
    source's ``match`` regex and ``category``; a backend that knows them (an SQL column, S3
    tags) may set them itself. ``created`` is always timezone-aware UTC.

    ``stamp`` is what the scan saw, in the backend's own terms (fs: device, inode, size,
    mtime_ns and ctime_ns; S3: the ETag; SQL: the stored values the WHERE compares). The core
    carries it unchanged from scan to :meth:`~retention_core.backend.Backend.delete`, which
    deletes the record only if storage still matches it (the guard): it is opaque to the core.
    """

    source: str
    location: str
    created: datetime
    size: int | None = None
    version: str | None = None
    subject: str | None = None
    category: str | None = None
    stamp: str | None = None

    @property
    def key(self) -> RecordKey:
        """Identity of the record within a run."""
        return RecordKey(self.source, self.location, self.version)


class RecordKey(NamedTuple):
    """A record's identity: the one form used by the spool, the journal and recovery."""

    source: str
    location: str
    version: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a scan met but could not list as a :class:`Record`.

    An unreadable directory, a mount point it would not cross, a row whose ``created`` is
    NULL or unparseable, a date out of range, a name too deep or that the API cannot carry.
    Backends yield it from ``scan`` in place of the record (one bad item never stops a run).
    The core never deletes it: it is counted per source, shown as a warning, marks the
    source's listing as incomplete (so recovery journals no deletion there and an erasure
    request that the source may concern stays open), and is reported with its reason.
    ``subject`` is given when the backend knows whose it is.
    """

    source: str
    location: str
    reason: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Exactly one per record handed to ``Backend.delete`` (or ``anonymize``)."""

    record: Record
    status: Status
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's verdict on one record, with the reason a person can read."""

    action: Action
    reason: str
    holds: tuple[str, ...] = ()
    due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Category:
    """A retention rule: keep ``retain`` after ``after`` (created | service_end), then ``action``."""

    name: str
    retain: Duration
    after: str = "created"
    action: Action = Action.DELETE


@dataclass(frozen=True, slots=True)
class HoldScope:
    """Every given key must match; at least one is always given."""

    subject: str | None = None
    category: str | None = None
    source: str | None = None

    def covers(self, record: Record) -> bool:
        return (
            (self.subject is None or self.subject == record.subject)
            and (self.category is None or self.category == record.category)
            and (self.source is None or self.source == record.source)
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("subject", self.subject), ("category", self.category),
                                  ("source", self.source)) if v is not None}


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal or dispute hold. Holds never expire by themselves; released ones are kept."""

    id: str
    kind: str  # legal | dispute
    scope: HoldScope
    reason: str
    placed_by: str = ""
    placed_at: datetime | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None
    origin: str = "state"  # state | config | <hold source name>
    #: When its hold source stopped listing it: still in force until released (never by vanishing).
    vanished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose data it is, who controls it, and whether their service has ended."""

    id: str
    controller: str | None = None
    service_ended_at: datetime | None = None
    minor: bool = False


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A controller's request to erase a subject's data, due 30 days after receipt."""

    id: str
    subject: str
    controller: str
    received_at: datetime
    due_at: datetime
    done_at: datetime | None = None
    done_run: str | None = None
    held_remaining: int = 0
    ticket: str | None = None
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdraw_reason: str | None = None

    @property
    def closed(self) -> bool:
        """Done or withdrawn: no run owes it anything more (a held request is still owed)."""
        return self.done_at is not None or self.withdrawn_at is not None

    def status(self, now: datetime) -> str:
        """``withdrawn``; ``done`` (proven: nothing of the subject left) or ``late`` (done after
        its due date, kept visible); ``held`` (everything left is under a hold: its own state,
        never "done"); else open: ``overdue`` or ``pending``."""
        if self.withdrawn_at is not None:
            return "withdrawn"
        if self.done_at is not None:
            return "late" if self.done_at > self.due_at else "done"
        if self.held_remaining:
            return "held"
        return "overdue" if now > self.due_at else "pending"


@dataclass(frozen=True)
class Limits:
    """Safety limits of one source: a run that would delete more deletes nothing there (exit 3)."""

    max_deletions: int | None = None
    max_fraction: float | None = None

    def over(self, planned: int, scanned: int) -> str | None:
        """Why *planned* deletions out of *scanned* records trip these limits, or None."""
        if self.max_deletions is not None and planned > self.max_deletions:
            return f"plans {planned} deletions, over max_deletions = {self.max_deletions}"
        if self.max_fraction is not None and scanned and planned / scanned > self.max_fraction:
            return (f"plans {planned} of {scanned} records ({planned / scanned:.1%}), "
                    f"over max_fraction = {self.max_fraction:g}")
        return None

    def allowance(self, scanned: int) -> int | None:
        """The most deletions these limits allow a source of *scanned* records."""
        bounds = [self.max_deletions] if self.max_deletions is not None else []
        if self.max_fraction is not None:
            bounds.append(int(self.max_fraction * scanned))
        return min(bounds) if bounds else None


@dataclass(frozen=True)
class Source:
    """A configured place to scan: which backend, its options, and how to classify records."""

    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    match: LinearPattern | None = None  # linear-time (RE2): a hostile name cannot hang a run
    category: str | None = None
    index: int = 0  # position in the config's sources list, for error messages
    #: Sources this one may list the same records as, on purpose (``overlaps:`` in the policy);
    #: any other overlap is refused. Holds scoped to either source cover both.
    overlaps: tuple[str, ...] = ()
    #: This source's own ``limits:``, key by key over the policy's (None: the policy's).
    limits: Limits | None = None


@dataclass(frozen=True)
class Context:
    """Everything ``decide`` may look at. ``now`` lives here so ``--as-of`` is honest."""

    now: datetime
    categories: Mapping[str, Category]
    subjects: Mapping[str, Subject]
    holds: tuple[Hold, ...] = ()
    requests: Mapping[str, ErasureRequest] = field(default_factory=dict)
