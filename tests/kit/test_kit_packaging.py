"""The kit's promises about itself: pytest stays optional, the builder writes valid policies."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from retention_core.policy import load_policy
from retention_core.testing.builders import PolicyBuilder


def test_kit_without_pytest_does_not_import_pytest() -> None:
    code = ("import sys, retention_core.testing, retention_core.testing.memory, "
            "retention_core.testing.builders; "
            "assert 'pytest' not in sys.modules, 'the kit imported pytest'; "
            "assert retention_core.testing.InMemoryBackend.name == 'memory'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_conformance_suite_is_reachable_from_the_package() -> None:
    import retention_core.testing as kit
    from retention_core.testing.conformance import BackendConformanceTests
    from retention_core.testing.pushdown import PushdownConformanceTests

    assert kit.BackendConformanceTests is BackendConformanceTests
    assert kit.PushdownConformanceTests is PushdownConformanceTests
    assert set(kit.__all__) >= {"BackendConformanceTests", "PushdownConformanceTests", "InMemoryBackend"}
    with pytest.raises(AttributeError):
        kit.NoSuchThing  # noqa: B018


def test_builder_writes_a_policy_the_core_loads(tmp_path: Path) -> None:
    path = PolicyBuilder(tmp_path).write(
        categories={"call": {"retain": "90d", "after": "service_end"}},
        sources=[{"name": "calls", "backend": "memory", "options": {"store": "s"},
                  "match": "(?P<subject>[^/]+)/.*", "category": "call"}],
        subjects=[{"subject_id": "acme", "controller": "ctl", "service_ended_at": date(2024, 1, 31),
                   "minor": True}, {"subject_id": "globex"}],
        holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "acme"}, "reason": "claim"}],
        limits={"max_deletions": 10})
    policy = load_policy(path)
    assert [s.name for s in policy.sources] == ["calls"]
    assert policy.state == f"sqlite:///{tmp_path / 'state.db'}"
    assert policy.holds[0].id == "LH-1" and policy.limits.max_deletions == 10
    csv_text = (tmp_path / "policy-subjects.csv").read_text(encoding="utf-8").splitlines()
    assert csv_text == ["subject_id,controller,service_ended_at,minor", "acme,ctl,2024-01-31,true",
                        "globex,,,"]


def test_builder_rejects_unknown_subject_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown subject column 'ended'"):
        PolicyBuilder(tmp_path).write_subjects([{"subject_id": "a", "ended": "2020-01-01"}])
