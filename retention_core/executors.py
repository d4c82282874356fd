"""Where a partitioned run's tasks execute: in this process, or on a Dask distributed cluster.

Dask is imported only when a :class:`DaskExecutor` is made, so a local run never loads it
(``tests/distributed/test_local_imports.py``). Both run module-level functions on picklable
jobs and hand back each job's result, or the exception it raised, in the jobs' order: the
caller decides what a failed task means (a survey failure stops the run before anything is
deleted; a deletion task's failure leaves open intents for the next run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from .errors import ConfigError
from .policy import EXECUTOR_KINDS as KINDS
from .policy import scheduler_address_problem

J = TypeVar("J")
R = TypeVar("R")

class Executor(Protocol):
    """Runs ``fn(job)`` for every job; results (or raised exceptions) in the jobs' order."""

    #: For people: "in this process", "Dask LocalCluster, 2 workers", "Dask at tcp://…".
    label: str

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R | BaseException]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every task in this process, one after another: the partitioned path without a cluster
    (tests, and a check that a partitioned run gives the same answers as the plain one)."""

    label = "in this process"

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R | BaseException]:
        out: list[R | BaseException] = []
        for job in jobs:
            try:
                out.append(fn(job))
            except Exception as exc:  # the caller judges a failed task, as with a cluster
                out.append(exc)
        return out

    def close(self) -> None:
        pass


class DaskExecutor:
    """Tasks on a Dask distributed cluster: the one at *scheduler* (``tcp://host:8786``), or a
    ``LocalCluster`` of *workers* processes started here (one thread each, *env* added to their
    environment) and stopped by :meth:`close`.

    A task whose worker dies is not retried (``distributed.scheduler.allowed-failures`` 0 on
    a cluster started here): a deletion task run twice would journal a second segment for the
    same records; its open intents are settled by the next run instead. An existing cluster
    keeps its own setting; set it to 0 there too (docs/scaling.md).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        try:
            import dask
            import distributed
        except ImportError:
            raise ConfigError("the dask executor needs Dask distributed: pip install 'retention[dask]'",
                              key="executor") from None
        self.cluster: Any = None
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            try:
                if scheduler is not None:
                    self.client = distributed.Client(scheduler, timeout="20s", set_as_default=False)
                    self.label = f"Dask at {scheduler}"
                else:
                    count = workers or min(os.cpu_count() or 1, 8)
                    # env: set in every worker process, also in one its nanny restarts
                    self.cluster = distributed.LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                                            dashboard_address=":0", silence_logs=logging.ERROR,
                                                            env=dict(env or {}))
                    self.client = distributed.Client(self.cluster, set_as_default=False)
                    self.label = f"Dask LocalCluster, {count} worker processes"
            except (OSError, TimeoutError, ValueError, ImportError) as exc:  # ValueError: an address Dask refuses
                if self.cluster is not None:
                    self.cluster.close()
                where = scheduler or "a LocalCluster"
                raise ConfigError(f"cannot reach the Dask scheduler at {where}: {exc}", key="executor") from None

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R | BaseException]:
        if not jobs:
            return []
        futures = self.client.map(fn, list(jobs), pure=False)
        out: list[R | BaseException] = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as exc:  # KilledWorker, or what the task raised
                out.append(exc)
        return out

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str, scheduler: str | None = None, workers: int | None = None) -> Executor:
    """The executor *kind* names (``local`` or ``dask``); ConfigError for anything else."""
    if kind == "local":
        return LocalExecutor()
    if kind == "dask":
        problem = None if scheduler is None else scheduler_address_problem(scheduler)
        if problem is not None:
            raise ConfigError(problem, key="executor.scheduler")
        return DaskExecutor(scheduler, workers)
    raise ConfigError(f"unknown executor {kind!r}: expected one of {', '.join(KINDS)}", key="executor")


__all__ = ["KINDS", "DaskExecutor", "Executor", "LocalExecutor", "make_executor"]
