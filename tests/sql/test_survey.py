"""``survey`` counts in the database exactly what scan, ``decide`` and push-down would count.

The core applies the safety limits to a push-down source from these counts instead of a
per-row scan, so a count that drifts from the push-down's selection would let a run delete
more than its limits allow: every test compares with the per-record path or with what
push-down then actually does.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from retention_core import Action, BackendError, Cutoffs, Options, Problem, PushdownPlan, Survey
from retention_core.engine import cutoffs, decide
from retention_sql.backend import SqlBackend

from .conftest import Database, Records, records_table
from .scenarios import NOW, Scenario, hold, scenario


def expected_survey(backend: SqlBackend, case: Scenario, plan: Cutoffs) -> Survey:
    """The counts from a per-record scan: ``decide`` for due, ``held_subjects`` for held."""
    ctx, source = case.context(), case.source()
    records = list(backend.scan(source))
    due = [r for r in records if decide(r, ctx).action in (Action.DELETE, Action.ANONYMIZE)]
    assert len(due) == sum(plan.due(r.subject, r.created) for r in records), "the oracle disagrees with itself"
    if plan.held:
        return Survey(total=len(records), due=len(due), held=len(records))
    held = Counter(r.subject for r in records if r.subject in plan.held_subjects)
    return Survey(total=len(records), due=len(due), held=held.total(), held_by_subject=dict(held))


@pytest.mark.parametrize("after", ["created", "service_end"])
@pytest.mark.parametrize("seed", [1, 2])
def test_survey_counts_what_decide_selects(db: Database, after: str, seed: int) -> None:
    case = scenario(seed, after=after)
    records = records_table(db)
    records.add(case.rows)
    plan = cutoffs(case.source(), case.context())
    with records.backend() as backend:
        got = backend.survey(case.source(), plan)
        expected = expected_survey(backend, case, plan)
    assert expected.due and expected.held, "the scenario must have due and held rows"
    assert got == expected


def test_survey_due_is_what_push_down_then_deletes(db: Database) -> None:
    case = scenario(4, text_keys=True)
    records = records_table(db, key_type=sa.String(32), naive=True, timezone="America/New_York")
    records.add(case.rows)
    source = case.source()
    plan = cutoffs(source, case.context())
    with records.backend(batch_size=37) as backend:
        before = backend.survey(source, plan)
        deleted = sum(len(batch) for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan)))
        after = backend.survey(source, plan)
    assert before.due == deleted > 0
    assert after == Survey(total=before.total - deleted, due=0, held=before.held,
                          held_by_subject=before.held_by_subject)


def test_a_held_source_is_all_held_and_nothing_due(records: Records) -> None:
    case = scenario(5)
    records.add(case.rows)
    ctx = case.context(holds=(hold("H-cat", category=case.category.name),))
    plan = cutoffs(case.source(), ctx)
    assert plan.held
    with records.backend() as backend:
        got = backend.survey(case.source(), plan)
    assert got == Survey(total=len(case.rows), due=0, held=len(case.rows))


def test_rows_scan_reports_as_problems_are_counted_apart(db: Database) -> None:
    """Rows without a usable created value are problems, as scan reports them: counted as such,
    never in ``total`` or ``due``, whether the source is held or not."""
    records = records_table(db)
    old = NOW - timedelta(days=3000)
    records.add([(1, "a", old), (2, "a", None), (3, "b", old), (4, None, NOW), (5, "b", None)])
    source = scenario(0).source()
    plan = Cutoffs(Action.DELETE, False, frozenset({"b"}), default=NOW - timedelta(days=1))
    with records.backend() as backend:
        assert backend.survey(source, plan) == Survey(total=3, due=1, held=1, held_by_subject={"b": 1}, problems=2)
        assert backend.survey(source, Cutoffs(Action.DELETE, False, frozenset(), default=NOW)) == Survey(
            total=3, due=3, held=0, problems=2)
        assert backend.survey(source, Cutoffs(Action.DELETE, True, frozenset())) == Survey(
            total=3, due=0, held=3, problems=2)
        problems = [p for p in backend.scan(source) if isinstance(p, Problem)]
    assert sorted((p.location, p.subject) for p in problems) == [("2", "a"), ("5", "b")]


def test_per_subject_cutoffs_and_holds_in_one_count(records: Records) -> None:
    day = datetime(2024, 1, 1, tzinfo=timezone.utc)
    everything = datetime.max.replace(tzinfo=timezone.utc)
    rows = [(k, s, day + timedelta(days=d)) for k, (s, d) in enumerate(
        [("a", -1), ("a", 0), ("a", 1), ("b", 5), ("c", -9), ("c", 9), ("h", -9), (None, -1), (None, 1)], 1)]
    records.add(rows)
    plan = Cutoffs(Action.DELETE, False, frozenset({"h", "nobody"}),
                   per_subject={"b": everything, "c": None, "a": day}, default=day)
    expected_due = sum(plan.due(s, c) for _, s, c in rows)
    with records.backend() as backend:
        assert backend.survey(scenario(0).source(), plan) == Survey(total=9, due=expected_due, held=1,
                                                                       held_by_subject={"h": 1})
    assert expected_due == 4  # a@-1, a@0, b@5, None@-1


def test_subjects_that_only_look_alike_are_counted_apart(db: Database) -> None:
    """MariaDB's subquery cache once reused the cutoff of 'Acme' for 'ACME' (a case-insensitive
    column): counts must follow exact text, as push-down and Python's ``==`` do."""
    old = NOW - timedelta(days=3000)
    everything = datetime.max.replace(tzinfo=timezone.utc)
    plan = Cutoffs(Action.DELETE, False, frozenset({"acme ", "ünï"}), per_subject={"Acme": everything},
                   default=None)
    for names in (["Acme", "ACME", "acme ", "acme", "ünï", "unï"], ["ACME", "Acme", "acme", "acme ", "unï", "ünï"]):
        records = records_table(db)  # which look-alike the database meets first must not matter
        records.add((k, names[k % len(names)], old) for k in range(1, 61))
        with records.backend() as backend:
            got = backend.survey(scenario(0).source(), plan)
        assert got == Survey(total=60, due=10, held=20, held_by_subject={"acme ": 10, "ünï": 10})


def test_survey_leaves_nothing_behind(records: Records) -> None:
    """The cutoff table is dropped: surveying again on pooled connections gives the same answer."""
    case = scenario(6)
    records.add(case.rows)
    plan = cutoffs(case.source(), case.context())
    with records.backend() as backend:
        first = backend.survey(case.source(), plan)
        assert [backend.survey(case.source(), plan) for _ in range(3)] == [first] * 3


def test_a_failing_count_is_a_backend_error(records: Records) -> None:
    with records.backend() as backend:
        assert backend.ops is not None  # reflected while the table exists
        records.db.drop_all()
        with pytest.raises(BackendError, match="counting rows"):
            backend.survey(scenario(0).source(), Cutoffs(Action.DELETE, False, frozenset(), default=NOW))


def test_survey_needs_no_destructive_permission(db: Database) -> None:
    """Counting is not deleting: a table whose deletes would cascade can still be surveyed."""
    parent = records_table(db)
    db.table(db.name("child"), sa.Column("id", sa.Integer(), primary_key=True),
             sa.Column("parent", sa.Integer(), sa.ForeignKey(parent.table.c.id, ondelete="CASCADE")))
    parent.add([(1, "a", NOW - timedelta(days=3000))])
    with SqlBackend(Options(parent.options)) as backend:
        plan = Cutoffs(Action.DELETE, False, frozenset(), default=NOW)
        assert backend.survey(scenario(0).source(), plan) == Survey(total=1, due=1, held=0)
