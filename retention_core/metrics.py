"""Prometheus text-format metrics of the last run, for node_exporter's textfile collector.

The file is replaced atomically (written beside it under a name that does not end in
``.prom``, then renamed), so the collector never reads half a file. Values describe the last
run, so they are gauges. ``retention_last_success_timestamp_seconds`` survives failed runs:
it is carried over from the previous file, so "no successful run for two days" can alert; it
is 0 until the first success. prometheus_client renders, parses and writes the textfile
format (this module only says which gauges a run has).
Only an enforcing run that deleted everything it meant to counts as a success; a dry run
changes nothing in storage and therefore never moves it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .report import RunReport

# prometheus_client is imported where metrics are written (16 ms of start-up, with http.server
# and ssl): a run without --metrics-file never loads it.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LAST_SUCCESS = "retention_last_success_timestamp_seconds"


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
    # 0 until the first success, so "no success for two days" alerts on a fresh install too.
    last_success = round(finished, 3) if success else previous_success or 0.0
    families.append(Family(LAST_SUCCESS, "When an enforcing run last finished without failures (Unix time; "
                                         "0: never).", (({}, last_success),)))
    return families


def registry_of(families: Iterable[Family]) -> CollectorRegistry:
    """The families as prometheus_client gauges in a registry of their own."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry(auto_describe=False)
    for family in families:
        labels = sorted({k for sample_labels, _ in family.samples for k in sample_labels})
        gauge = Gauge(family.name, family.help, labels, registry=registry)
        for sample_labels, value in family.samples:
            (gauge.labels(**sample_labels) if labels else gauge).set(value)
    return registry


def render(families: Iterable[Family]) -> str:
    """The exposition text (HELP, TYPE gauge and samples per family), as prometheus_client writes it."""
    from prometheus_client import generate_latest

    return generate_latest(registry_of(families)).decode("utf-8")


def previous_success(path: Path) -> float | None:
    """The last-success timestamp of the file being replaced, if it has one."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def write_metrics(path: Path, report: RunReport | None, *, started: float, finished: float,
                  exit_code: int) -> None:
    """Write the run's metrics to *path* atomically (prometheus_client's ``write_to_textfile``:
    a temporary file beside it, whose name does not end in ``.prom``, renamed over it)."""
    families = run_metrics(report, started=started, finished=finished, exit_code=exit_code,
                           previous_success=previous_success(path))
    from prometheus_client import write_to_textfile

    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_of(families))
    os.chmod(path, 0o644)  # node_exporter usually runs as another user; cron's umask may be 077


__all__ = ["Family", "LAST_SUCCESS", "previous_success", "registry_of", "render", "run_metrics", "write_metrics"]
