"""Peak RSS of a dry run over N records against N/10: streaming means it barely grows.

Uses the bench-local synthetic backend (records made up on the fly), so the memory is the
core's: classify, decide, spool. The goal: RSS at N ≤ 1.2× RSS at N/10, and < 200 MB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..measure import Measured, execute
from ..ours import version, write_policy
from ..results import OURS, WorkloadResult
from ..synthetic import EPOCH, expected_due

AS_OF = EPOCH.isoformat()
RETAIN_DAYS = 365


def _policy(directory: Path, n: int) -> Path:
    return write_policy(directory, [{"name": "calls", "backend": "synthetic", "options": {"n": n},
                                     "match": r"(?P<subject>[^/]+)/calls/.+\.wav", "category": "call"}],
                        {"call": {"retain": f"{RETAIN_DAYS}d", "after": "created"}})


def run(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    small = max(1, n // 10)
    res = WorkloadResult(f"memory: dry-run {n:,} vs {small:,} records", expected=0, check="selected")
    big_m = Measured(res.name, OURS, version(), n, note=f"{n:,} records")
    small_m = Measured(res.name, OURS, version(), small, note=f"{small:,} records")
    res.contenders = [big_m, small_m]
    due = {n: expected_due(n, RETAIN_DAYS, EPOCH), small: expected_due(small, RETAIN_DAYS, EPOCH)}
    for r in range(rounds):
        for m in (small_m, big_m) if r % 2 else (big_m, small_m):
            policy = _policy(workdir / "memory" / f"{m.records}-{r}", m.records)
            sample = execute([sys.executable, "-m", "bench.synthetic", str(policy), AS_OF], cwd=str(policy.parent))
            got = json.loads(sample.stdout)
            if got["scanned"] != m.records or got["summary"]["delete"] != due[m.records]:
                raise AssertionError(f"memory workload: scanned {got['scanned']}, due {got['summary']['delete']}; "
                                     f"expected {m.records}, {due[m.records]}")
            m.samples.append(sample)
            m.selected.append(got["summary"]["delete"])
    res.check = "selected (expected: {})".format(", ".join(f"{due[k]:,} of {k:,}" for k in (n, small)))
    res.expected = -1  # per-size expectations, checked above
    ratio = big_m.peak_rss_mb / small_m.peak_rss_mb
    ok = ratio <= 1.2 and big_m.peak_rss_mb < 200
    res.extra["peak RSS at N ≤ 1.2× at N/10 and < 200 MB"] = (
        f"{big_m.peak_rss_mb:.0f} MB vs {small_m.peak_rss_mb:.0f} MB = {ratio:.2f}× — {'met' if ok else 'NOT met'}")
    return res
