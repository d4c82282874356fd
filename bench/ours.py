"""Running retention itself the way cron does: the real CLI in a fresh process."""

from __future__ import annotations

import compileall
import importlib.util
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .measure import Sample, execute

_METRIC = re.compile(r'^(retention_records_\w+)\{source="([^"]*)"\}\s+([0-9.eE+-]+)$', re.MULTILINE)


#: Our packages, and the bench's own (its Python peers run from it).
PACKAGES = ("retention_core", "retention_fs", "retention_s3", "retention_sql", "retention_cookies", "bench")


def compile_bytecode() -> None:
    """Compile the packages' bytecode once, before anything is timed, as ``pip install`` does
    for an installed tool. An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set in
    some CI shells, and on this machine) never writes it, and every measured run would compile
    some fifty modules from source first: ≈ 0.1 s of each start-up, by profile."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=1)


def write_policy(directory: Path, sources: Sequence[Mapping[str, Any]], categories: Mapping[str, Any]) -> Path:
    """A policy with its own state store and audit trail inside *directory* (one per round)."""
    directory.mkdir(parents=True, exist_ok=True)
    policy = {"version": 1, "state": "sqlite:///state.db", "audit": "audit.jsonl",
              "categories": dict(categories), "sources": [dict(s) for s in sources],
              "limits": {}}  # no limit: the workloads delete most of a source on purpose, as measured
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def run_cli(policy: Path, *, dry_run: bool, as_of: str | None = None,
            env: Mapping[str, str] | None = None) -> tuple[Sample, dict[str, float]]:
    """``retention run -c POLICY`` timed as a whole process; returns the run's record counters."""
    metrics = policy.parent / "metrics.prom"
    argv = [sys.executable, "-m", "retention_core", "run", "-c", str(policy), "--metrics-file", str(metrics)]
    if dry_run:
        argv.append("--dry-run")
    if as_of:
        argv += ["--as-of", as_of]
    sample = execute(argv, env=env, cwd=str(policy.parent))
    return sample, counters(metrics)


def counters(metrics: Path) -> dict[str, float]:
    """Sum of each ``retention_records_*`` family over sources (``due``, ``deleted`` …)."""
    totals: dict[str, float] = {}
    for name, _source, value in _METRIC.findall(metrics.read_text()):
        key = name.removeprefix("retention_records_")
        totals[key] = totals.get(key, 0) + float(value)
    return totals


def version() -> str:
    from retention_core import __version__

    return __version__
