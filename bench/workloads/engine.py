"""decide() alone on N synthetic records, one core; the goal is an absolute rate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..measure import Measured, Sample, execute
from ..ours import version
from ..results import OURS, WorkloadResult

GOAL_RATE = 300_000


def run(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    res = WorkloadResult(f"engine decide() ({n:,} records)", expected=n, check="decided")
    ours = Measured(res.name, OURS, version(), n, note="in-process timer")
    res.contenders = [ours]
    for _ in range(rounds):
        sample = execute([sys.executable, "-m", "bench.engine_probe", str(n)])
        got = json.loads(sample.stdout)
        # The rate is the decide loop's own time, not the interpreter's start-up.
        ours.samples.append(Sample(wall=got["seconds"], cpu=got["cpu_seconds"], peak_rss_kb=sample.peak_rss_kb,
                                   stdout=""))
        ours.selected.append(got["decisions"])
    rate = ours.rate
    cpu_rate = n / ours.median_cpu if ours.median_cpu else 0.0
    res.extra["≥ 300,000 records/s on one core"] = (
        f"{rate:,.0f}/s wall, {cpu_rate:,.0f}/s of CPU — {'met' if rate >= GOAL_RATE else 'NOT met'}")
    return res
