"""SQL key ranges as partitions: together they list exactly what scan lists — records with their
stamps, problem rows, a NULL key — on SQLite, PostgreSQL and MariaDB, integer and text keys."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core import Options, Problem, Record, Source
from retention_core.testing import require_service
from retention_sql import partitions
from retention_sql.backend import SqlBackend

URLS = {
    "postgresql": os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
EPOCH = datetime(2024, 1, 1)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'parts.db'}"
        return
    target = URLS[request.param]
    try:
        engine = sa.create_engine(target, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        require_service(False, f"{request.param} at {target}")
    yield target


@pytest.mark.parametrize("key_type", [sa.Integer, sa.String(64)])
def test_key_ranges_together_scan_exactly_the_table(url: str, key_type: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"parts_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url)
    table = sa.Table(name, sa.MetaData(), sa.Column("id", key_type, unique=True, nullable=True),
                     sa.Column("owner", sa.String(32)), sa.Column("created_at", sa.DateTime))
    table.create(engine)
    try:
        integer = key_type is sa.Integer
        rows = [{"id": i * 3 if integer else f"k{i:04d}", "owner": f"s{i % 5}",
                 "created_at": EPOCH + timedelta(hours=i) if i % 11 else None} for i in range(60)]
        rows.append({"id": None, "owner": "nobody", "created_at": EPOCH})
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        monkeypatch.setattr(partitions, "ROWS_PER_PARTITION", 9)
        source = Source(name="t", backend="sql")
        options = {"url": url, "table": name, "key": "id", "subject": "owner", "created": "created_at",
                   "timezone": "UTC", "batch_size": 4}
        with SqlBackend(Options(options)) as backend:
            whole = list(backend.scan(source))
            parts = backend.partitions(source)
            together = [item for part in parts for item in backend.scan_partition(source, part)]
        assert len(parts) >= 5, [p.label for p in parts]

        def keyed(items: list[Record | Problem]) -> Counter[tuple[Any, ...]]:
            return Counter((r.location, r.stamp, r.created) if isinstance(r, Record)
                           else ("problem", r.location, r.reason) for r in items)

        assert keyed(together) == keyed(whole)
        assert sum(isinstance(r, Problem) for r in whole) == 7  # six NULL created (every 11th), one NULL key
    finally:
        table.drop(engine)
        engine.dispose()
