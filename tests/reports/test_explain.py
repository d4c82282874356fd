"""`retention explain`: every step of one record's decision, and the engine's own verdict."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from retention_core.durations import parse_duration
from retention_core.engine import decide
from retention_core.explain import explain
from retention_core.model import (
    Action,
    Category,
    Context,
    ErasureRequest,
    Hold,
    HoldScope,
    Record,
    Source,
    Subject,
)

AS_OF = "2026-06-01T12:00:00Z"


def explain_json(cli: Any, demo: Any, location: str, *extra: str) -> dict[str, Any]:
    result = cli("explain", "-c", demo.policy, location, "--as-of", AS_OF, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)
    return found


def steps(found: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["check"]: s for s in found["steps"]}


def test_a_held_record_names_the_hold_and_when_it_would_be_due(retention_cli: Any, demo: Any) -> None:
    found = explain_json(retention_cli, demo, "globex/call-1.wav")
    s = steps(found)
    assert found["decision"]["action"] == "hold"
    assert found["decided_by"] == "hold"
    assert s["category"]["finding"] == "voice_recording" and "category setting" in s["category"]["detail"]
    assert s["subject source"]["finding"] == "globex" and "group of match" in s["subject source"]["detail"]
    assert s["clock"]["finding"] == "service end 2024-01-15"
    assert "retention ends 2024-04-14" in s["clock"]["detail"]
    assert [(h["id"], h["applies"]) for h in found["holds"]] == [("LH-2026-014", True)]
    assert found["becomes_due"] == "when LH-2026-014 is released; by its rule it is due 2024-04-14"


def test_a_hold_that_does_not_cover_says_why(retention_cli: Any, demo: Any) -> None:
    found = explain_json(retention_cli, demo, "initech/call-1.wav")
    (check,) = found["holds"]
    assert check["applies"] is False
    assert check["why"] == "subject is 'initech', not 'globex'"
    assert found["decided_by"] == "rule expiry"
    assert found["decision"]["action"] == "delete"
    assert found["becomes_due"] == "now (since 2025-04-01)"


def test_erasure_request_minor_and_keep(retention_cli: Any, demo: Any) -> None:
    dana = explain_json(retention_cli, demo, "dana/call-2.wav")
    assert dana["decided_by"] == "erasure request"
    assert steps(dana)["erasure request"]["finding"].endswith("from dana-co: overdue")
    kid = explain_json(retention_cli, demo, "kid/call-1.wav")
    assert kid["decided_by"] == "minor" and steps(kid)["minor"]["finding"] == "flagged as a child under 16"
    acme = explain_json(retention_cli, demo, "acme/call-1.wav")
    assert acme["decision"]["action"] == "keep" and acme["decided_by"] == "keep: clock not started"
    soon = explain_json(retention_cli, demo, "acme/chat-soon.txt")
    assert soon["decided_by"] == "keep: not yet due" and soon["becomes_due"] == "2026-06-06"


def test_text_output_walks_the_precedence(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("explain", "-c", demo.policy, "globex/chat-1.txt", "--source", "transcripts",
                           "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "globex/chat-1.txt — source transcripts (memory)"
    order = [re.split(r"\s{2,}", line.strip())[0] for line in lines[1:]]
    # The engine's steps in its precedence order: holds, then erasure request and minor, then the clock.
    assert order.index("rule") < order.index("holds") < order.index("erasure request") < order.index("minor") \
        < order.index("clock") < order.index("decided by") < order.index("decision") < order.index("becomes due")
    assert any("LH-2026-014 (legal, subject = globex): APPLIES" in line for line in lines)
    assert "HOLD — held by LH-2026-014" in result.stdout


def test_a_location_outside_the_match_is_reported_as_not_part_of_the_source(retention_cli: Any, demo: Any) -> None:
    found = explain_json(retention_cli, demo, "misc/notes.md")
    assert found["matched"] is False and found["decision"] is None
    assert "never touched" in steps(found)["match"]["detail"]


def test_unknown_location_and_source_are_one_line_errors(retention_cli: Any, demo: Any) -> None:
    missing = retention_cli("explain", "-c", demo.policy, "nobody/call-9.wav")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("retention: error: LOCATION: no record at 'nobody/call-9.wav'")
    assert missing.stderr.count("\n") == 1
    source = retention_cli("explain", "-c", demo.policy, "acme/call-1.wav", "--source", "nope")
    assert source.exit_code == 2 and "no source named 'nope'" in source.stderr


# -- the explanation never disagrees with the engine ------------------------------------------------
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
SUBJECT_IDS = ["a", "b", "c"]
dates = st.integers(min_value=-900, max_value=900).map(lambda d: NOW + timedelta(days=d))
subjects = st.builds(Subject, id=st.sampled_from(SUBJECT_IDS), controller=st.just("ctl"),
                     service_ended_at=st.none() | dates, minor=st.booleans())
scopes = st.builds(HoldScope, subject=st.none() | st.sampled_from(SUBJECT_IDS),
                   category=st.none() | st.sampled_from(["calls", "chats"]), source=st.none() | st.just("src"))
holds = st.builds(Hold, id=st.sampled_from(["H1", "H2", "H3"]), kind=st.just("legal"), scope=scopes,
                  reason=st.just("case"), released_at=st.none() | st.just(NOW))
CATEGORIES = {"calls": Category("calls", parse_duration("90d"), "service_end"),
              "chats": Category("chats", parse_duration("1y"), "created", Action.ANONYMIZE)}


@settings(max_examples=300, deadline=None)
@given(subject_list=st.lists(subjects, unique_by=lambda s: s.id), hold_list=st.lists(holds, max_size=3),
       requested=st.sets(st.sampled_from(SUBJECT_IDS)), created=dates,
       subject=st.none() | st.sampled_from([*SUBJECT_IDS, "zed"]),
       category=st.sampled_from(["calls", "chats", "other"]))
def test_explanation_carries_the_engines_decision_and_the_step_that_made_it(
        subject_list: list[Subject], hold_list: list[Hold], requested: set[str], created: datetime,
        subject: str | None, category: str) -> None:
    requests = {s: ErasureRequest(f"r-{s}", s, "ctl", NOW - timedelta(days=3), NOW + timedelta(days=27))
                for s in requested}
    ctx = Context(now=NOW, categories=CATEGORIES, subjects={s.id: s for s in subject_list},
                  holds=tuple(hold_list), requests=requests)
    record = Record("src", "x/1", created, size=1, subject=subject, category=category)
    found = explain(record, Source("src", "memory"), ctx)
    decision = decide(record, ctx)
    assert found.decision == decision
    expected = {Action.HOLD: {"hold"}, Action.SKIP: {"unknown category: skip", "unknown subject: skip"},
                Action.KEEP: {"keep: clock not started", "keep: not yet due"},
                Action.DELETE: {"erasure request", "minor", "rule expiry"},
                Action.ANONYMIZE: {"erasure request", "minor", "rule expiry"}}[decision.action]
    assert found.decided_by in expected
    applying = {c.hold.id for c in found.holds if c.applies}
    assert applying == set(decision.holds)
