"""The set-based path: due rows are deleted (or anonymized) inside the database, range by range.

Per-subject cutoffs and held subjects live in a temporary table, kept equal to the latest
``plan.refresh()`` inside every batch's transaction. Each batch takes the next
``batch_size`` keys (``key > last``, ordered, one index probe for the upper bound) and runs
one ``DELETE … WHERE key > lo AND key <= hi AND <due> RETURNING …`` — it reads only its own
key range, and rows never travel to Python to be deleted.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from retention_core import Action, BackendError, Cutoffs, Outcome, PushdownPlan, Source, Status, Survey
from retention_core.backend import StreamedBatch

from .clock import Clock
from .dialects import Flavor, first_line
from .rows import Row, TableOps, UnreadableRow
from .streaming import streamer_for

#: A subject's mode in the cutoff table. HELD rows are never due, like NEVER ones, but are
#: told apart so that :func:`survey` can count held rows with the same table.
NEVER, EVERYTHING, UP_TO, HELD = 0, 1, 2, 3
#: At most this many held subjects are written into a statement itself (more: looked up in the
#: cutoff table, one index probe per row).
INLINE_HELD = 1000
#: What :meth:`CutoffTable.verdict` says of a row; survey counts rows scan reports as problems
#: (a NULL key, a created value that is not a usable timestamp) as UNLISTED.
KEPT, DUE, UNDER_HOLD, UNLISTED = 0, 1, 2, 3


def mode_of(cutoff: datetime | None, clock: Clock, flavor: Flavor) -> tuple[int, Any]:
    """(mode, bound) for one cutoff: nothing due, every row due, or rows up to a bound."""
    if cutoff is None or clock.due_nothing(cutoff):
        return NEVER, None
    if clock.due_everything(cutoff):
        return EVERYTHING, None
    return UP_TO, flavor.cutoff_value(clock.bound(cutoff))


class CutoffTable:
    """A temporary table mirroring the current Cutoffs: subjects that differ from the default."""

    def __init__(self, ops: TableOps) -> None:
        self.ops = ops
        self.flavor = ops.flavor
        self.clock = ops.info.clock
        self._new_table()

    def _new_table(self) -> None:
        self.table = sa.Table(
            f"retention_cutoffs_{uuid.uuid4().hex[:12]}", sa.MetaData(),
            sa.Column("s", self.flavor.probe_type(), primary_key=True),
            sa.Column("mode", sa.SmallInteger(), nullable=False),
            sa.Column("cutoff", self.flavor.cutoff_type(self.ops.info.created), nullable=True),
            prefixes=["TEMPORARY"])
        self.loaded: dict[str, tuple[int, Any]] | None = None  # what the table holds now
        self._base: dict[str, tuple[int, Any]] = {}  # per-subject rows, before holds
        self._held: frozenset[str] = frozenset()
        self._per_subject: Mapping[str, datetime | None] | None = None
        self._default: datetime | None = None

    def sync(self, conn: sa.Connection, cutoffs: Cutoffs) -> tuple[int, Any]:
        """Make the table equal *cutoffs* (inside the caller's transaction); return the default.

        Between batches usually only holds change: then only the subjects whose hold came or
        went are touched, so a plan with a million subjects costs little per batch.
        """
        if self.loaded is None:
            self.table.create(conn)
            self.loaded = {}
        held = frozenset(cutoffs.held_subjects)
        if cutoffs.per_subject != self._per_subject or cutoffs.default != self._default:
            self._base = {s: mode_of(c, self.clock, self.flavor) for s, c in cutoffs.per_subject.items()
                          if c != cutoffs.default}
            self._per_subject, self._default = dict(cutoffs.per_subject), cutoffs.default
            touched: set[str] = set(self.loaded) | set(self._base) | held
        else:
            touched = set(self._held | held)
        self._apply(conn, {s: (HELD, None) if s in held else self._base.get(s) for s in touched})
        self._held = held
        return mode_of(cutoffs.default, self.clock, self.flavor)

    def _apply(self, conn: sa.Connection, changes: dict[str, tuple[int, Any] | None]) -> None:
        """Bring each subject in *changes* to its row (None: no row), touching only differences."""
        assert self.loaded is not None
        loaded = self.loaded
        stale = [s for s, v in changes.items() if s in loaded and loaded[s] != v]
        fresh = [s for s, v in changes.items() if v is not None and loaded.get(s) != v]
        wanted = {s: v for s, v in changes.items() if v is not None}
        try:
            probes = {s: self.flavor.probe_value(s) for s in set(stale) | set(fresh)}
        except ValueError as exc:
            raise BackendError(f"cannot apply per-subject cutoffs: {exc}") from None
        for start in range(0, len(stale), 1000):
            part = [probes[s] for s in stale[start:start + 1000]]
            conn.execute(sa.delete(self.table).where(self.table.c.s.in_(part)))
        if fresh:
            conn.execute(sa.insert(self.table), [{"s": probes[s], "mode": wanted[s][0], "cutoff": wanted[s][1]}
                                                 for s in fresh])
        for s in stale:
            del loaded[s]
        loaded.update({s: wanted[s] for s in fresh})

    def verdict(self, default: tuple[int, Any]) -> ColumnElement[int]:
        """DUE, UNDER_HOLD or KEPT for each row, from its subject's cutoff row or the default.

        The cutoff table appears once in it (MariaDB cannot open a temporary table twice in
        one statement), so push-down and survey select with this one expression.
        """
        created = self.flavor.created(self.ops.info.created)
        mode, bound = default
        if mode == EVERYTHING:
            fallback: ColumnElement[Any] = sa.literal(DUE)
        elif mode == UP_TO:
            value = sa.literal(bound, type_=self.flavor.cutoff_type(self.ops.info.created))
            fallback = sa.case((created <= value, DUE), else_=KEPT)
        else:
            fallback = sa.literal(KEPT)
        if not self.loaded:
            # No subject differs from the default (no erasure request, minor or held subject; a
            # creation clock): one comparison per row, without a lookup in the cutoff table.
            return fallback
        held = [s for s, (m, _) in self.loaded.items() if m == HELD]
        if len(held) == len(self.loaded) and len(held) <= INLINE_HELD:
            # Only holds differ from the default, and few: the held subjects' exact texts in the
            # statement. A lookup in the cutoff table per row doubled a batch's time (measured on
            # PostgreSQL, issue 16). NULL IN (…) is not true, so a NULL subject gets the default,
            # as the lookup (no row for NULL) gives it.
            probes = [self.flavor.probe_value(s) for s in held]
            return sa.case((self.flavor.probe(self.ops.info.subject).in_(probes), UNDER_HOLD), else_=fallback)
        t = self.table.c
        per_subject = (sa.select(sa.case((t.mode == HELD, UNDER_HOLD),
                                         (t.mode == EVERYTHING, DUE),
                                         (sa.and_(t.mode == UP_TO, created <= t.cutoff), DUE), else_=KEPT))
                       .where(t.s == self.flavor.probe(self.ops.info.subject))
                       .scalar_subquery())
        return sa.func.coalesce(per_subject, fallback)

    def due(self, default: tuple[int, Any]) -> ColumnElement[bool]:
        """True for rows whose subject's cutoff (or the default) makes them due."""
        return self.verdict(default) == DUE

    def forget(self, conn: sa.Connection) -> None:
        """After a rollback the table's state is unknown: drop it and start a new one."""
        try:
            with conn.begin():
                self.table.drop(conn, checkfirst=False)
        except SQLAlchemyError:
            pass  # it was never created, or the rollback already removed it
        self._new_table()

    def drop(self, conn: sa.Connection) -> None:
        if self.loaded is not None:
            with conn.begin():
                self.table.drop(conn)
            self.loaded = None


def survey(ops: TableOps, engine: sa.Engine, cutoffs: Cutoffs) -> Survey:
    """Count the rows scan would list, those push-down would act on, the held ones, and the
    rows scan would report as problems (never acted on).

    One grouped ``SELECT`` over the push-down's own :meth:`CutoffTable.verdict`, in one short
    transaction (the cutoff table is filled inside it, as a push-down batch fills it). Held
    rows are grouped by the subject's exact text (the probe), never by the column's
    collation, which may merge ``Acme`` with ``ACME``.
    """
    with engine.connect() as conn:
        if cutoffs.held:
            usable = sa.case((ops.usable(), KEPT), else_=UNLISTED).label("v")
            with conn.begin():
                counts = {int(v): int(n) for v, n in
                          conn.execute(ops.select(usable, sa.func.count()).where(ops.scope()).group_by(usable))}
            total = counts.get(KEPT, 0)
            return Survey(total=total, due=0, held=total, problems=counts.get(UNLISTED, 0))
        table = CutoffTable(ops)
        try:
            with conn.begin():
                default = table.sync(conn, cutoffs)
                counts = list(conn.execute(_survey_query(ops, table.verdict(default), held=bool(table.loaded))))
            table.drop(conn)
        except BaseException:
            conn.invalidate()  # never hand a connection with our temp table back to the pool
            raise
    by_verdict: dict[int, int] = {}
    held_by_subject: dict[str, int] = {}
    for verdict, subject, count in counts:
        by_verdict[int(verdict)] = by_verdict.get(int(verdict), 0) + int(count)
        if int(verdict) == UNDER_HOLD:
            text = ops.flavor.from_probe(subject)
            held_by_subject[text] = held_by_subject.get(text, 0) + int(count)
    problems = by_verdict.pop(UNLISTED, 0)
    return Survey(total=sum(by_verdict.values()), due=by_verdict.get(DUE, 0), held=by_verdict.get(UNDER_HOLD, 0),
                  held_by_subject=held_by_subject, problems=problems)


def _survey_query(ops: TableOps, verdict: ColumnElement[int], *, held: bool) -> sa.Select[Any]:
    """(verdict, held subject's probe or NULL, rows) over the rows in scope, unusable ones as UNLISTED.

    The verdict is computed once per row in a derived table, so the cutoff table appears
    once in the statement. Without *held* subjects (an empty cutoff table) it is a plain
    count per verdict.
    """
    verdict = sa.case((ops.usable(), verdict), else_=UNLISTED)
    if not held:
        v = verdict.label("v")
        return ops.select(v, sa.null(), sa.func.count()).where(ops.scope()).group_by(v)
    rows = (ops.select(verdict.label("v"), ops.flavor.probe(ops.info.subject).label("p"))
            .where(ops.scope()).subquery())
    held_subject = sa.case((rows.c.v == UNDER_HOLD, rows.c.p), else_=sa.null()).label("hs")
    return sa.select(rows.c.v, held_subject, sa.func.count()).group_by(rows.c.v, held_subject)


class RangeWalk:
    """One push-down run over one source."""

    def __init__(self, ops: TableOps, engine: sa.Engine, batch_size: int, hash_key: bytes | None,
                 streamed_batch_size: int | None = None) -> None:
        self.ops = ops
        self.engine = engine
        self.batch_size = batch_size
        self.hash_key = hash_key
        self.streamed_batch_size = streamed_batch_size or batch_size

    def run(self, source: Source, plan: PushdownPlan) -> Generator[list[Outcome] | StreamedBatch, None, None]:
        action = plan.cutoffs.action
        if plan.cutoffs.held or action not in (Action.DELETE, Action.ANONYMIZE):
            return
        status = Status.DELETED if action is Action.DELETE else Status.ANONYMIZED
        streamer = streamer_for(self.ops) if plan.evidence is not None and action is Action.DELETE else None
        if streamer is not None:
            self.batch_size = self.streamed_batch_size
        # Files never reused: a walk started again (the core restarts after a rollback) gets its own names.
        walk, numbers = uuid.uuid4().hex[:8], itertools.count(1)
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: cannot connect: {first_line(exc)}") from None
        cutoffs = CutoffTable(self.ops)
        try:
            last: Any = None
            while True:
                trans = conn.begin()
                try:
                    current = plan.refresh()
                    if current.held or current.action is not action:
                        trans.rollback()
                        return
                    default = cutoffs.sync(conn, current)
                    hi = self._upper_bound(conn, last)
                    where = self._where(cutoffs, default, last, hi)
                    if streamer is not None:
                        assert plan.evidence is not None
                        outcomes: list[Outcome] | StreamedBatch = streamer.delete(
                            conn, where, plan.evidence / f"{walk}-{next(numbers):06d}.tsv")
                    else:
                        outcomes = self._outcomes(source, self._apply(conn, action, where), status)
                except (SQLAlchemyError, UnreadableRow) as exc:
                    trans.rollback()
                    if isinstance(exc, SQLAlchemyError) and (conn.invalidated or conn.closed):
                        raise BackendError(f"source {source.name!r}: lost the database connection: "
                                           f"{first_line(exc)}") from None
                    cutoffs.forget(conn)
                    hi = yield from self._one_by_one(conn, source, plan, cutoffs, action, status, last, exc)
                else:
                    # Yield before committing: the core journals these rows as intent first, and the
                    # commit happens when it resumes us, so no deletion can precede its journal line.
                    yield from _commit_after_yield(trans, outcomes)
                if hi is None:
                    return
                last = hi
        finally:
            try:
                cutoffs.drop(conn)
            except SQLAlchemyError:
                conn.invalidate()  # never hand a connection with our temp table back to the pool
            conn.close()

    # -- pieces -----------------------------------------------------------------------------------------
    def _range(self, last: Any, hi: Any) -> list[ColumnElement[bool]]:
        key = self.ops.key
        parts = []
        if last is not None:
            parts.append(key > last)
        if hi is not None:
            parts.append(key <= hi)
        return parts

    def _where(self, cutoffs: CutoffTable, default: tuple[int, Any], last: Any, hi: Any) -> ColumnElement[bool]:
        return sa.and_(*self._range(last, hi), self.ops.valid(), cutoffs.due(default))

    def _upper_bound(self, conn: sa.Connection, last: Any) -> Any:
        """The key ``batch_size`` keys after *last*; None when fewer remain (the last range)."""
        key = self.ops.key
        query = self.ops.select(key).where(*self._range(last, None), key.is_not(None)).order_by(key)
        return conn.execute(query.offset(self.batch_size - 1).limit(1)).scalar()

    def _apply(self, conn: sa.Connection, action: Action, where: ColumnElement[bool]) -> list[Row]:
        if action is Action.DELETE:
            return self.ops.delete_where(conn, where)
        return self.ops.anonymize_where(conn, where, self.hash_key)

    def _outcomes(self, source: Source, rows: Sequence[Row], status: Status, error: str | None = None
                  ) -> list[Outcome]:
        return [Outcome(record, status, error) for record in self.ops.records(source.name, source.category, rows)]

    def _one_by_one(self, conn: sa.Connection, source: Source, plan: PushdownPlan, cutoffs: CutoffTable,
                    action: Action, status: Status, last: Any, error: Exception
                    ) -> Generator[list[Outcome] | StreamedBatch, None, Any]:
        """The range failed as a whole: list its due rows again and act on each in its own transaction.

        Yields each row's outcome (before committing it) and returns the range's upper bound
        (None: it was the last range, or a hold now covers the whole source). A row whose
        created value cannot be read is left alone: without a record it could not be journalled,
        and scan reports it as a problem.
        """
        try:
            with conn.begin():
                current = plan.refresh()
                if current.held or current.action is not action:
                    return None
                default = cutoffs.sync(conn, current)
                hi = self._upper_bound(conn, last)
                where = self._where(cutoffs, default, last, hi)
                due = conn.execute(self.ops.select(*self.ops.columns()).where(where)).all()
        except SQLAlchemyError as exc:
            raise BackendError(f"source {source.name!r}: a batch failed ({first_line(error)}) and its rows "
                               f"could not be listed again: {first_line(exc)}") from None
        for row in due:
            try:
                self.ops.records(source.name, source.category, [row])
            except UnreadableRow:
                continue
            trans = conn.begin()
            try:
                single = sa.and_(self.ops.keys_equal([row[0]]), where)
                done = self._apply(conn, action, single)
            except SQLAlchemyError as exc:
                trans.rollback()
                yield self._outcomes(source, [row], Status.FAILED, first_line(exc))
                continue
            yield from _commit_after_yield(trans, self._outcomes(source, done, status))
        return hi


def _commit_after_yield(trans: sa.RootTransaction, outcomes: list[Outcome] | StreamedBatch
                        ) -> Iterator[list[Outcome] | StreamedBatch]:
    """Hand *outcomes* to the core, then commit; roll back if the core stops instead of resuming.
    (An empty streamed batch was never yielded: nothing names its file, so it is removed.)"""
    if isinstance(outcomes, StreamedBatch) and not outcomes.rows:
        outcomes.path.unlink(missing_ok=True)
    elif outcomes:
        try:
            yield outcomes
        except BaseException:  # GeneratorExit, or the core failed to journal: keep the rows
            trans.rollback()
            raise
    trans.commit()
