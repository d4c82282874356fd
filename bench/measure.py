"""Running one contender as a child process: wall time and its own peak RSS (``wait4``)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class ContenderFailed(RuntimeError):
    """A contender exited non-zero or selected something else than the others."""


@dataclass(frozen=True)
class Sample:
    """One timed execution of one contender."""

    wall: float
    peak_rss_kb: int
    stdout: str
    cpu: float = 0.0  # user + system seconds of the child (the machine may be shared)


#: The directory holding the ``bench`` package, so ``python -m bench.…`` works from any cwd.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def execute(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
            ok_codes: tuple[int, ...] = (0,)) -> Sample:
    """Run *argv* to completion; RSS, user and system time are the child's own.

    Through ``/usr/bin/time`` where it exists: a child forked straight from this process
    would inherit this process's resident size in its ``ru_maxrss`` (the S3 workload keeps
    a moto server in here), while /usr/bin/time is small when it forks the contender.
    """
    timer = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-") as stats, open(os.devnull, "rb") as devnull:
        full = [timer, "-q", "-f", "%M %U %S", "-o", stats.name, *argv] if timer else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env) if env is not None else child_env(), cwd=cwd)
        # Read the pipes first (a full pipe would block the child), then reap with wait4 for rusage.
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        if proc.returncode not in ok_codes:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            raise ContenderFailed(f"{argv[0]} exited {proc.returncode}: " + " | ".join(tail))
        rss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if timer:
            fields = stats.read().split()
            rss, cpu = int(fields[-3]), float(fields[-2]) + float(fields[-1])
    return Sample(wall=wall, peak_rss_kb=rss, stdout=out.decode(errors="replace"), cpu=cpu)


@dataclass
class Measured:
    """Every sample of one contender on one workload, plus what it selected."""

    workload: str
    contender: str
    version: str
    records: int
    samples: list[Sample] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)
    note: str = ""
    failures: list[str] = field(default_factory=list)  # samples where the contender itself failed

    @property
    def median_wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def rate(self) -> float:
        """Median throughput in records per second."""
        return self.records / self.median_wall if self.samples else 0.0

    @property
    def median_cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def peak_rss_mb(self) -> float:
        return max(s.peak_rss_kb for s in self.samples) / 1024 if self.samples else 0.0
