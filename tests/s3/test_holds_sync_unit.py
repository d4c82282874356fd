"""``sync_source`` on its own: moto in-process and a SQLite state database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from moto import mock_aws

from retention_core import Hold, HoldScope, Record
from retention_core.engine import covering_holds
from retention_s3.holds_sync import legal_holds_table, sync_source

from .conftest import make_bucket, native_client

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOLD = Hold(id="LH-1", kind="legal", scope=HoldScope(subject="carol"), reason="case")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        yield native_client()


def records(s3: Any, bucket: str) -> list[Record]:
    out = []
    for v in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        out.append(Record(source="rec", location=v["Key"], created=NOW, version=v["VersionId"],
                          subject=v["Key"].split("/")[0]))
    return out


def status(s3: Any, bucket: str, record: Record) -> str:
    answer = s3.get_object_legal_hold(Bucket=bucket, Key=record.location, VersionId=record.version)
    return str(answer.get("LegalHold", {}).get("Status") or "OFF")


def run(engine: sa.Engine, s3: Any, bucket: str, holds: tuple[Hold, ...], dry_run: bool = False) -> Any:
    return sync_source(engine=engine, client=s3, bucket=bucket, source="rec", records=records(s3, bucket),
                       holds=holds, covering=covering_holds, dry_run=dry_run)


def test_dry_run_changes_neither_storage_nor_the_table(s3: Any, tmp_path: Any) -> None:
    bucket = make_bucket(s3, lock=True)
    s3.put_object(Bucket=bucket, Key="carol/1.wav", Body=b"x")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    result = run(engine, s3, bucket, (HOLD,), dry_run=True)
    assert [c.action for c in result.changes] == ["on"] and "would switch ON" in result.changes[0].detail
    [record] = records(s3, bucket)
    assert status(s3, bucket, record) == "OFF"
    with engine.connect() as conn:
        assert conn.execute(sa.select(legal_holds_table)).all() == []


def test_only_versions_we_switched_on_are_switched_off(s3: Any, tmp_path: Any) -> None:
    bucket = make_bucket(s3, lock=True)
    for key in ("carol/1.wav", "carol/2.wav", "dave/3.wav"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    by_key = {r.location: r for r in records(s3, bucket)}
    theirs = by_key["carol/2.wav"]
    s3.put_object_legal_hold(Bucket=bucket, Key=theirs.location, VersionId=theirs.version,
                             LegalHold={"Status": "ON"})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")

    placed = run(engine, s3, bucket, (HOLD,))
    assert sorted((c.action, c.key) for c in placed.changes) == [("foreign", "carol/2.wav"), ("on", "carol/1.wav")]
    assert status(s3, bucket, by_key["carol/1.wav"]) == "ON"
    assert status(s3, bucket, by_key["dave/3.wav"]) == "OFF"
    assert run(engine, s3, bucket, (HOLD,)).count("on") == 0, "a second sync changes nothing"

    lifted = run(engine, s3, bucket, ())
    assert [(c.action, c.key) for c in lifted.changes] == [("off", "carol/1.wav")]
    assert status(s3, bucket, by_key["carol/1.wav"]) == "OFF"
    assert status(s3, bucket, theirs) == "ON", "a legal hold placed by someone else survives"
    with engine.connect() as conn:
        assert conn.execute(sa.select(legal_holds_table)).all() == []
