"""Prometheus text-format metrics of the last run, for node_exporter's textfile collector.

The file is replaced atomically (written beside it under a name that does not end in
``.prom``, then renamed), so the collector never reads half a file. Values describe the last
run, so they are gauges. ``retention_last_success_timestamp_seconds`` survives failed runs:
it is carried over from the previous file, so "no successful run for two days" can alert.
Only an enforcing run that deleted everything it meant to counts as a success; a dry run
changes nothing in storage and therefore never moves it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .report import RunReport

LAST_SUCCESS = "retention_last_success_timestamp_seconds"
_LAST_SUCCESS_LINE = re.compile(rf"^{LAST_SUCCESS}\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    samples: tuple[tuple[dict[str, str], float], ...]


def run_metrics(report: RunReport | None, *, started: float, finished: float, exit_code: int,
                previous_success: float | None) -> list[Family]:
    """The metric families for one run; *report* is None when the run stopped before reporting."""
    families: list[Family] = []
    if report is not None:
        per_source = [
            ("retention_records_scanned", "Records listed by the last run, per source.",
             lambda s: s.scanned),
            ("retention_records_due", "Records the last run decided to delete or anonymize, per source.",
             lambda s: s.decisions["delete"] + s.decisions["anonymize"]),
            ("retention_records_deleted", "Records the last run deleted, per source.",
             lambda s: s.outcomes["deleted"]),
            ("retention_records_anonymized", "Records the last run anonymized, per source.",
             lambda s: s.outcomes["anonymized"]),
            ("retention_records_held", "Records kept by a hold or refused by storage in the last run, per source.",
             lambda s: s.decisions["hold"] + s.outcomes["refused"]),
            ("retention_records_failed", "Deletions that failed in the last run, per source.",
             lambda s: s.outcomes["failed"]),
            ("retention_records_skipped", "Records skipped (unknown category or subject) in the last run.",
             lambda s: s.decisions["skip"]),
        ]
        for name, help_text, value in per_source:
            families.append(Family(name, help_text, tuple(
                ({"source": source}, float(value(stats))) for source, stats in report.sources.items())))
        overdue = sum(1 for r in report.erasure_requests if r.status(report.as_of) == "overdue")
        families.append(Family("retention_erasure_requests_overdue",
                               "Erasure requests past their 30-day deadline and not done.",
                               (({}, float(overdue)),)))
        families.append(Family("retention_run_dry_run", "1 if the last run was a dry run (nothing deleted).",
                               (({}, 1.0 if report.dry_run else 0.0),)))
    success = exit_code == 0 and report is not None and not report.dry_run
    families += [
        Family("retention_run_duration_seconds", "Wall-clock duration of the last run.",
               (({}, round(finished - started, 3)),)),
        Family("retention_run_exit_code", "Exit code of the last run (0 ok, 1 failures, 2 config, 3 limit, 4 lock).",
               (({}, float(exit_code)),)),
        Family("retention_last_run_timestamp_seconds", "When the last run finished (Unix time).",
               (({}, round(finished, 3)),)),
    ]
    last_success = round(finished, 3) if success else previous_success
    if last_success is not None:
        families.append(Family(LAST_SUCCESS, "When an enforcing run last finished without failures (Unix time).",
                               (({}, last_success),)))
    return families


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP, TYPE gauge and samples per family, newline-terminated."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} gauge")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{family.name}{{{label_text}}} {_number(value)}" if label_text
                         else f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def previous_success(path: Path) -> float | None:
    """The last-success timestamp of the file being replaced, if it has one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = _LAST_SUCCESS_LINE.search(text)
    try:
        return float(found.group(1)) if found else None
    except ValueError:
        return None


def write_metrics(path: Path, report: RunReport | None, *, started: float, finished: float,
                  exit_code: int) -> None:
    """Write the run's metrics to *path* atomically."""
    text = render(run_metrics(report, started=started, finished=finished, exit_code=exit_code,
                              previous_success=previous_success(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


__all__ = ["Family", "LAST_SUCCESS", "previous_success", "render", "run_metrics", "write_metrics"]
