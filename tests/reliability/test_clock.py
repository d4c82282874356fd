"""Item 6 — clock and time: leap days, month ends, DST, naive columns' zones, a clock gone back.

Each boundary is checked from both sides with ``retention run --as-of`` (a dry run, through
the real CLI): one microsecond-scale step before the due instant the record is kept, at it
the record is due. Retention is never early: a date that does not exist (Feb 29 + 1y,
Jan 31 + 1mo) lands on the start of the later real day (so the offset is monotonic and the
set-based SQL path and per-record decisions agree).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from retention_core.state import StateStore, runs_table

from .helpers import FsStore, layout, retention, write_policy

UTC = timezone.utc


def decisions(policy: Path, as_of: str, tmp: Path) -> dict[str, str]:
    from retention_core.cli import cli

    out = tmp / f"report-{as_of.replace(':', '')}.json"
    result = CliRunner().invoke(cli, ["run", "-c", str(policy), "--as-of", as_of, "--report", str(out)])
    assert result.exit_code == 0, result.stderr
    items = json.loads(out.read_text())["items"]
    return {i["location"]: i["decision"] for i in items}


def fs_policy(tmp: Path, created: dict[str, datetime], retain: str) -> Path:
    root = tmp / "root"
    for location, when in created.items():
        path = root / location
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, (when.timestamp(), when.timestamp()))
    return write_policy(tmp / "cfg", [{"name": "files", "backend": "fs", "options": {"root": str(root)},
                                       "match": r"(?P<subject>[^/]+)/.+", "category": "data"}],
                        categories={"data": {"retain": retain, "after": "created"}}, holds=[])


BOUNDARIES = [
    # created, retain, last instant kept, first instant due
    pytest.param(datetime(2024, 2, 29, 12, tzinfo=UTC), "1y", "2025-02-28T23:59:59", "2025-03-01T00:00:00",
                 id="leap-day-plus-1y-is-mar-1"),
    pytest.param(datetime(2024, 2, 29, 12, tzinfo=UTC), "4y", "2028-02-29T11:59:59", "2028-02-29T12:00:00",
                 id="leap-day-plus-4y-is-leap-day"),
    pytest.param(datetime(2025, 1, 31, 8, tzinfo=UTC), "1mo", "2025-02-28T23:59:59", "2025-03-01T00:00:00",
                 id="jan-31-plus-1mo-is-mar-1"),
    pytest.param(datetime(2024, 1, 31, 8, tzinfo=UTC), "1mo", "2024-02-29T23:59:59", "2024-03-01T00:00:00",
                 id="jan-31-plus-1mo-in-a-leap-year"),
    pytest.param(datetime(2025, 8, 31, 0, tzinfo=UTC), "P1M", "2025-09-30T23:59:59", "2025-10-01T00:00:00",
                 id="aug-31-plus-P1M-is-oct-1"),
    pytest.param(datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "1d", "2026-01-01T23:29:59", "2026-01-01T23:30:00",
                 id="year-end"),
    pytest.param(datetime(2025, 3, 30, 0, 30, tzinfo=UTC), "1d", "2025-03-31T00:29:59", "2025-03-31T00:30:00",
                 id="eu-dst-day-is-24h-in-utc"),
]


@pytest.mark.parametrize(("created", "retain", "kept", "due"), BOUNDARIES)
def test_calendar_boundaries_are_never_early(tmp_path, created, retain, kept, due, figures):
    policy = fs_policy(tmp_path, {"ended/rec": created}, retain)
    assert decisions(policy, kept, tmp_path) == {"ended/rec": "keep"}
    assert decisions(policy, due, tmp_path) == {"ended/rec": "delete"}
    figures["clock_boundaries"] += 1


# -- naive SQL columns in a declared zone ---------------------------------------------------------------------
NAIVE = [
    # zone, naive wall time in the column, first UTC instant it is due with retain 1d
    pytest.param("Europe/Berlin", datetime(2026, 10, 25, 2, 30), "2026-10-26T01:30:00",
                 id="berlin-repeated-hour-reads-the-later-one"),
    pytest.param("Europe/Berlin", datetime(2026, 3, 29, 2, 30), "2026-03-30T01:00:00",
                 id="berlin-missing-hour-reads-the-jump"),
    pytest.param("America/New_York", datetime(2026, 1, 1, 0, 0), "2026-01-02T05:00:00", id="new-york-winter"),
    pytest.param("America/New_York", datetime(2026, 7, 1, 0, 0), "2026-07-02T04:00:00", id="new-york-summer"),
    pytest.param("UTC", datetime(2026, 7, 1, 0, 0), "2026-07-02T00:00:00", id="utc"),
    pytest.param("Australia/Lord_Howe", datetime(2026, 4, 5, 1, 45), "2026-04-05T15:15:00",
                 id="lord-howe-half-hour-repeat"),
]


@pytest.mark.parametrize(("zone", "wall", "due"), NAIVE)
def test_naive_columns_are_read_in_their_declared_zone(tmp_path, zone, wall, due, figures):
    url = f"sqlite:///{tmp_path / 'rows.db'}"
    engine = sa.create_engine(url)
    table = sa.Table("rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("subject", sa.String(20)), sa.Column("created", sa.DateTime()))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{"id": 1, "subject": "ended", "created": wall}])
    engine.dispose()
    policy = write_policy(tmp_path / "cfg", [{"name": "rows", "backend": "sql", "category": "data", "match": r"\d+",
                                              "options": {"url": url, "table": "rows", "key": "id",
                                                          "subject": "subject", "created": "created",
                                                          "timezone": zone}}],
                          categories={"data": {"retain": "1d", "after": "created"}}, holds=[])
    due_at = datetime.fromisoformat(due).replace(tzinfo=UTC)
    before = (due_at - timedelta(seconds=1)).isoformat()
    assert decisions(policy, before, tmp_path) == {"1": "keep"}
    assert decisions(policy, due_at.isoformat(), tmp_path) == {"1": "delete"}
    figures["clock_boundaries"] += 1


# -- a clock that went back ---------------------------------------------------------------------------------------
def test_a_clock_behind_the_last_run_is_refused_with_exit_3(tmp_path, figures):
    store = FsStore(tmp_path / "data")
    store.seed(layout())
    policy = write_policy(tmp_path / "cfg", [store.source()])
    state = StateStore(f"sqlite:///{policy.parent / 'state' / 'state.db'}")
    with state.engine.begin() as conn:  # an earlier enforcing run, as of a date far ahead of this clock
        conn.execute(runs_table.insert().values(run_id="future", started_at=datetime(2099, 1, 1, tzinfo=UTC),
                                                finished_at=datetime(2099, 1, 1, 0, 5, tzinfo=UTC),
                                                as_of=datetime(2099, 1, 1, tzinfo=UTC), dry_run=False,
                                                status="ok"))
    state.close()
    before = store.present()
    for args in (["run"], ["run", "--dry-run"]):
        refused = retention(*args, "-c", str(policy))
        assert refused.returncode == 3, refused.stderr
        assert "clock went back" in refused.stderr and "--as-of" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert store.present() == before  # nothing deleted
    explicit = retention("run", "-c", str(policy), "--as-of", "2026-12-01")
    assert explicit.returncode == 0, explicit.stderr  # an explicit --as-of is the user's choice
    assert store.present() == before
    figures["clock_refusals"] += 1
