"""The one interface every storage plugin implements.

A backend only lists and deletes. It knows nothing of rules, holds or subjects' lifecycles:
the core decides, the backend executes and reports exactly one :class:`Outcome` per record.
Capabilities are class attributes so the core (and the conformance suite in
:mod:`retention_core.testing`) can see what a backend offers without calling it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from .model import Action, Outcome, Problem, Record, Source
from .options import Options


class Backend(ABC):
    """Abstract storage backend, one instance per configured source.

    Contract (the conformance suite checks each point):

    * ``__init__(options)`` reads every option it accepts through the typed getters of
      :class:`~retention_core.options.Options` and ends with ``options.done()``; invalid or
      unknown options raise :class:`~retention_core.errors.ConfigError` naming the key. It
      must not touch storage; :meth:`check` is where connectivity and preconditions are
      verified.
    * :meth:`scan` is lazy: it yields records while paging through storage and never builds
      a list of everything. Pagination and retries of transient errors happen inside.
      ``created`` is timezone-aware UTC. Every item the source owns is yielded exactly once
      (one per version where storage keeps versions). Each record carries in ``stamp`` (and
      ``version``, ``created``, ``subject``) what the scan saw, enough for the guard below.
    * **One bad item never stops a scan.** What cannot be listed as a record — an unreadable
      directory, a mount point not crossed, a date out of range, an unparseable or NULL
      ``created``, a name the API cannot carry — is yielded as a :class:`~retention_core.model.Problem`
      with its reason, and the scan goes on. A scan raises only when it cannot list the
      source at all (the core then stops before deleting anything).
    * **Delete only what was seen (the guard).** :meth:`delete` removes a record only if
      storage still holds exactly what the scan saw — the same object, not one re-created,
      replaced, modified or moved to another subject since — and checks it atomically with
      the deletion where storage allows (fs: device, inode, size, mtime_ns and ctime_ns on the
      open file before ``unlinkat``; S3: by ``VersionId``, or a conditional delete on the
      ``ETag``; SQL: the scanned key *and* scanned values in the ``DELETE``'s ``WHERE``).
      Otherwise the outcome is ``changed``: kept, reported, decided again next run.
    * :meth:`delete` yields exactly one :class:`Outcome` per record given, in any order:
      ``deleted``; ``already_gone`` when it did not exist (deleting is idempotent);
      ``changed`` (the guard); ``refused`` when storage itself refused (a lock, a retention
      setting) — reported as held by storage, never retried; ``failed`` with the error text
      otherwise. It raises only for programming errors: one bad record must not hide the
      others' outcomes.
    * **Holds fence the batch.** The core calls :meth:`delete` (and :meth:`anonymize`,
      :meth:`push_down`'s batches) only inside the state store's batch fence, with holds read
      under it; a backend must not defer deletions past the return of its outcomes (no
      background deletes), so that ``retention holds place`` can wait for the batch in flight.
    * :meth:`close` releases connections; the core calls it once, after the last use.
    """

    #: The name used in config (``backend: fs``). Set by each subclass.
    name: ClassVar[str] = ""
    #: How many records the core hands to one :meth:`delete` call (an instance may set its own,
    #: e.g. from an option).
    batch_size: int = 1000
    #: Storage can refuse a deletion (Object Lock); such records get ``refused``.
    can_refuse: ClassVar[bool] = False
    #: :meth:`anonymize` is implemented (``action: anonymize`` categories may use it).
    can_anonymize: ClassVar[bool] = False
    #: :meth:`push_down` is implemented: deletion as set operations inside storage.
    can_push_down: ClassVar[bool] = False
    #: :meth:`tally` is implemented: a dry run may count a plain source instead of scanning it.
    can_tally: ClassVar[bool] = False

    def __init__(self, options: Options) -> None:
        options.done()

    @abstractmethod
    def scan(self, source: Source) -> Iterator[Record | Problem]:
        """Yield every record in *source*, lazily, with ``record.source == source.name``, and a
        :class:`~retention_core.model.Problem` for anything it cannot list as a record."""

    @abstractmethod
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        """Delete *records*; yield exactly one outcome for each."""

    def anonymize(self, records: Sequence[Record]) -> Iterator[Outcome]:
        """Strip identity from *records* but keep them (status ``anonymized``)."""
        raise NotImplementedError(f"backend {self.name!r} cannot anonymize")

    def push_down(self, source: Source, plan: PushdownPlan
                  ) -> Generator[list[Outcome] | StreamedBatch, None, None]:
        """Optional fast path: apply *plan* inside storage, one short transaction per batch.

        Must select exactly what per-record :func:`retention_core.engine.decide` would and
        call ``plan.refresh()`` inside every batch's transaction (so a hold placed mid-run
        protects the rest). Yield each batch's outcomes, naming every affected record,
        **before committing it**, and commit when the generator is resumed: the core journals
        the yielded records as intent first and as outcome after the commit, so a crash in
        between leaves intents a later run settles, and never an unjournalled deletion.
        Roll back if the generator is closed instead of resumed (``GeneratorExit``).
        """
        raise NotImplementedError(f"backend {self.name!r} has no push-down path")

    def survey(self, source: Source, cutoffs: Cutoffs) -> Survey:
        """Optional, with :meth:`push_down`: count *source*'s records inside storage.

        Lets the core apply the safety limits to a push-down source without reading every
        record into Python first. ``total`` counts what :meth:`scan` would yield; ``due``
        what :meth:`push_down` would act on under *cutoffs* (``Cutoffs.due``); ``held`` those
        under a hold (every record when ``cutoffs.held``, else those whose subject is in
        ``cutoffs.held_subjects``), shown as held in the report; ``held_by_subject`` splits
        that count by subject (left empty when the whole source is held), so the report can
        say how many records each hold protected. A backend without it leaves
        the core to scan the source record by record, as it does without push-down.
        """
        raise NotImplementedError(f"backend {self.name!r} cannot count in storage")

    def tally(self, source: Source, cutoff: datetime, on_problem: Callable[[Problem], None]) -> Tally:
        """Optional, with ``can_tally``: count *source* as :meth:`scan` would list it, without
        a :class:`~retention_core.model.Record` per item.

        A dry run without report items asks it for a source without ``match`` whose category
        counts from creation and that no hold covers: every record is then plain (no subject,
        the source's category), and decided by one comparison. ``total`` counts what
        :meth:`scan` would yield as records, ``due`` those created at or before *cutoff*
        (exactly as the scan's ``created`` compares); every Problem the scan would yield goes
        to *on_problem* instead. The bench measured a Record, its stamp and the loop around it
        at more than the listing itself on a 200,000-file tree (docs/performance.md).
        """
        raise NotImplementedError(f"backend {self.name!r} cannot tally")

    def partitions(self, source: Source) -> list[Partition]:
        """The independently scannable parts of *source* (for a distributed run).

        The records (and problems) :meth:`scan_partition` yields over all of them are exactly
        those of :meth:`scan`: same keys and stamps, none twice, none missing. Default: one
        partition, the whole source (token ``""``)."""
        return [Partition(source.name, "", "the whole source")]

    def scan_partition(self, source: Source, partition: Partition) -> Iterator[Record | Problem]:
        """Yield the records of one of :meth:`partitions`, lazily, as :meth:`scan` would."""
        if partition.token == "":
            return self.scan(source)
        raise NotImplementedError(f"backend {self.name!r} has no partition {partition.label!r}")

    def check(self, source: Source) -> None:  # noqa: B027 - optional, a no-op by default
        """Verify preconditions before enforcing (reachability, MFA Delete …); raise ConfigError."""

    def territory(self, source: Source) -> str | None:
        """Where in storage *source* lists, as text such that two sources of this backend can
        list the same record exactly when one's territory is a prefix of the other's.

        fs: the resolved root with a trailing ``/``; S3: endpoint, bucket and prefix; SQL: the
        database and table. The core refuses two overlapping sources (a hold scoped to one
        would not protect the record when the other lists it) unless the policy declares the
        overlap (``overlaps:``). ``None``, the default: the backend cannot tell; no check.
        """
        return None

    def address(self, source: Source, given: str) -> str | None:
        """The location *source* lists for an address as people have it — an absolute path, an
        ``s3://bucket/key`` URI — or None when *source* cannot hold it (the default: a backend
        without such addresses). Lets ``explain`` and ``audit find`` ask only the right source."""
        return None

    def present(self, source: Source, location: str, version: str | None = None) -> bool | None:
        """Whether *location* (that *version* of it, on versioned storage) is in storage now, when
        the backend can look it up without a scan (fs, SQL, S3); None (the default) when only a
        scan can tell. Recovery asks it before reading a record's absence from a listing as its
        deletion (a SQL row that left the filter, an object an S3 Inventory report left out), so
        an error must raise, never answer False."""
        return None

    def fingerprint(self, source: Source) -> str | None:
        """What identifies the storage *source* lists right now (default: its :meth:`territory`).

        Journalled with every deletion intent: a later run reads absence as evidence of a
        deletion only when it listed the same storage. A backend whose territory can be another
        thing under the same name (fs: a mount point with its volume not mounted, a root
        replaced by another directory) adds what tells them apart (the root's device and inode).
        """
        return self.territory(source)

    def listed_at(self, source: Source) -> datetime | None:
        """When the listing :meth:`scan` reads was taken, if not during this run (an S3 Inventory
        report's time); None (the default) for a live listing.

        A listing taken earlier is no evidence about what happened since: recovery does not
        settle an intent journalled after it, and an erasure request received after it is not
        proven done by it (objects of the subject written before the request may be missing
        from it)."""
        return None

    def warnings(self, source: Source) -> list[str]:
        """Things a person should know before enforcing (shown by validate and dry-run)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Release connections and handles."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Partition:
    """One independently scannable part of a source: an fs top-level directory, an S3 prefix or
    inventory data file, a SQL key range. ``token`` is backend-defined JSON-able text; ``""`` is
    the whole source. Partitions travel to other processes, so they hold text only."""

    source: str
    token: str
    #: For people: ``"prefix 2024/"``, ``"inventory data/abc.parquet"``.
    label: str


@dataclass(frozen=True)
class Cutoffs:
    """The engine's decision for one single-category source, in set form.

    A record of subject ``s`` created at ``c`` is due exactly when the source is not held,
    ``s`` is not in ``held_subjects``, and ``c <= per_subject.get(s, default)`` (``None``
    means nothing of that subject is due). Records of subjects outside ``per_subject`` use
    ``default``.
    """

    action: Action
    held: bool
    held_subjects: frozenset[str]
    per_subject: Mapping[str, datetime | None] = field(default_factory=dict)
    default: datetime | None = None

    def due(self, subject: str | None, created: datetime) -> bool:
        if self.held or (subject is not None and subject in self.held_subjects):
            return False
        cutoff = self.per_subject.get(subject, self.default) if subject is not None else self.default
        return cutoff is not None and created <= cutoff


@dataclass(frozen=True)
class Survey:
    """A push-down source's records counted inside storage (see :meth:`Backend.survey`)."""

    total: int
    due: int
    held: int = 0
    held_by_subject: Mapping[str, int] = field(default_factory=dict)
    #: Items :meth:`Backend.scan` would yield as a Problem (not in ``total``); never acted on.
    problems: int = 0


@dataclass(frozen=True)
class Tally:
    """A plain source counted by :meth:`Backend.tally`: records listed, and those due."""

    total: int
    due: int


@dataclass(frozen=True)
class PushdownPlan:
    """What a push-down backend needs: the cutoffs now, and a way to re-read holds.

    ``evidence``: a directory the core chose for streamed batches' evidence files (the source
    was surveyed, not itemized, and the action deletes). A backend that can stream a batch's
    deleted rows exactly may then yield a :class:`StreamedBatch` instead of a list of outcomes;
    None (``--report``, anonymize) or a key it cannot stream exactly: lists of outcomes.
    """

    cutoffs: Cutoffs
    refresh: Callable[[], Cutoffs]
    evidence: Path | None = None


@dataclass(frozen=True)
class StreamedBatch:
    """A push-down batch whose deleted rows went to an evidence file as bytes, not to Python.

    The file holds one row per deleted record, columns
    :data:`~retention_core.audit.STREAMED_FIELDS` (location as exact text, subject) in
    ``COPY`` text format, and is durable (file and directory fsynced) when the batch is
    yielded — before the core journals the intent that names it; the transaction commits only
    when the generator is resumed, exactly as for a list of outcomes. All-or-nothing: every
    row is ``deleted`` once committed."""

    path: Path
    rows: int
    sha256: str
