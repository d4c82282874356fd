"""The plugin loads through retention's plugin manager and drives a whole run from the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import retention_jsonl

from retention_core.testing.builders import PolicyBuilder

pytest_plugins = ["retention_core.testing.fixtures"]


@pytest.fixture
def retention_plugin() -> Any:
    return retention_jsonl


def test_backend_is_registered(retention_plugins: Any) -> None:
    from retention_jsonl.backend import JsonlBackend

    assert retention_plugins.backends().get("jsonl") is JsonlBackend


def test_run_deletes_what_is_due_and_keeps_held_subjects(retention_cli: Any, policy_builder: PolicyBuilder,
                                                         tmp_path: Path) -> None:
    data = tmp_path / "events"
    data.mkdir()
    old = "2020-01-01T00:00:00+00:00"
    recent = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    rows = [{"id": "1", "created": old, "subject": "acme"}, {"id": "2", "created": old, "subject": "globex"},
            {"id": "3", "created": recent, "subject": "globex"}]
    (data / "2020.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    policy = policy_builder.write(
        categories={"event": {"retain": "90d"}},
        sources=[{"name": "events", "backend": "jsonl", "options": {"root": str(data)}, "category": "event"}],
        holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "acme"}, "reason": "pending claim"}])

    dry = retention_cli("run", "-c", policy, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert len((data / "2020.jsonl").read_text().splitlines()) == 3

    enforced = retention_cli("run", "-c", policy)
    assert enforced.exit_code == 0, enforced.output
    left = [json.loads(line)["id"] for line in (data / "2020.jsonl").read_text().splitlines()]
    assert left == ["1", "3"]


def test_bad_option_is_one_clear_line(retention_cli: Any, policy_builder: PolicyBuilder, tmp_path: Path) -> None:
    policy = policy_builder.write(
        categories={"event": {"retain": "90d"}},
        sources=[{"name": "events", "backend": "jsonl", "options": {"root": str(tmp_path), "sufix": ".x"},
                  "category": "event"}])
    result = retention_cli("validate", "-c", policy)
    assert result.exit_code == 2
    assert "sources[0].options.sufix: unknown key" in result.output
    assert "Traceback" not in result.output
