"""Impossible calendar dates are problems, never deleted, on every path (red team F01, F02).

The per-record scan parses ``created`` in Python, where '2020-02-30' or '24:00:00' is no date;
the set-based paths (survey, itemized and streamed push-down) decide usability in the
database. These tests hold the two to one verdict: SQLite's datetime() echoed such text
unchanged, and a MariaDB DATETIME stored under ``ALLOW_INVALID_DATES`` passed the zero-date
check, so the push-down deleted rows the scan and the dry run called listing problems.
PostgreSQL's timestamp types cannot hold them (and text created columns are not accepted).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from retention_core import Action, Cutoffs, Problem, PushdownPlan, Record
from retention_core.backend import StreamedBatch

from .conftest import Database, Records, records_table
from .scenarios import scenario

ALL = datetime.max.replace(tzinfo=timezone.utc)
#: Values a column of each database can hold that are not real timestamps.
IMPOSSIBLE = {
    "sqlite": ["2020-02-30 00:00:00", "2021-02-29 12:00:00", "2020-04-31 00:00:00", "2020-06-31 23:59:59",
               "2020-01-01 24:00:00", "2020-02-30T00:00:00", "2020-02-30 00:00:00.5"],
    "mariadb": ["2020-02-30 00:00:00", "2021-02-29 12:00:00", "2020-04-31 00:00:00", "2020-11-31 08:00:00"],
}


def impossible_table(db: Database) -> tuple[Records, set[str]]:
    """Real dates (one a leap day) at keys 1-3; the dialect's impossible ones from key 10."""
    if db.kind not in IMPOSSIBLE:
        pytest.skip(f"{db.kind} cannot store an impossible date in a timestamp column")
    records = records_table(db, naive=True)
    records.add([(1, "minor", datetime(2020, 1, 1)), (2, "minor", datetime(2020, 2, 29)),
                 (3, "minor", datetime(2021, 2, 28, 23, 59, 59))])
    bad = {str(k) for k in range(10, 10 + len(IMPOSSIBLE[db.kind]))}
    with db.engine.begin() as conn:
        if db.kind == "mariadb":
            conn.exec_driver_sql("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        for key, text in enumerate(IMPOSSIBLE[db.kind], start=10):
            conn.exec_driver_sql(f"INSERT INTO {records.table.name} (id, subject, created, email) "
                                 f"VALUES ({key}, 'minor', '{text}', 'e')")
    return records, bad


@pytest.mark.parametrize("streamed", [False, True], ids=["itemized", "streamed"])
def test_impossible_dates_are_problems_never_deleted_by_push_down(db: Database, tmp_path: Path,
                                                                  streamed: bool) -> None:
    records, bad = impossible_table(db)
    source = scenario(0).source()
    everything = Cutoffs(Action.DELETE, held=False, held_subjects=frozenset(), per_subject={"minor": ALL})
    plan = PushdownPlan(everything, lambda: everything, evidence=tmp_path / "evidence" if streamed else None)
    with records.backend() as backend:
        listed = list(backend.scan(source))
        problems = {p.location for p in listed if isinstance(p, Problem)}
        scanned = {r.location for r in listed if isinstance(r, Record)}
        survey = backend.survey(source, everything)
        kinds = {type(batch) for batch in backend.push_down(source, plan)}
    assert problems == bad, "the scan reports each impossible date as a problem"
    assert scanned == {"1", "2", "3"}
    assert records.keys() == bad, "the push-down deleted exactly the rows the scan lists, no problem row"
    assert (survey.total, survey.due, survey.problems) == (3, 3, len(bad)), "survey counts as the scan reports"
    assert kinds == ({StreamedBatch} if streamed else {list})
