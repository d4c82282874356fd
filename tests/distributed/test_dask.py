"""The same policy over the same data, local vs a 2-worker Dask LocalCluster (processes):
identical deletions, outcomes and trail content (order aside), on fs and on moto S3; the
state store on PostgreSQL (a schema per test), as a distributed run requires."""

from __future__ import annotations

import importlib.util
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import audit
from retention_core.partitioned import PartitionedRun
from retention_core.runtime import Runtime
from retention_core.scheduler import RunOptions, run
from retention_core.testing.builders import PolicyBuilder

#: Everything is "created" now; the runs are as of 40 days on: short is due, long is not.
LATER = datetime.now(timezone.utc) + timedelta(days=40)
SUBJECTS = ("alice", "bob", "carol", "dave", "held")
MATCH = r"(?P<subject>[^/]+)/(?P<category>short|long)/.+"


def layout() -> list[str]:
    return [f"{s}/{c}/rec-{i}.bin" for s in SUBJECTS for c in ("short", "long") for i in range(4)]


def write_policy(folder: Path, state: str, source: dict[str, Any]) -> Path:
    return PolicyBuilder(folder).write(
        categories={"short": {"retain": "30d"}, "long": {"retain": "1y"}},
        sources=[{"match": MATCH, **source}],
        subjects=[{"subject_id": s, "controller": "acme"} for s in SUBJECTS],
        holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "held"}, "reason": "case"}],
        limits={"max_fraction": 1.0}, state=state, audit="trail/audit.jsonl")


def enforce(config: Path, executor: Any | None) -> dict[str, Any]:
    with Runtime.open(config) as rt:
        if executor is None:
            with run(rt, RunOptions(now=LATER, as_of_given=True)) as report:
                return {"status": report.status, "outcomes": report.outcomes(), "summary": report.summary()}
        with PartitionedRun(rt, executor) as spread:
            with run(rt, RunOptions(now=LATER, as_of_given=True, distributor=spread)) as report:
                return {"status": report.status, "outcomes": report.outcomes(), "summary": report.summary()}


def trail_rows(trail: Path) -> Counter[tuple[Any, ...]]:
    """Per-record lines of every run, read through segments; run ids, batch ids, times aside."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for entry in audit.records(trail):
        if entry.get("event") in ("intent", "outcome") and entry.get("location") is not None:
            rows[(entry["event"], entry["source"], entry["location"], entry.get("version") is not None,
                  entry.get("subject"), entry.get("category"), entry.get("action"), entry.get("reason"),
                  entry.get("outcome"), entry.get("error"))] += 1
    return rows


def _load(name: str, path: Path) -> Any:
    """A helper module of another test folder, by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_dist_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(tmp_path: Path, cluster: Any, pg_state: str, make_source: Callable[[str], dict[str, Any]],
            present: Callable[[dict[str, Any]], set[str]]) -> list[dict[str, Any]]:
    results, left, trails = {}, {}, {}
    for kind in ("local", "dask"):
        source = make_source(kind)
        # one state store for both: the runs follow each other, each with a trail of its own
        config = write_policy(tmp_path / kind, pg_state, source)
        results[kind] = enforce(config, cluster if kind == "dask" else None)
        left[kind] = present(source)
        trails[kind] = config.parent / "trail" / "audit.jsonl"
    assert results["local"] == results["dask"]
    assert results["dask"]["outcomes"]["deleted"] == 4 * 4  # short records of the four subjects not held
    assert left["local"] == left["dask"]
    assert {p for p in left["dask"] if p.startswith("held/")} == {p for p in layout() if p.startswith("held/")}
    assert trail_rows(trails["local"]) == trail_rows(trails["dask"])
    checked = audit.verify(trails["dask"])
    assert checked.ok, checked.problem
    lines = list(audit.read(trails["dask"]))
    segments = [e for e in lines if e["event"] == "segment"]
    assert segments and sum(e["outcomes"].get("deleted", 0) for e in segments) == 16
    return lines


def test_fs_local_and_dask_agree(tmp_path: Path, cluster: Any, pg_state: str) -> None:
    def make_source(kind: str) -> dict[str, Any]:
        root = tmp_path / f"data-{kind}"
        for location in layout():
            (root / location).parent.mkdir(parents=True, exist_ok=True)
            (root / location).write_bytes(location.encode())
        return {"name": "files", "backend": "fs", "options": {"root": str(root)}}

    def present(source: dict[str, Any]) -> set[str]:
        root = Path(source["options"]["root"])
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    compare(tmp_path, cluster, pg_state, make_source, present)


def test_s3_local_and_dask_agree(tmp_path: Path, cluster: Any, pg_state: str, s3: Any, moto_endpoint: str) -> None:
    def make_source(kind: str) -> dict[str, Any]:
        bucket = f"dist-{kind}-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        for location in layout():
            s3.put_object(Bucket=bucket, Key=location, Body=location.encode())
        return {"name": "objects", "backend": "s3", "options": {"bucket": bucket, "endpoint_url": moto_endpoint}}

    def present(source: dict[str, Any]) -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=source["options"]["bucket"])
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    compare(tmp_path, cluster, pg_state, make_source, present)


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
def test_s3_inventory_local_and_dask_agree(tmp_path: Path, cluster: Any, pg_state: str, s3: Any,
                                           moto_endpoint: str, fmt: str) -> None:
    """Scanned from an S3 Inventory report (AWS's layout, three data files: three partitions)."""
    inventories = _load("inventories", Path(__file__).parents[1] / "s3" / "inventories.py")
    listed, write_inventory = inventories.listed, inventories.write_inventory

    def make_source(kind: str) -> dict[str, Any]:
        bucket, dest = (f"dist-{kind}-{uuid.uuid4().hex[:12]}" for _ in range(2))
        for name in (bucket, dest):
            s3.create_bucket(Bucket=name)
        for location in layout():
            s3.put_object(Bucket=bucket, Key=location, Body=location.encode())
        write_inventory(s3, dest, "inv", bucket, listed(s3, bucket, versions=False), fmt,
                        datetime.now(timezone.utc), files=3)
        # the runs are as of 40 days on: the report is that old then
        inventory = {"bucket": dest, "prefix": "inv", "config_id": "daily", "max_age": "60d"}
        return {"name": "objects", "backend": "s3",
                "options": {"bucket": bucket, "endpoint_url": moto_endpoint, "inventory": inventory}}

    def present(source: dict[str, Any]) -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=source["options"]["bucket"])
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    lines = compare(tmp_path, cluster, pg_state, make_source, present)
    [dispatched] = [e for e in lines if e["event"] == "segments-dispatched"]
    assert len(dispatched["segments"]) == 3, "one partition (and segment) per inventory data file"



def test_a_hold_placed_after_the_survey_protects_on_the_workers(tmp_path: Path, cluster: Any, pg_state: str) -> None:
    """Between the survey and the deletions a hold is placed (in the shared state store): the
    worker processes re-read holds per batch, re-decide, and delete nothing it covers."""
    from retention_core.model import HoldScope

    root = tmp_path / "data"
    for location in layout():
        (root / location).parent.mkdir(parents=True, exist_ok=True)
        (root / location).write_bytes(location.encode())
    config = write_policy(tmp_path / "cfg", pg_state, {"name": "files", "backend": "fs",
                                                       "options": {"root": str(root)}})

    class HoldBetweenPhases(PartitionedRun):
        def delete(self, rt: Runtime, *args: Any) -> None:
            rt.state.place_hold("LH-late", "legal", HoldScope(subject="alice"), "placed mid-run", by="tester")
            super().delete(rt, *args)

    with Runtime.open(config) as rt, HoldBetweenPhases(rt, cluster) as spread:
        with run(rt, RunOptions(now=LATER, as_of_given=True, distributor=spread)) as report:
            assert report.outcomes()["deleted"] == 3 * 4  # bob, carol, dave; alice held late
            assert report.sources["files"].decisions["hold"] == 8 + 4  # "held", and alice's short records
            assert report.protected()["LH-late"] == 4
    assert all((root / p).exists() for p in layout() if p.startswith("alice/"))


def test_sql_key_ranges_local_and_dask_agree(tmp_path: Path, cluster: Any, pg_state: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL table read record by record (a `match:`), cut into key ranges of 7 rows."""
    import sqlalchemy as sa

    from retention_sql import partitions

    monkeypatch.setattr(partitions, "ROWS_PER_PARTITION", 7)  # cut in this process; workers get the ranges
    url = pg_state.split("?")[0]
    engine = sa.create_engine(url)
    tables = {}
    created = datetime.now(timezone.utc)
    for kind in ("local", "dask"):
        table = sa.Table(f"dist_{kind}_{uuid.uuid4().hex[:8]}", sa.MetaData(),
                         sa.Column("id", sa.Integer, primary_key=True), sa.Column("owner", sa.String(16)),
                         sa.Column("kind", sa.String(8)),
                         sa.Column("created_at", sa.DateTime(timezone=True)))
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": i, "owner": SUBJECTS[i % 5], "kind": ("short", "long")[i % 2],
                                             "created_at": created} for i in range(40)])
        tables[kind] = table
    try:
        def make_source(kind: str) -> dict[str, Any]:
            return {"name": "rows", "backend": "sql", "category": "short", "match": r"\d+",
                    "options": {"url": url, "table": str(tables[kind].name), "key": "id", "subject": "owner",
                                "created": "created_at"}}

        def present(source: dict[str, Any]) -> set[str]:
            table = tables["local" if "local" in source["options"]["table"] else "dask"]
            with engine.connect() as conn:
                rows = conn.execute(sa.select(table.c.id, table.c.owner, table.c.kind))
                return {f"{owner}/{kind}/{key}" for key, owner, kind in rows}

        results, trails = {}, {}
        for kind in ("local", "dask"):
            config = write_policy(tmp_path / kind, pg_state, make_source(kind))
            results[kind] = enforce(config, cluster if kind == "dask" else None)
            trails[kind] = config.parent / "trail" / "audit.jsonl"
        lines = list(audit.read(trails["dask"]))
        assert results["local"] == results["dask"] and results["dask"]["outcomes"]["deleted"] == 32
        assert trail_rows(trails["local"]) == trail_rows(trails["dask"])
        assert audit.verify(trails["dask"]).ok
        assert present(make_source("local")) == present(make_source("dask"))
        [dispatched] = [e for e in lines if e["event"] == "segments-dispatched"]
        assert len(dispatched["segments"]) >= 4, "key ranges of about 7 rows"
    finally:
        for table in tables.values():
            table.drop(engine)
        engine.dispose()
