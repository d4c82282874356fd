"""Property: on random situations, the set-based path affects exactly what per-record ``decide`` does,
and ``survey`` counts exactly that many.

Among the rows, impossible dates ('2021-02-29', '2020-04-31', '24:00:00', in every spelling):
the scan reports them as problems, so survey must count them as problems and neither the
itemized nor the streamed push-down may delete them (red team F01: SQLite's datetime() echoes
such text, and a database-side check built on it deleted them).

SQLite only, so that many examples stay fast; the same comparison runs on all three
databases with fixed seeds in ``test_pushdown.py``.
"""

from __future__ import annotations

import calendar
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_core import Action, Problem, PushdownPlan
from retention_core.engine import cutoffs

from .conftest import Database, Records, records_table
from .scenarios import per_record, scenario, set_based


def rows(db: Database, records: Records) -> set[Any]:
    """Every row, created as stored text (a DateTime column would fail to read an impossible date)."""
    t = records.table
    with db.engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.id, t.c.subject, sa.cast(t.c.created, sa.String), t.c.name,
                                          t.c.email)).all())


@st.composite
def impossible(draw: st.DrawFn) -> str:
    """Text SQLite's date functions read but that is no timestamp for Python: a day the month
    lacks (29-31; day 32 SQLite refuses too), or else hour 24; either separator, a fraction or not."""
    year, month, day = draw(st.integers(1990, 2025)), draw(st.integers(1, 12)), draw(st.integers(1, 31))
    time = "00:00:00" if day > calendar.monthrange(year, month)[1] else "24:00:00"
    text = f"{year:04d}-{month:02d}-{day:02d}{draw(st.sampled_from([' ', 'T']))}{time}"
    return text + draw(st.sampled_from(["", ".5", ".123456"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), after=st.sampled_from(["created", "service_end"]),
       action=st.sampled_from([Action.DELETE, Action.ANONYMIZE]), text_keys=st.booleans(),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
       batch_size=st.integers(1, 40), held_subjects=st.integers(0, 3),
       bad=st.lists(impossible(), max_size=4))
def test_set_based_equals_per_record(seed: int, after: str, action: Action, text_keys: bool, zone: str,
                                     batch_size: int, held_subjects: int, bad: list[str]) -> None:
    case = scenario(seed, after=after, action=action, count=60, text_keys=text_keys)
    case.holds = case.holds[:held_subjects]
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'p.db'}"
        db = Database("sqlite", url, sa.create_engine(url))
        key_type = sa.String(16) if text_keys else None
        tables = [records_table(db, key_type=key_type, naive=True, timezone=zone) for _ in range(3)]
        a, b, c = tables
        for table in tables:
            table.add(case.rows)
            for n, text in enumerate(bad):
                db.execute(f"INSERT INTO {table.table.name} (id, subject, created, email) VALUES (:k, 's01', :c, 'e')",
                           {"k": f"z{n:07d}" if text_keys else 10**7 + n, "c": text})
        options = {"batch_size": batch_size, "anonymize": {"name": None, "subject": None}}
        ctx, source = case.context(), case.source()
        with a.backend(**options) as backend:
            expected = per_record(backend, source, ctx)
            problems = sum(isinstance(p, Problem) for p in backend.scan(source))
        with b.backend(**options) as backend:
            surveyed = backend.survey(source, cutoffs(source, ctx))
            got, batches = set_based(backend, source, ctx)
        assert got == expected
        assert surveyed.due == len(expected), "survey must count what push-down then affects"
        assert surveyed.problems == problems >= len(bad), "survey counts the problems the scan reports"
        assert rows(db, a) == rows(db, b)
        if action is Action.DELETE:  # the streamed path: what a run without --report takes
            plan = cutoffs(source, ctx)
            with c.backend(**options) as backend:
                for _ in backend.push_down(source, PushdownPlan(plan, lambda: plan, evidence=Path(folder) / "ev")):
                    pass
            assert rows(db, a) == rows(db, c), "the streamed push-down deletes what the scan does"
        assert all(len(batch) <= batch_size for batch in batches)
        db.engine.dispose()
