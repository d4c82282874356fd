"""`retention plan`: what becomes due when, by week and category, from a listing only."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

AS_OF = "2026-06-01T12:00:00Z"


def test_plan_json_groups_due_records_by_week_and_category(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("plan", "-c", demo.policy, "--as-of", AS_OF, "--within", "90d", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    due_now = {row["category"]: row["records"] for row in plan["due_now"]}
    # initech (rule), kid (minor), dana (erasure request); one old transcript.
    assert due_now == {"voice_recording": 9, "chat_transcript": 1}
    weeks = [(w["week"], w["category"], w["records"], w["bytes"]) for w in plan["weeks"]]
    # acme/chat-soon.txt (200 bytes) in 5 days; hooli's three calls 90 days after 2026-04-01 = in 28.5 days.
    assert weeks == [(1, "chat_transcript", 1, 200), (5, "voice_recording", 3, 6000)]
    assert plan["later"]["records"] == 1          # acme/chat-later.txt
    assert plan["not_started"]["records"] == 3    # acme is still a customer
    assert plan["held"]["records"] == 4           # everything of globex
    assert plan["until"].startswith("2026-08-30")


def test_a_shorter_window_moves_records_to_later(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("plan", "-c", demo.policy, "--as-of", AS_OF, "--within", "2w", "--format", "json")
    plan = json.loads(result.stdout)
    assert [(w["week"], w["records"]) for w in plan["weeks"]] == [(1, 1)]
    assert plan["later"]["records"] == 4


def test_plan_csv_and_text(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("plan", "-c", demo.policy, "--as-of", AS_OF, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {(r["bucket"], r["category"], r["records"]) for r in rows} == {
        ("due_now", "chat_transcript", "1"), ("due_now", "voice_recording", "9"),
        ("week 1", "chat_transcript", "1"), ("week 5", "voice_recording", "3")}
    text = retention_cli("plan", "-c", demo.policy, "--as-of", AS_OF).stdout
    assert "due now: 10 records" in text
    assert "2026-06-29  2026-07-06  voice_recording          3" in text
    assert "held: 4" in text


def test_plan_touches_nothing(retention_cli: Any, demo: Any) -> None:
    before = demo.remaining(demo.recordings), demo.remaining(demo.transcripts)
    assert retention_cli("plan", "-c", demo.policy).exit_code == 0
    assert (demo.remaining(demo.recordings), demo.remaining(demo.transcripts)) == before
    assert not (demo.folder / "audit.jsonl").exists()


def test_bad_window_is_one_line_and_exit_2(retention_cli: Any, demo: Any) -> None:
    for bad in ("2x", "0d"):
        result = retention_cli("plan", "-c", demo.policy, "--within", bad)
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1 and "--within" in result.stderr
        assert "Traceback" not in result.output


def test_plan_and_the_dry_run_give_the_enforcing_runs_limit_verdict(retention_cli: Any, demo: Any) -> None:
    """Issue 17 #1: plan and run --dry-run said nothing (exit 0) where the enforcing run exited 3."""
    import yaml

    raw = yaml.safe_load(open(demo.policy).read())
    raw["limits"] = {"max_fraction": 0.5}
    open(demo.policy, "w").write(yaml.safe_dump(raw))
    late = "2031-01-01"  # by then most of the demo is due: over max_fraction
    plan = retention_cli("plan", "-c", demo.policy, "--as-of", late)
    dry = retention_cli("run", "-c", demo.policy, "--as-of", late)
    assert plan.exit_code == dry.exit_code == 3
    assert "SAFETY LIMIT: a run now would trip source" in plan.stdout and "SAFETY LIMIT" in dry.stdout
    data = json.loads(retention_cli("plan", "-c", demo.policy, "--as-of", late, "--format", "json").stdout)
    assert data["limit_tripped"] and set(data["limit_tripped"]) <= {"recordings", "transcripts", "mail"}
    assert retention_cli("plan", "-c", demo.policy, "--as-of", AS_OF, "--format", "json").exit_code == 0
