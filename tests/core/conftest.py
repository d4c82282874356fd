"""Builders for policies over the in-memory backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from retention_core.testing import memory

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)

SUBJECTS = """subject_id,controller,service_ended_at,minor
alice,ctl-a,,false
bob,ctl-b,2025-01-01,false
kid,ctl-k,,true
"""


@pytest.fixture
def store_name(request: pytest.FixtureRequest) -> str:
    name = f"t-{request.node.name}"
    memory.reset(name)
    return name


@pytest.fixture
def make_policy(tmp_path: Path, store_name: str) -> Callable[..., Path]:
    """Write a policy over one memory source (``calls``) and return its path."""

    def build(**overrides: Any) -> Path:
        (tmp_path / "subjects.csv").write_text(overrides.pop("subjects_csv", SUBJECTS))
        policy: dict[str, Any] = {
            "version": 1,
            "state": "sqlite:///state.db",
            "audit": "audit.jsonl",
            "subjects": {"source": "csv", "path": "subjects.csv"},
            "categories": {"call": {"retain": "90d", "after": "created"},
                           "account": {"retain": "30d", "after": "service_end"}},
            "sources": [{"name": "calls", "backend": "memory", "options": {"store": store_name},
                         "match": r"(?P<subject>[^/]+)/.+", "category": "call"}],
            "limits": {"max_fraction": 1.0},  # these tests delete most of a source on purpose
        }
        policy.update(overrides)
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return path

    return build
