"""``python -m bench.dask_workers [--n N] [--files F] [--rounds R]``: S3 enforce over an S3
Inventory report with the Dask executor on a LocalCluster of 1 and of 2 worker processes.

Same run, alternating 1, 2, 1, 2 … workers, each round on a fresh bucket seeded identically
(out of band, untimed) with its own report of F data files (F partitions) and a PostgreSQL
state schema of its own. Timed: ``run()`` only — the clusters are started before and kept.
The moto server runs in this process (threads), so it shares the machine's CPUs with the
workers: the ratio says what a second worker buys on this machine, not on AWS.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from .motoserver import AWS_ENV, client, count, drop, moto_server, seed

POSTGRES = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[1]


def _inventories() -> Any:
    """The report writer of the tests (AWS's documented layout), loaded by path."""
    spec = importlib.util.spec_from_file_location("bench_inventories", ROOT / "tests" / "s3" / "inventories.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema(engine: sa.Engine) -> str:
    name = f"bench_dask_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    return name


def one_round(endpoint: str, executor: Any, n: int, files: int, workdir: Path, engine: sa.Engine) -> float:
    from retention_core.partitioned import PartitionedRun
    from retention_core.runtime import Runtime
    from retention_core.scheduler import RunOptions, run

    inventories = _inventories()
    bucket, dest = f"bench-{uuid.uuid4().hex[:10]}", f"inv-{uuid.uuid4().hex[:10]}"
    seed(endpoint, bucket, n, age_days=400)
    s3 = client(endpoint)
    s3.create_bucket(Bucket=dest)
    inventories.write_inventory(s3, dest, "inv", bucket, inventories.listed(s3, bucket, versions=False), "Parquet",
                                datetime.now(timezone.utc), files=files)
    schema = _schema(engine)
    folder = workdir / bucket
    folder.mkdir()
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1, "state": f"{POSTGRES}?options=-csearch_path%3D{schema}", "audit": "audit.jsonl",
        "categories": {"call": {"retain": "365d"}}, "limits": {"max_fraction": 1.0},
        "sources": [{"name": "recordings", "backend": "s3", "category": "call",
                     "match": r"tenants/(?P<subject>[^/]+)/calls/.+\.wav",
                     "options": {"bucket": bucket, "prefix": "tenants/", "endpoint_url": endpoint,
                                 "region": "us-east-1",
                                 "inventory": {"bucket": dest, "prefix": "inv", "config_id": "daily"}}}]}))
    try:
        with Runtime.open(policy) as rt, PartitionedRun(rt, executor) as spread:
            started = time.perf_counter()
            with run(rt, RunOptions(now=datetime.now(timezone.utc), distributor=spread)) as report:
                took = time.perf_counter() - started
                deleted = report.outcomes()["deleted"]
        left = count(endpoint, bucket)
        if deleted != n or left:
            raise SystemExit(f"round deleted {deleted} of {n}, {left} left: not a valid measurement")
        return took
    finally:
        drop(endpoint, bucket)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from retention_core.executors import DaskExecutor

    os.environ.update(AWS_ENV)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its scheduler runs in this process
    engine = sa.create_engine(POSTGRES)
    times: dict[int, list[float]] = {1: [], 2: []}
    started = time.time()
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        clusters = {k: DaskExecutor(workers=k, env=dict(AWS_ENV)) for k in (1, 2)}
        try:
            for _ in range(args.rounds):
                for k in (1, 2):
                    times[k].append(one_round(endpoint, clusters[k], args.n, args.files, Path(tmp), engine))
                    print(f"{k} worker(s): {times[k][-1]:.2f} s", flush=True)
        finally:
            for executor in clusters.values():
                executor.close()
    one, two = statistics.median(times[1]), statistics.median(times[2])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nS3 enforce over an inventory ({args.n:,} objects, {args.files} Parquet data files = partitions, moto), "
          f"{args.rounds} rounds alternating; {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average at the end {load}; {time.time() - started:.0f} s")
    print("| workers | median s | all rounds s | objects/s |\n|---|---|---|---|")
    for k, median in ((1, one), (2, two)):
        print(f"| {k} | {median:.2f} | {', '.join(f'{t:.2f}' for t in times[k])} | {args.n / median:,.0f} |")
    print(f"\nspeed-up 1 → 2 workers: {one / two:.2f}×")


if __name__ == "__main__":
    main()
