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
