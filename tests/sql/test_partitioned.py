"""PostgreSQL declarative partitioning: a partitioned table's rows live in its partitions.

Every statement carries ONLY so that tables which INHERIT from the configured one are never
read or touched; on a partitioned table that ONLY would see nothing at all (adversary: a
partitioned table listed 0 rows, and an erasure request over it read done while every row
remained)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from retention_core import Options, Source
from retention_core.testing.services import require_service

from .conftest import URLS, reachable


def test_a_partitioned_table_is_listed_and_deleted_through_its_partitions() -> None:
    url = URLS["postgresql"]
    why = reachable(url)
    require_service(why is None, f"postgresql ({why})")
    engine = sa.create_engine(url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS rt_parted CASCADE")
        conn.exec_driver_sql("CREATE TABLE rt_parted (id int PRIMARY KEY, subj text, created timestamptz NOT NULL)"
                             " PARTITION BY RANGE (id)")
        conn.exec_driver_sql("CREATE TABLE rt_parted_a PARTITION OF rt_parted FOR VALUES FROM (0) TO (100)")
        conn.execute(sa.text("INSERT INTO rt_parted VALUES (1, 'acme', :old), (2, 'acme', :new)"),
                     {"old": now - timedelta(days=400), "new": now})
    try:
        from retention_sql.backend import SqlBackend

        backend = SqlBackend(Options({"url": url, "table": "rt_parted", "key": "id", "subject": "subj",
                                      "created": "created"}, where="sources[0].options"))
        source = Source("parted", "sql", category="c")
        listed = {r.location: r for r in backend.scan(source)}
        assert set(listed) == {"1", "2"}
        (outcome,) = backend.delete([listed["1"]])
        assert outcome.status == "deleted"
        with engine.connect() as conn:
            assert [r[0] for r in conn.exec_driver_sql("SELECT id FROM rt_parted ORDER BY id")] == [2]
        backend.close()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS rt_parted CASCADE")
        engine.dispose()
