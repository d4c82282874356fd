"""`--metrics-file`: Prometheus text format for node_exporter's textfile collector."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from retention_core.metrics import Family, render

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.eE+]+$')


def samples(text: str) -> dict[str, float]:
    """Parse with prometheus_client when installed (an independent parser), else strictly by hand."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        out = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            assert SAMPLE.match(line), line
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_enforcing_run_writes_per_source_counts(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "retention.prom"
    result = retention_cli("run", "-c", demo.policy, "--metrics-file", prom)
    assert result.exit_code == 0, result.output
    text = prom.read_text()
    got = samples(text)
    assert got['retention_records_scanned{source="recordings"}'] == 18
    assert got['retention_records_scanned{source="transcripts"}'] == 4
    assert got['retention_records_held{source="recordings"}'] == 3
    assert got['retention_records_deleted{source="recordings"}'] == 12  # initech, kid, dana, hooli
    assert got['retention_records_failed{source="recordings"}'] == 0
    assert got["retention_run_exit_code"] == 0
    assert got["retention_run_dry_run"] == 0
    assert got["retention_last_success_timestamp_seconds"] == got["retention_last_run_timestamp_seconds"]
    assert 0 <= got["retention_run_duration_seconds"] < 60
    assert [p.name for p in prom.parent.iterdir()] == ["retention.prom"]  # no temporary file left behind
    for name in {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}:
        assert text.index(f"# HELP {name} ") < text.index(f"# TYPE {name} gauge")


def test_last_success_survives_failed_and_dry_runs(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    prom = tmp_path / "retention.prom"
    assert retention_cli("run", "-c", demo.policy, "--metrics-file", prom).exit_code == 0
    first = samples(prom.read_text())["retention_last_success_timestamp_seconds"]

    assert retention_cli("run", "-c", demo.policy, "--dry-run", "--metrics-file", prom).exit_code == 0
    dry = samples(prom.read_text())
    assert dry["retention_run_dry_run"] == 1
    assert dry["retention_last_success_timestamp_seconds"] == first

    broken = demo.folder / "broken.yaml"
    broken.write_text("version: 1\ncategories: {}\n")
    failed = retention_cli("run", "-c", broken, "--metrics-file", prom)
    assert failed.exit_code == 2
    after = samples(prom.read_text())
    assert after["retention_run_exit_code"] == 2
    assert after["retention_last_success_timestamp_seconds"] == first
    assert after["retention_last_run_timestamp_seconds"] > first
    assert not any(k.startswith("retention_records_") for k in after)  # no report, no per-source guesses


def test_label_values_are_escaped() -> None:
    text = render([Family("retention_records_scanned", "help \\ text\nwith a newline",
                          (({"source": 'we"ird\\name\n'}, 3.0),))])
    assert 'retention_records_scanned{source="we\\"ird\\\\name\\n"} 3' in text
    assert "# HELP retention_records_scanned help \\\\ text\\nwith a newline" in text
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels == {"source": 'we"ird\\name\n'}


def test_unwritable_metrics_path_fails_the_run_loudly(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = retention_cli("run", "-c", demo.policy, "--dry-run", "--metrics-file", blocker / "x.prom")
    assert result.exit_code == 2
    assert "cannot write metrics file" in result.stderr


@pytest.mark.parametrize("value", [0.0, 12.0, 1795879119.255])
def test_numbers_read_back_exactly(value: float) -> None:
    line = render([Family("m", "h", (({}, value),))]).splitlines()[-1]
    assert float(line.split()[1]) == value  # prometheus_client writes large ones as Go does: 1.795879119255e+09


def test_last_success_is_zero_before_the_first_success(retention_cli: Any, demo: Any, tmp_path: Path) -> None:
    """A fresh install whose runs fail (or only dry-run) says 0, so 'no success for 2 days' alerts."""
    prom = tmp_path / "retention.prom"
    assert retention_cli("run", "-c", demo.policy, "--dry-run", "--metrics-file", prom).exit_code == 0
    assert samples(prom.read_text())["retention_last_success_timestamp_seconds"] == 0
    broken = demo.folder / "broken.yaml"
    broken.write_text("version: 1\ncategories: {}\n")
    assert retention_cli("run", "-c", broken, "--metrics-file", prom).exit_code == 2
    assert samples(prom.read_text())["retention_last_success_timestamp_seconds"] == 0
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
