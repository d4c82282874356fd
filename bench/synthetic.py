"""A bench-local backend that makes records up as it goes: no storage, so a run's memory
and CPU are the core's alone. ``python -m bench.synthetic POLICY`` runs a dry run through
the real scheduler with this backend registered, like ``retention run --dry-run``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

from retention_core import Backend, Options, Outcome, Record, Source, Status, hookimpl

#: Everything is dated back from this instant, so every run selects the same records.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
SUBJECTS = 1000


class SyntheticBackend(Backend):
    """``n`` records ``tenant-<k>/calls/<i>.wav``, ages spread evenly over two years."""

    name = "synthetic"

    def __init__(self, options: Options) -> None:
        self.n = options.int("n", minimum=0)
        options.done()

    def scan(self, source: Source) -> Iterator[Record]:
        step = timedelta(days=730) / max(self.n, 1)
        for i in range(self.n):
            yield Record(source.name, f"tenant-{i % SUBJECTS}/calls/{i}.wav", EPOCH - step * i, 1024)

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            yield Outcome(record, Status.DELETED)


class SyntheticPlugin:
    @hookimpl
    def retention_register_backends(self, register):  # type: ignore[no-untyped-def]
        register(SyntheticBackend)


def expected_due(n: int, retain_days: int, now: datetime) -> int:
    step = timedelta(days=730) / max(n, 1)
    return sum(1 for i in range(n) if EPOCH - step * i + timedelta(days=retain_days) <= now)


def main(argv: list[str]) -> int:
    from retention_core.plugins import load_plugins
    from retention_core.runtime import Runtime
    from retention_core.scheduler import RunOptions, run

    policy, as_of = argv[0], datetime.fromisoformat(argv[1])
    with Runtime.open(policy, load_plugins(extra=[SyntheticPlugin()])) as rt:
        report = run(rt, RunOptions(now=as_of, dry_run=True, as_of_given=True))
        try:
            print(json.dumps({"scanned": sum(s.scanned for s in report.sources.values()),
                              "summary": report.summary()}))
        finally:
            report.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
