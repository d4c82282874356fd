"""A dry run without report items counts an fs source in ``tally`` instead of scanning it
(issue 16): its counts, problems and warnings must be the scan's, to the microsecond."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from retention_core import cli
from retention_core.testing.builders import PolicyBuilder
from retention_fs.backend import FilesystemBackend

from .test_cli import beyond_9999, due, unreadable
from .trees import tmpfs_root

AS_OF = datetime(2024, 6, 1, tzinfo=timezone.utc)
CUTOFF = AS_OF - timedelta(days=30)  # retain: 30d


def at(path: Path, when: datetime, nanoseconds: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    ns = int(when.timestamp()) * 10**9 + when.microsecond * 1000 + nanoseconds
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def dry_run(folder: Path, root: Path, *extra: str) -> tuple[str, str]:
    """The run's output and its metrics file (every record counter per source)."""
    folder.mkdir(exist_ok=True)
    policy = PolicyBuilder(folder).write(categories={"files": {"retain": "30d"}},
                                         sources=[{"name": "files", "backend": "fs",
                                                   "options": {"root": str(root)}, "category": "files"}],
                                         limits={"max_fraction": 1.0})
    metrics = folder / "metrics.prom"
    result = CliRunner().invoke(cli.cli, ["run", "-c", str(policy), "--dry-run", "--as-of", AS_OF.isoformat(),
                                          "--metrics-file", str(metrics), *extra])
    assert result.exit_code == 0, result.output
    counters = "\n".join(sorted(line for line in metrics.read_text().splitlines()
                                if line.startswith("retention_records_")))
    shown = "".join(line for line in result.output.splitlines(True) if not line.lstrip().startswith("report: "))
    return re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{8}", "RUN", shown), counters


def nothing_bad(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[None, None]:
    return None, None


@pytest.mark.parametrize("bad_entry", [nothing_bad, unreadable, beyond_9999])
def test_a_dry_run_counts_exactly_what_the_scan_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        bad_entry: Callable[..., tuple[Any, Any]]) -> None:
    with tmpfs_root() as root:
        at(root / "edge" / "at-cutoff.txt", CUTOFF)  # due: created at or before the cutoff
        at(root / "edge" / "a-microsecond-before.txt", CUTOFF - timedelta(microseconds=1))
        at(root / "edge" / "a-microsecond-after.txt", CUTOFF + timedelta(microseconds=1))  # kept
        at(root / "edge" / "400ns-after.txt", CUTOFF, nanoseconds=400)  # rounds to the cutoff: due
        at(root / "edge" / "600ns-after.txt", CUTOFF, nanoseconds=600)  # rounds past it: kept
        at(root / "edge" / "half-a-millisecond-after.txt", CUTOFF + timedelta(microseconds=500))
        for i in range(30):
            at(root / f"d{i % 4}" / f"f{i}.txt", CUTOFF + timedelta(days=i - 15, seconds=7))
        os.symlink("d0/f0.txt", root / "link.txt")
        os.mkfifo(root / "pipe")
        due(root / "old.txt")
        bad_entry(root, monkeypatch)
        itemized = dry_run(tmp_path / "scan", root, "--report", str(tmp_path / "report.json"))

        def no_scan(self: FilesystemBackend, source: Any) -> Any:
            raise AssertionError("a dry run without --report of a plain fs source lists through tally")

        monkeypatch.setattr(FilesystemBackend, "scan", no_scan)
        assert dry_run(tmp_path / "tally", root) == itemized


def test_a_source_with_match_or_holds_is_still_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only plain sources are tallied: with ``match`` a record may have a subject."""
    root = tmp_path / "root"
    at(root / "acme" / "old.txt", CUTOFF - timedelta(days=1))
    policy = PolicyBuilder(tmp_path).write(categories={"files": {"retain": "30d"}},
                                           sources=[{"name": "files", "backend": "fs", "options": {"root": str(root)},
                                                     "category": "files", "match": r"(?P<subject>[^/]+)/.*"}],
                                           limits={"max_fraction": 1.0})
    calls: list[str] = []

    def no_tally(self: FilesystemBackend, *args: Any) -> Any:
        calls.append("tally")
        raise AssertionError("tallied a source with match")

    monkeypatch.setattr(FilesystemBackend, "tally", no_tally)
    result = CliRunner().invoke(cli.cli, ["run", "-c", str(policy), "--dry-run", "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    assert "delete 1" in result.output and calls == []
