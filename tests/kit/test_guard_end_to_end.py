"""The reference backend's guard and Problems through a whole ``retention run``.

The conformance suite calls a backend directly; these check that what it promises survives
the core: the scan's stamp reaches ``delete`` through classification and the run's spool,
so an item changed between the scan and its batch is kept and reported ``changed``, and an
item the scan could not list is reported and never handed to ``delete``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import Context, Record, hookimpl
from retention_core.testing import memory
from retention_core.testing.builders import PolicyBuilder

OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)


class ChangesOneItemBeforeItsBatch:
    """Plays the application: re-writes ``acme/b`` after the scan, just before its batch."""

    store = ""

    @hookimpl
    def retention_before_delete(self, batch: list[Record], context: Context) -> None:
        if any(r.location == "acme/b" for r in batch):
            memory.modify(self.store, "acme/b")


PLUGIN = ChangesOneItemBeforeItsBatch()


def write_policy(policy_builder: PolicyBuilder, store: str) -> Path:
    return policy_builder.write(
        categories={"call": {"retain": "90d"}},
        sources=[{"name": "calls", "backend": "memory", "options": {"store": store},
                  "match": "(?P<subject>[^/]+)/.*", "category": "call"}],
        subjects=[{"subject_id": "acme", "controller": "ctl"}],
        limits={"max_fraction": 1.0})  # these runs delete most of a source on purpose


@pytest.mark.parametrize("retention_plugin", [PLUGIN])
def test_an_item_changed_after_the_scan_is_kept_and_reported(retention_cli: Any, policy_builder: PolicyBuilder,
                                                             memory_store: str) -> None:
    PLUGIN.store = memory_store
    for name in ("acme/a", "acme/b", "acme/c"):
        memory.seed(memory_store, name, OLD)
    policy = write_policy(policy_builder, memory_store)
    result = retention_cli("run", "-c", policy, "--report", policy.parent / "run.json")
    report = json.loads((policy.parent / "run.json").read_text(encoding="utf-8"))
    assert report["outcomes"]["deleted"] == 2 and report["outcomes"]["changed"] == 1, result.output
    assert memory.exists(memory_store, "acme/b"), "the item re-written after the scan was deleted"
    assert not memory.exists(memory_store, "acme/a") and not memory.exists(memory_store, "acme/c")


def test_a_problem_is_reported_and_never_handed_to_delete(retention_cli: Any, policy_builder: PolicyBuilder,
                                                          memory_store: str) -> None:
    memory.seed(memory_store, "acme/a", OLD)
    memory.seed_problem(memory_store, "acme/b", "created is NULL")
    memory.seed(memory_store, "acme/c", OLD)
    result = retention_cli("run", "-c", write_policy(policy_builder, memory_store))
    assert "acme/b: created is NULL" in result.output, result.output
    deleted = [location for op, location in memory.get_store(memory_store).calls if op == "delete"]
    assert deleted == ["acme/a", "acme/c"], "the scan went on past the problem, which never reached delete"
    assert memory.exists(memory_store, "acme/b")
