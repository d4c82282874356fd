"""Helpers several test folders share (kept out of conftests, which pytest loads implicitly)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from retention_core import cli as cli_module

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config" / "demo"


def demo_copy(tmp_path: Path, *, max_fraction: float = 0.9) -> Path:
    """A private copy of the fs demo (its policy's path), its max_fraction raised so an erasure
    may delete a whole tenant."""
    target = tmp_path / "demo"
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns(".retention"))
    policy = target / "policy.yaml"
    policy.write_text(policy.read_text().replace("max_fraction: 0.5", f"max_fraction: {max_fraction}"))
    return policy


def invoke(*args: str | Path) -> Any:
    """``retention ARGS…`` in-process with the installed plugins; exceptions propagate."""
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Any:
    """:func:`invoke`, asserting exit 0."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def memory_calls_policy(folder: Path, store: str) -> Path:
    """A policy over one memory-backend source of calls per subject (alice … dave), 30 days kept,
    no safety limit: what the partitioned-run tests split and compare."""
    from retention_core.testing.builders import PolicyBuilder

    return PolicyBuilder(folder).write(
        categories={"calls": {"retain": "30d"}},
        sources=[{"name": "calls", "backend": "memory", "options": {"store": store, "page_size": 3},
                  "category": "calls", "match": "(?P<subject>[^/]+)/.*"}],
        subjects=[{"subject_id": s, "controller": "acme"} for s in ("alice", "bob", "carol", "dave")],
        limits={"max_fraction": 1.0})


def seed_calls(store: str, now: Any) -> None:
    """Seven calls per subject, 0 to 60 days old (four of them due under 30 days)."""
    from datetime import timedelta

    from retention_core.testing import memory

    for subject in ("alice", "bob", "carol", "dave"):
        for i in range(7):
            memory.seed(store, f"{subject}/rec-{i}", now - timedelta(days=10 * i), size=i)


def reachable(url: str) -> bool:
    """Whether a database answers at the SQLAlchemy *url* within a few seconds."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False
