"""Property: on random situations, the set-based path affects exactly what per-record ``decide`` does,
and ``survey`` counts exactly that many.

SQLite only, so that many examples stay fast; the same comparison runs on all three
databases with fixed seeds in ``test_pushdown.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_core import Action
from retention_core.engine import cutoffs

from .conftest import Database, records_table
from .scenarios import per_record, scenario, set_based


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), after=st.sampled_from(["created", "service_end"]),
       action=st.sampled_from([Action.DELETE, Action.ANONYMIZE]), text_keys=st.booleans(),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
       batch_size=st.integers(1, 40), held_subjects=st.integers(0, 3))
def test_set_based_equals_per_record(seed: int, after: str, action: Action, text_keys: bool, zone: str,
                                     batch_size: int, held_subjects: int) -> None:
    case = scenario(seed, after=after, action=action, count=60, text_keys=text_keys)
    case.holds = case.holds[:held_subjects]
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'p.db'}"
        db = Database("sqlite", url, sa.create_engine(url))
        key_type = sa.String(16) if text_keys else None
        a = records_table(db, key_type=key_type, naive=True, timezone=zone)
        b = records_table(db, key_type=key_type, naive=True, timezone=zone)
        a.add(case.rows)
        b.add(case.rows)
        options = {"batch_size": batch_size, "anonymize": {"name": None, "subject": None}}
        ctx, source = case.context(), case.source()
        with a.backend(**options) as backend:
            expected = per_record(backend, source, ctx)
        with b.backend(**options) as backend:
            surveyed = backend.survey(source, cutoffs(source, ctx))
            got, batches = set_based(backend, source, ctx)
        assert got == expected
        assert surveyed.due == len(expected), "survey must count what push-down then affects"
        assert db.rows(a.table) == db.rows(b.table)
        assert all(len(batch) <= batch_size for batch in batches)
        db.engine.dispose()
