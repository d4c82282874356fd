"""Safe by default (issue 17): a policy without ``limits:`` gets ``max_fraction: 0.5`` per source,
and the trip message says it was the default and how to raise it; ``limits: {}`` means no limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from retention_core.policy import DEFAULT_LIMITS
from retention_core.testing import memory


def _policy(make_policy, store_name: str, limits: dict | None):
    """Seed three calls past their 90 days and one young call (75% due), and write the policy
    with *limits* as its ``limits:`` key, or without the key when None."""
    now = datetime.now(timezone.utc)
    for location, days in (("alice/a", 400), ("alice/b", 400), ("bob/c", 400), ("alice/d", 1)):
        memory.seed(store_name, location, now - timedelta(days=days), size=1)
    path = make_policy()
    policy = yaml.safe_load(path.read_text())
    policy.pop("limits", None)
    if limits is not None:
        policy["limits"] = limits
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def test_the_default_is_half_of_a_source():
    assert DEFAULT_LIMITS.max_fraction == 0.5 and DEFAULT_LIMITS.max_deletions is None


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "enforcing"])
def test_a_policy_without_limits_trips_over_half_a_source(retention_cli, make_policy, store_name, dry_run):
    path = _policy(make_policy, store_name, None)
    result = retention_cli("run", "-c", str(path), *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 3, result.output
    assert "over max_fraction = 0.5 (the default max_fraction of a policy without `limits:`)" in result.output
    assert "raise its `limits:` in the policy" in result.output
    assert all(memory.exists(store_name, k) for k in ("alice/a", "alice/b", "bob/c", "alice/d"))  # none deleted


def test_limits_given_empty_means_no_limit(retention_cli, make_policy, store_name):
    path = _policy(make_policy, store_name, {})
    result = retention_cli("run", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert [k for k in ("alice/a", "alice/b", "bob/c", "alice/d") if memory.exists(store_name, k)] == ["alice/d"]


def test_a_source_limit_without_max_fraction_keeps_the_default_fraction(retention_cli, make_policy, store_name):
    path = _policy(make_policy, store_name, None)
    policy = yaml.safe_load(path.read_text())
    policy["sources"][0]["limits"] = {"max_deletions": 100}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    result = retention_cli("run", "-c", str(path), "--dry-run")
    assert result.exit_code == 3 and "the default max_fraction" in result.output, result.output
