"""A row that only left a source's ``where:`` filter is not listed, yet not deleted: recovery
looks it up by key (``Backend.present``) before inferring anything (adversarial review)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from retention_core.audit import records

from .test_streamed import retention


def test_a_row_that_left_the_where_filter_after_a_crash_is_not_inferred_deleted(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table cases(id integer primary key, cust text, created text, status text)")
        conn.executemany("insert into cases values (?,?,?,?)",
                         [(i, "acme", "2020-01-01 00:00:00", "closed") for i in range(1, 21)])
    source = {"name": "a", "backend": "sql", "category": "closed_case",
              "options": {"url": f"sqlite:///{db}", "table": "cases", "key": "id", "subject": "cust",
                          "created": "created", "timezone": "UTC", "where": {"status": "closed"}}}
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"version": 1, "state": "sqlite:///state.db", "audit": "audit.jsonl",
                                      "categories": {"closed_case": {"retain": "2y", "after": "created"}},
                                      "sources": [source], "limits": {}}))
    assert retention(policy, kill_at="after-intent").returncode == -9  # journalled, nothing committed
    with sqlite3.connect(db) as conn:
        conn.execute("update cases set status = 'open' where id in (5, 6)")  # the application reopens two
    rerun = retention(policy)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as conn:
        left = {row[0] for row in conn.execute("select id from cases")}
    assert left == {5, 6}
    settled = {e["location"]: e["outcome"] for e in records(tmp_path / "audit.jsonl")
               if e.get("event") == "outcome" and e.get("settled_by")}
    assert settled["5"] == settled["6"] == "not-executed", settled
    deleted = [e["location"] for e in records(tmp_path / "audit.jsonl")
               if e.get("event") == "outcome" and e.get("outcome") == "deleted"]
    assert sorted(deleted, key=int) == [str(i) for i in range(1, 21) if i not in (5, 6)]
