"""Over the wire: a moto server on 127.0.0.1, driven through the real ``retention`` CLI.

Storage is seeded and inspected with a plain boto3 client. Covered: plain and versioned
buckets, delete markers, Object Lock legal holds placed by someone else, a bucket policy
denying one key (moto enforces bucket policies on DeleteObjects), 503 throttling that
botocore's standard retries absorb, odd keys, holds mirrored into legal holds, and one
real ``retention run`` subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import retention_s3
from retention_core import Options, Source, Status
from retention_s3.backend import S3Backend

from .conftest import FAKE_ENV, all_versions, make_bucket
from .faults import deny_delete_policy, throttle

pytestmark = pytest.mark.moto_server

CATEGORIES = {"voice_recording": {"retain": "90d", "after": "service_end"}}
NO_LIMIT = {"max_fraction": 1.0}  # these runs delete most of the bucket on purpose
MATCH = r"tenants/(?P<subject>[^/]+)/calls/.+\.wav"
SUBJECTS = [
    {"subject_id": "acme", "controller": "ctl", "service_ended_at": "2020-01-01"},  # long over: due
    {"subject_id": "bob", "controller": "ctl", "service_ended_at": "2020-01-01"},  # due, storage-held
    {"subject_id": "carol", "controller": "ctl", "service_ended_at": "2020-01-01"},  # our legal hold
    {"subject_id": "dave", "controller": "ctl", "service_ended_at": ""},  # still a customer: kept
]


@pytest.fixture
def retention_plugin() -> Any:
    return retention_s3


def put(s3: Any, bucket: str, key: str, body: bytes = b"audio") -> str | None:
    return s3.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")


def source(bucket: str, endpoint: str, **options: Any) -> dict[str, Any]:
    return {"name": "recordings", "backend": "s3", "match": MATCH, "category": "voice_recording",
            "options": {"bucket": bucket, "prefix": "tenants", "endpoint_url": endpoint, **options}}


def report_items(path: Path) -> dict[tuple[str, str | None], dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {(i["location"], i["version"]): i for i in data["items"]}


@pytest.fixture
def locked_bucket(s3: Any) -> dict[str, Any]:
    """A versioned, Object-Locked bucket of four tenants, delete markers and a neighbour folder."""
    bucket = make_bucket(s3, lock=True)
    seeded = {
        "acme_a1": put(s3, bucket, "tenants/acme/calls/a.wav", b"one"),
        "acme_a2": put(s3, bucket, "tenants/acme/calls/a.wav", b"two"),
        "acme_b": put(s3, bucket, "tenants/acme/calls/b c+d%e/ü//b.wav"),
        "bob": put(s3, bucket, "tenants/bob/calls/x.wav"),
        "carol": put(s3, bucket, "tenants/carol/calls/y.wav"),
        "dave": put(s3, bucket, "tenants/dave/calls/z.wav"),
    }
    s3.delete_object(Bucket=bucket, Key="tenants/acme/calls/a.wav")  # a user's delete: marker on top
    put(s3, bucket, "tenants/acme/notes.txt")  # outside the match regex
    put(s3, bucket, "tenants-archive/acme/calls/old.wav")  # a sibling of the prefix
    s3.put_object_legal_hold(Bucket=bucket, Key="tenants/bob/calls/x.wav", VersionId=seeded["bob"],
                             LegalHold={"Status": "ON"})  # placed by someone else
    return {"bucket": bucket, **seeded}


def test_versioned_locked_bucket_dry_run_then_enforce(retention_cli: Any, policy_builder: Any, s3: Any,
                                                     moto_endpoint: str, locked_bucket: dict[str, Any],
                                                     tmp_path: Path) -> None:
    bucket = locked_bucket["bucket"]
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)
    placed = retention_cli("holds", "place", "-c", policy, "--id", "LH-1", "--kind", "legal",
                           "--reason", "Smith v. Acme", "--subject", "carol")
    assert placed.exit_code == 0, placed.output
    before = all_versions(s3, bucket)

    dry = retention_cli("run", "-c", policy, "--dry-run", "--report", tmp_path / "dry.json")
    assert dry.exit_code == 0, dry.output
    assert all_versions(s3, bucket) == before, "a dry run changed storage"
    planned = report_items(tmp_path / "dry.json")
    assert {k for k, i in planned.items() if i["decision"] == "delete"} == {
        ("tenants/acme/calls/a.wav", locked_bucket["acme_a1"]), ("tenants/acme/calls/a.wav", locked_bucket["acme_a2"]),
        ("tenants/acme/calls/b c+d%e/ü//b.wav", locked_bucket["acme_b"]),
        ("tenants/bob/calls/x.wav", locked_bucket["bob"])}
    assert planned[("tenants/carol/calls/y.wav", locked_bucket["carol"])]["decision"] == "hold"
    assert planned[("tenants/dave/calls/z.wav", locked_bucket["dave"])]["decision"] == "keep"

    done = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert done.exit_code == 0, done.output  # a refusal by storage is not a failure
    outcomes = {k: i["outcome"] for k, i in report_items(tmp_path / "run.json").items() if i["outcome"]}
    assert outcomes == {
        ("tenants/acme/calls/a.wav", locked_bucket["acme_a1"]): "deleted",
        ("tenants/acme/calls/a.wav", locked_bucket["acme_a2"]): "deleted",
        ("tenants/acme/calls/b c+d%e/ü//b.wav", locked_bucket["acme_b"]): "deleted",
        ("tenants/bob/calls/x.wav", locked_bucket["bob"]): "refused"}
    left = {(k, marker) for k, _, marker in all_versions(s3, bucket)}
    assert left == {("tenants/acme/notes.txt", False), ("tenants-archive/acme/calls/old.wav", False),
                    ("tenants/bob/calls/x.wav", False), ("tenants/carol/calls/y.wav", False),
                    ("tenants/dave/calls/z.wav", False)}, "acme's versions and its orphaned marker must be gone"
    assert all_versions(s3, bucket, "tenants/acme/calls/") == []


def test_after_an_erasure_request_the_subjects_keys_list_no_versions(retention_cli: Any, policy_builder: Any,
                                                                     s3: Any, moto_endpoint: str) -> None:
    bucket = make_bucket(s3, versioned=True)
    for body in (b"1", b"2"):
        put(s3, bucket, "tenants/dave/calls/z.wav", body)
    s3.delete_object(Bucket=bucket, Key="tenants/dave/calls/z.wav")
    put(s3, bucket, "tenants/dave/calls/w.wav")
    put(s3, bucket, "tenants/acme2/calls/z.wav")  # another subject whose name starts alike
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS + [{"subject_id": "acme2", "controller": "ctl"}])
    erase = retention_cli("requests", "erase", "-c", policy, "--subject", "dave", "--controller", "ctl")
    assert erase.exit_code == 0, erase.output
    result = retention_cli("run", "-c", policy)
    assert result.exit_code == 0, result.output
    assert all_versions(s3, bucket, "tenants/dave/") == []
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["tenants/acme2/calls/z.wav"]


def test_bucket_policy_denial_fails_one_key_and_deletes_the_rest(retention_cli: Any, policy_builder: Any,
                                                                  s3: Any, moto_endpoint: str,
                                                                  tmp_path: Path) -> None:
    bucket = make_bucket(s3)
    for name in ("1", "2", "3"):
        put(s3, bucket, f"tenants/acme/calls/{name}.wav")
    s3.put_bucket_policy(Bucket=bucket, Policy=deny_delete_policy(bucket, "tenants/acme/calls/2.wav"))
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)
    result = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert result.exit_code == 1, result.output  # a deletion failed
    items = report_items(tmp_path / "run.json")
    assert {k[0]: i["outcome"] for k, i in items.items()} == {
        "tenants/acme/calls/1.wav": "deleted", "tenants/acme/calls/2.wav": "failed",
        "tenants/acme/calls/3.wav": "deleted"}
    assert "AccessDenied" in items[("tenants/acme/calls/2.wav", None)]["error"]
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["tenants/acme/calls/2.wav"]


def test_mfa_delete_refuses_the_source_with_exit_2(retention_cli: Any, policy_builder: Any, s3: Any,
                                                    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = make_bucket(s3, versioned=True)
    put(s3, bucket, "tenants/acme/calls/1.wav")
    real = S3Backend.versioning

    def with_mfa(self: S3Backend) -> dict[str, Any]:  # moto cannot switch MFA Delete on
        return {**real(self), "MFADelete": "Enabled"}

    monkeypatch.setattr(S3Backend, "versioning", with_mfa)
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)
    result = retention_cli("run", "-c", policy)
    assert result.exit_code == 2
    assert "MFA Delete" in result.output and "sources[0].options.bucket" in result.output
    assert "Traceback" not in result.output
    assert len(all_versions(s3, bucket)) == 1


def test_a_missing_bucket_is_one_line_not_a_traceback(retention_cli: Any, policy_builder: Any,
                                                      moto_endpoint: str) -> None:
    policy = policy_builder.write(categories=CATEGORIES, sources=[source("no-such-bucket", moto_endpoint)],
                                  subjects=SUBJECTS)
    for args in (["--dry-run"], []):
        result = retention_cli("run", "-c", policy, *args)
        assert result.exit_code == 2, result.output
        assert "bucket 'no-such-bucket' does not exist" in result.output
        assert "sources[0].options.bucket" in result.output and "Traceback" not in result.output


def test_holds_sync_mirrors_our_holds_and_never_touches_foreign_ones(
        retention_cli: Any, policy_builder: Any, s3: Any, moto_endpoint: str,
        locked_bucket: dict[str, Any]) -> None:
    bucket = locked_bucket["bucket"]
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)

    def legal_hold(key: str, version: str) -> str:
        answer = s3.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version)
        return str(answer.get("LegalHold", {}).get("Status") or "OFF")  # never set reads as OFF

    carol = ("tenants/carol/calls/y.wav", locked_bucket["carol"])
    bob = ("tenants/bob/calls/x.wav", locked_bucket["bob"])
    for subject in ("carol", "bob"):
        placed = retention_cli("holds", "place", "-c", policy, "--id", f"LH-{subject}", "--kind", "legal",
                               "--reason", "case", "--subject", subject)
        assert placed.exit_code == 0, placed.output

    dry = retention_cli("holds", "sync", "-c", policy, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would switch ON" in dry.output and legal_hold(*carol) == "OFF"

    synced = retention_cli("holds", "sync", "-c", policy)
    assert synced.exit_code == 0, synced.output
    assert legal_hold(*carol) == "ON"
    assert "placed by someone else" in synced.output  # bob's was ON already: not ours

    for subject in ("carol", "bob"):
        released = retention_cli("holds", "release", "-c", policy, f"LH-{subject}", "--reason", "settled")
        assert released.exit_code == 0, released.output
    lifted = retention_cli("holds", "sync", "-c", policy)
    assert lifted.exit_code == 0, lifted.output
    assert legal_hold(*carol) == "OFF", "our hold is released: our legal hold comes off"
    assert legal_hold(*bob) == "ON", "a legal hold someone else placed must survive"
    again = retention_cli("holds", "sync", "-c", policy)
    assert "switched 0 ON, 0 OFF" in again.output


def test_holds_sync_refuses_a_bucket_without_object_lock(retention_cli: Any, policy_builder: Any, s3: Any,
                                                          moto_endpoint: str) -> None:
    bucket = make_bucket(s3)
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)
    result = retention_cli("holds", "sync", "-c", policy)
    assert result.exit_code != 0 and "no Object Lock" in result.output


# -- throttling over HTTP ------------------------------------------------------------------------


def backend_for(bucket: str, endpoint: str, **options: Any) -> S3Backend:
    backend = S3Backend(Options({"bucket": bucket, "endpoint_url": endpoint, **options}))
    backend.backoff_base = 0
    return backend


def test_throttled_requests_recover_with_standard_retries(s3: Any, moto_endpoint: str) -> None:
    bucket = make_bucket(s3)
    for i in range(3):
        put(s3, bucket, f"k{i}")
    with backend_for(bucket, moto_endpoint, max_attempts=4) as backend:
        listed = throttle(backend.client, "ListObjectsV2", 2)
        deleted = throttle(backend.client, "DeleteObjects", 2)
        records = list(backend.scan(Source("calls", "s3")))
        outcomes = list(backend.delete(records))
    assert len(records) == 3 and len(listed) == 2 and len(deleted) == 2
    assert {o.status for o in outcomes} == {Status.DELETED}
    assert all_versions(s3, bucket) == []


def test_throttling_beyond_max_attempts_fails_the_records_truthfully(s3: Any, moto_endpoint: str) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "k")
    with backend_for(bucket, moto_endpoint, max_attempts=2) as backend:
        records = list(backend.scan(Source("calls", "s3")))
        throttle(backend.client, "DeleteObjects", 100)
        [outcome] = backend.delete(records)
    assert outcome.status is Status.FAILED and "SlowDown" in (outcome.error or "")
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["k"]


# -- a real process --------------------------------------------------------------------------------


def test_retention_run_as_a_subprocess(policy_builder: Any, s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    exe = shutil.which("retention")
    if exe is None:
        pytest.skip("the retention console script is not installed (pip install -e .)")
    bucket = make_bucket(s3)
    put(s3, bucket, "tenants/acme/calls/1.wav")
    put(s3, bucket, "tenants/dave/calls/2.wav")
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)], limits=NO_LIMIT,
                                  subjects=SUBJECTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RETENTION_"))}
    env.update(FAKE_ENV, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    result = subprocess.run([exe, "run", "-c", str(policy), "--report", str(tmp_path / "run.json")],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {k[0]: i["outcome"] for k, i in report_items(tmp_path / "run.json").items()} == {
        "tenants/acme/calls/1.wav": "deleted", "tenants/dave/calls/2.wav": None}
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["tenants/dave/calls/2.wav"]
    assert sys.executable  # the console script runs under the same interpreter's site-packages


def test_holds_sync_exists_in_a_fresh_process() -> None:
    exe = shutil.which("retention")
    if exe is None:
        pytest.skip("the retention console script is not installed (pip install -e .)")
    result = subprocess.run([exe, "holds", "sync", "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout
