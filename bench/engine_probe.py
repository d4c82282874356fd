"""``Decider.decide()`` alone, as a run calls it per record, timed in one process: ``python -m bench.engine_probe N``.

Records are built before the clock starts (100,000 distinct ones, decided in turn until N
decisions are made), so the time is the engine's and nothing else's. A realistic mix: two
clocks (created, service end), a thousand subjects, holds, a minor, erasure requests.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone

from retention_core.durations import parse_duration
from retention_core.engine import Decider
from retention_core.model import Action, Category, Context, ErasureRequest, Hold, HoldScope, Record, Subject

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
DISTINCT = 100_000


def context() -> Context:
    categories = {
        "call": Category("call", parse_duration("90d")),
        "transcript": Category("transcript", parse_duration("2y")),
        "account": Category("account", parse_duration("30d"), after="service_end", action=Action.ANONYMIZE),
    }
    subjects = {f"s{k}": Subject(f"s{k}", controller="ctl",
                                 service_ended_at=NOW - timedelta(days=k) if k % 3 == 0 else None,
                                 minor=k == 7) for k in range(1000)}
    holds = (Hold("LH-1", "legal", HoldScope(subject="s1"), "case"),
             Hold("LH-2", "dispute", HoldScope(subject="s2", category="call"), "dispute"),
             Hold("LH-3", "legal", HoldScope(source="archive"), "audit"))
    requests = {"s9": ErasureRequest("ER-1", "s9", "ctl", NOW - timedelta(days=3), NOW + timedelta(days=27))}
    return Context(now=NOW, categories=categories, subjects=subjects, holds=holds, requests=requests)


def records() -> list[Record]:
    kinds = ("call", "transcript", "account", "call", "unknown")
    return [Record("calls", f"s{i % 1000}/{i}", NOW - timedelta(minutes=7 * i), 10, None, f"s{i % 1000}",
                   kinds[i % len(kinds)]) for i in range(DISTINCT)]


def main(argv: list[str]) -> int:
    n = int(argv[0])
    ctx, recs = context(), records()
    decide = Decider(ctx).decide  # one per run's context, as the scheduler does
    tally: dict[str, int] = {}
    done = 0
    start, cpu = time.perf_counter(), time.process_time()
    while done < n:
        for record in recs[: n - done]:
            action = decide(record).action
            tally[action] = tally.get(action, 0) + 1
        done += min(len(recs), n - done)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"decisions": done, "seconds": took, "cpu_seconds": cpu,
                      "tally": {str(k): v for k, v in tally.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
