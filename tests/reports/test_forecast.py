"""Forecast buckets: which week a due date lands in, and what stays outside the window."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from retention_core.forecast import WEEK, Forecast, human_bytes, plan_csv, plan_json, plan_text
from retention_core.model import Action, Decision, Record

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def rec(size: int | None = 10, category: str | None = "chat") -> Record:
    return Record(source="s", location="x", created=NOW, size=size, category=category)


def keep(due: datetime | None) -> Decision:
    return Decision(Action.KEEP, "kept", due=due)


def test_weeks_are_counted_from_now_and_a_due_date_on_a_weeks_end_belongs_to_that_week() -> None:
    f = Forecast.for_weeks(NOW, 26)
    assert f.weeks == 26
    f.add(rec(), keep(NOW + timedelta(seconds=1)))   # first instant after now
    f.add(rec(), keep(NOW + WEEK))                    # exactly the end of week 0
    f.add(rec(), keep(NOW + WEEK + timedelta(microseconds=1)))  # first instant of week 1
    f.add(rec(), keep(NOW + 26 * WEEK))               # the window's last instant: week 25
    f.add(rec(), keep(NOW + 26 * WEEK + timedelta(microseconds=1)))  # after the window
    per_week = [w.records for w in f.per_week()]
    assert per_week[0] == 2
    assert per_week[1] == 1
    assert per_week[25] == 1
    assert sum(per_week) == 4
    assert f.later.records == 1


def test_each_decision_kind_goes_to_its_own_tally() -> None:
    f = Forecast.for_weeks(NOW, 4)
    f.add(rec(100, "voice"), Decision(Action.DELETE, "expired", due=NOW - WEEK))
    f.add(rec(5, "voice"), Decision(Action.ANONYMIZE, "minor"))
    f.add(rec(7), Decision(Action.HOLD, "held", holds=("H1",)))
    f.add(rec(9, None), Decision(Action.SKIP, "unknown category"))
    f.add(rec(11), keep(None))
    f.add(rec(None), keep(NOW + 2 * WEEK))
    assert f.due_now["voice"].records == 2 and f.due_now["voice"].bytes == 105
    assert (f.held.records, f.skipped.records, f.undated.records) == (1, 1, 1)
    (row,) = list(f.rows())
    assert row.week == 1 and row.category == "chat"
    assert (row.volume.records, row.volume.bytes, row.volume.unsized) == (1, 0, 1)
    assert row.start == NOW + WEEK and row.end == NOW + 2 * WEEK


def test_a_partial_last_week_is_still_a_bucket_and_ends_at_the_window() -> None:
    f = Forecast(now=NOW, until=NOW + timedelta(days=10))
    assert f.weeks == 2
    f.add(rec(), keep(NOW + timedelta(days=9)))
    (row,) = list(f.rows())
    assert row.week == 1 and row.end == NOW + timedelta(days=10)


def test_bytes_add_up_per_week_across_categories() -> None:
    f = Forecast.for_weeks(NOW, 2)
    f.add(rec(100, "a"), keep(NOW + timedelta(days=1)))
    f.add(rec(50, "b"), keep(NOW + timedelta(days=2)))
    f.add(rec(1, "a"), keep(NOW + timedelta(days=8)))
    assert [(w.records, w.bytes) for w in f.per_week()] == [(2, 150), (1, 1)]
    assert f.total_in_window().bytes == 151


def test_plan_outputs_agree_with_each_other() -> None:
    f = Forecast(now=NOW, until=NOW + timedelta(days=90))
    f.add(rec(300, "chat"), Decision(Action.DELETE, "expired"))
    f.add(rec(200, "chat"), keep(NOW + timedelta(days=5)))
    f.add(rec(1000, "voice"), keep(NOW + timedelta(days=29)))
    data = plan_json(f, "90d")
    assert data["due_now"] == [{"category": "chat", "records": 1, "bytes": 300, "unsized": 0}]
    assert [(w["week"], w["category"], w["records"], w["start"]) for w in data["weeks"]] == [
        (1, "chat", 1, "2026-06-01"), (5, "voice", 1, "2026-06-29")]  # week 1: the first seven days
    rows = list(csv.DictReader(io.StringIO(plan_csv(f))))
    assert [(r["bucket"], r["category"], r["records"], r["bytes"]) for r in rows] == [
        ("due_now", "chat", "1", "300"), ("week 1", "chat", "1", "200"), ("week 5", "voice", "1", "1000")]
    text = "\n".join(plan_text(f, "90d"))
    assert "due now: 1 records (300 B) — chat 1" in text
    assert "2026-06-29  2026-07-06  voice" in text


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                            (5 * 1024**3, "5.0 GiB")])
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text
