"""The ``store`` fixture factory: one fresh store of a given kind per test (fs, s3, sql, sql-pushdown)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import FsStore, S3Store, SqlStore, Store

#: Per-record backends, then the set-based SQL path. s3 runs on a moto server, sql on PostgreSQL.
KINDS = ["fs", "s3", "sql", "sql-pushdown"]
KIND_PARAMS = [pytest.param("fs", id="fs"),
               pytest.param("s3", id="s3", marks=pytest.mark.moto_server),
               pytest.param("sql", id="sql-postgres", marks=pytest.mark.postgres),
               pytest.param("sql-pushdown", id="sql-postgres-pushdown", marks=pytest.mark.postgres)]


def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """Yields ``make(kind)``; every store made is closed (tables dropped) after the test."""
    made: list[Store] = []

    def make(kind: str) -> Store:
        store: Store
        if kind == "fs":
            store = FsStore(tmp_path / f"data-{len(made)}")
        elif kind == "s3":
            store = S3Store(request.getfixturevalue("moto_endpoint"))
        else:
            store = SqlStore(request.getfixturevalue("postgres_url"), push_down=kind == "sql-pushdown")
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()
