"""Peak memory of the ``sql`` subjects source at 100,000 and 1,000,000 subjects (issue 20).

``python -m bench.subjects_rss [--small 100000] [--large 1000000] [--url sqlite|postgresql+psycopg://…]``

For each size it fills a ``customers`` table, then runs ``retention run --dry-run`` over a small
filesystem source whose records belong to a few of those customers, as a child process, and
reads that child's own peak RSS. The rows are streamed and the subjects kept in a temporary
index beyond :data:`retention_core.subjects.SPILL_AT`, so the large run must stay within
``--ratio`` (1.2) of the small one; the script exits 1 when it does not. Not a timed test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

from .measure import child_env, execute

CHUNK = 20_000


def fill(url: str, table: str, n: int) -> None:
    """*n* customers: every tenth has a service end, every fiftieth is a minor."""
    engine = sa.create_engine(url)
    customers = sa.Table(table, sa.MetaData(), sa.Column("customer_no", sa.String(40), primary_key=True),
                         sa.Column("brand", sa.String(40)), sa.Column("contract_end", sa.Date),
                         sa.Column("is_minor", sa.Boolean))
    customers.drop(engine, checkfirst=True)
    customers.create(engine)
    start = date(2020, 1, 1)
    with engine.begin() as conn:
        for first in range(0, n, CHUNK):
            conn.execute(customers.insert(), [
                {"customer_no": f"c{i:08d}", "brand": f"brand-{i % 17}",
                 "contract_end": start + timedelta(days=i % 1500) if i % 10 == 0 else None,
                 "is_minor": i % 50 == 0} for i in range(first, min(n, first + CHUNK))])
    engine.dispose()


def drop(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def policy(folder: Path, url: str, table: str, n: int) -> Path:
    """A dry-runnable policy: subjects from the table, records of 200 of its customers on disk."""
    root = folder / "records"
    for i in range(0, n, max(1, n // 200)):
        (root / f"c{i:08d}").mkdir(parents=True, exist_ok=True)
        (root / f"c{i:08d}" / "profile.json").write_text("{}")
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "state": "sqlite:///state.db", "audit": "audit.jsonl",
        "subjects": {"source": "sql", "url": url, "table": table,
                     "columns": {"subject_id": "customer_no", "controller": "brand",
                                 "service_ended_at": "contract_end", "minor": "is_minor"}},
        "categories": {"profile": {"retain": "90d", "after": "service_end"}},
        "sources": [{"name": "profiles", "backend": "fs", "options": {"root": str(root)},
                     "match": "(?P<subject>[^/]+)/.+", "category": "profile"}]}))
    return path


def measure(url: str | None, n: int) -> int:
    """The dry run's peak RSS in KiB with *n* subjects."""
    with tempfile.TemporaryDirectory(prefix="bench-subjects-") as tmp:
        folder = Path(tmp)
        db_url = url or f"sqlite:///{folder / 'crm.db'}"
        table = f"bench_customers_{uuid.uuid4().hex[:8]}"
        fill(db_url, table, n)
        try:
            sample = execute([sys.executable, "-m", "retention_core", "run", "--dry-run", "-c",
                              str(policy(folder, db_url, table, n))], env=child_env(), cwd=tmp)
        finally:
            drop(db_url, table)
        return sample.peak_rss_kb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--ratio", type=float, default=1.2)
    parser.add_argument("--url", help="an SQLAlchemy URL (default: a SQLite file per size)")
    args = parser.parse_args(argv)
    small, large = measure(args.url, args.small), measure(args.url, args.large)
    ratio = large / small
    verdict = "ok" if ratio <= args.ratio else "TOO HIGH"
    print(f"subjects {args.small:>9,}: peak RSS {small / 1024:7.1f} MiB")
    print(f"subjects {args.large:>9,}: peak RSS {large / 1024:7.1f} MiB")
    print(f"ratio {ratio:.2f} (limit {args.ratio}): {verdict}")
    return 0 if ratio <= args.ratio else 1


if __name__ == "__main__":
    sys.exit(main())
