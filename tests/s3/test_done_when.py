"""Done-when: a dry run and an enforcing run over a versioned, Object-Locked bucket of
more than 10,000 object versions behave exactly as specified, and held versions survive.

Over the wire (moto server) and through the real CLI. Slow: seeding alone is ~10k PUTs.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import retention_s3

from .conftest import all_versions, make_bucket

pytestmark = [pytest.mark.slow, pytest.mark.moto_server]

TENANTS = [f"t{i:03d}" for i in range(100)]
PER_TENANT = 100
OUR_HOLD = "t000"  # our legal hold: nothing of it may go
STORAGE_HELD = "t002"  # some versions carry an S3 legal hold someone else placed
TWICE = "t004"  # every key has two versions; half also a delete marker on top


@pytest.fixture
def retention_plugin() -> Any:
    return retention_s3


def test_ten_thousand_versions_dry_run_then_enforce(retention_cli: Any, policy_builder: Any, s3: Any,
                                                    moto_endpoint: str, tmp_path: Path) -> None:
    bucket = make_bucket(s3, lock=True)
    keys = [f"tenants/{t}/calls/{n:04d}.wav" for t in TENANTS for n in range(PER_TENANT)]
    twice = [k for k in keys if f"/{TWICE}/" in k]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"a"), keys))
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"bb"), twice))
        list(pool.map(lambda k: s3.delete_object(Bucket=bucket, Key=k), twice[::2]))
    storage_held = [(v, k) for k, v, marker in all_versions(s3, bucket, f"tenants/{STORAGE_HELD}/")
                    if not marker][:10]
    for version, key in storage_held:
        s3.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "ON"})
    before = all_versions(s3, bucket)
    assert sum(1 for *_, marker in before if not marker) == 10_100

    subjects = [{"subject_id": t, "controller": "ctl",
                 "service_ended_at": "2020-01-01" if i % 2 == 0 else ""} for i, t in enumerate(TENANTS)]
    policy = policy_builder.write(
        categories={"voice_recording": {"retain": "90d", "after": "service_end"}},
        sources=[{"name": "recordings", "backend": "s3", "category": "voice_recording",
                  "match": r"tenants/(?P<subject>[^/]+)/calls/.+\.wav",
                  "options": {"bucket": bucket, "prefix": "tenants/", "endpoint_url": moto_endpoint,
                              "concurrency": 4}}],
        subjects=subjects)
    placed = retention_cli("holds", "place", "-c", policy, "--id", "LH-1", "--kind", "legal",
                           "--reason", "litigation", "--subject", OUR_HOLD)
    assert placed.exit_code == 0, placed.output

    due_tenants = {t for i, t in enumerate(TENANTS) if i % 2 == 0} - {OUR_HOLD}
    due_versions = {(k, v) for k, v, marker in before
                    if not marker and k.split("/")[1] in due_tenants}
    assert len(due_versions) == 49 * PER_TENANT + PER_TENANT  # t004's keys have two versions

    dry = retention_cli("run", "-c", policy, "--dry-run", "--report", tmp_path / "dry.json")
    assert dry.exit_code == 0, dry.output
    assert all_versions(s3, bucket) == before, "a dry run changed storage"
    planned = json.loads((tmp_path / "dry.json").read_text())
    decisions = Counter(i["decision"] for i in planned["items"])
    assert decisions == {"delete": len(due_versions), "hold": PER_TENANT, "keep": 50 * PER_TENANT}
    assert {(i["location"], i["version"]) for i in planned["items"] if i["decision"] == "delete"} == due_versions

    done = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "run.json").read_text())
    outcomes = Counter(i["outcome"] for i in result["items"] if i["outcome"])
    assert outcomes == {"deleted": len(due_versions) - len(storage_held), "refused": len(storage_held)}

    after = all_versions(s3, bucket)
    left = {(k, v) for k, v, marker in after if not marker}
    assert {(k, v) for v, k in storage_held} <= left, "versions held by storage must survive"
    assert not (left & (due_versions - {(k, v) for v, k in storage_held}))
    assert {(k, v) for k, v, m in before if not m and k.split("/")[1] not in due_tenants} <= left
    assert not [k for k, _, marker in after if marker and f"/{TWICE}/" in k], "orphaned markers remain"
    assert all_versions(s3, bucket, f"tenants/{TWICE}/") == []
