"""The guard and hostile input over the wire: a moto server driven through the ``retention`` CLI.

Keys XML 1.0 cannot carry, deleted one by one instead of failing their chunk of 1000; a
conditional single delete (moto honours ``If-Match`` on DeleteObject); and the one-line
exit 2 for missing credentials or a down endpoint, in a dry run as in an enforcing run.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

import retention_s3
from retention_core import Options, Source, Status
from retention_s3.backend import S3Backend

from .conftest import all_versions, make_bucket, native_client
from .faults import enforce_etags

pytestmark = pytest.mark.moto_server

CATEGORIES = {"voice_recording": {"retain": "90d", "after": "service_end"}}
MATCH = r"tenants/(?P<subject>[^/]+)/calls/.+"
SUBJECTS = [{"subject_id": "acme", "controller": "ctl", "service_ended_at": "2020-01-01"}]
ODD_KEYS = ["tenants/acme/calls/a\x01b.wav", "tenants/acme/calls/c\rd.wav", "tenants/acme/calls/e\x1ff.wav"]


@pytest.fixture
def retention_plugin() -> Any:
    return retention_s3


def source(bucket: str, endpoint: str, **options: Any) -> dict[str, Any]:
    return {"name": "recordings", "backend": "s3", "match": MATCH, "category": "voice_recording",
            "options": {"bucket": bucket, "prefix": "tenants", "endpoint_url": endpoint, **options}}


def test_keys_xml_cannot_carry_no_longer_fail_their_chunk(retention_cli: Any, policy_builder: Any, s3: Any,
                                                          moto_endpoint: str, tmp_path: Path) -> None:
    """Before: the DeleteObjects body held \\x01, the server rejected it, every key of the chunk failed."""
    bucket = make_bucket(s3)
    plain = [f"tenants/acme/calls/{i}.wav" for i in range(5)]
    for key in plain + ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"audio")
    policy = policy_builder.write(categories=CATEGORIES, sources=[source(bucket, moto_endpoint)],
                                  subjects=SUBJECTS, limits={"max_fraction": 1.0})  # deletes most on purpose
    dry = retention_cli("run", "-c", policy, "--dry-run")
    assert dry.exit_code == 0, dry.output
    result = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [i["outcome"] for i in report["items"]] == ["deleted"] * len(plain + ODD_KEYS)
    assert all_versions(s3, bucket) == []


def test_a_rewritten_key_xml_cannot_carry_is_changed_by_if_match(s3: Any, moto_endpoint: str) -> None:
    """Where ETags are enforced, the single DeleteObject carries If-Match: moto answers 412."""
    bucket = make_bucket(s3)
    for key in ODD_KEYS[:2]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"old")
    with S3Backend(Options({"bucket": bucket, "endpoint_url": moto_endpoint})) as backend:
        enforce_etags(backend.client, native_client(moto_endpoint), bucket)
        records = list(backend.scan(Source("calls", "s3")))
        assert backend.conditional_deletes().enforced
        s3.put_object(Bucket=bucket, Key=ODD_KEYS[0], Body=b"new")
        singles: list[dict[str, Any]] = []
        backend.client.meta.events.register("before-call.s3.DeleteObject",
                                            lambda params, **_: singles.append(params["headers"]))
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert outcomes[ODD_KEYS[0]].status is Status.CHANGED, outcomes[ODD_KEYS[0]]
    assert outcomes[ODD_KEYS[1]].status is Status.DELETED
    assert all("If-Match" in headers for headers in singles) and len(singles) == 2
    assert s3.get_object(Bucket=bucket, Key=ODD_KEYS[0])["Body"].read() == b"new"


# -- S3 unusable: one line, exit 2, dry run or not ---------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("versions", ["auto", "current"])
def test_no_credentials_is_one_line_and_exit_2_in_a_dry_run_too(retention_cli: Any, policy_builder: Any,
                                                                 moto_endpoint: str, versions: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, sources=[
        source("any-bucket", moto_endpoint, versions=versions, max_attempts=1)])
    for args in (["--dry-run"], []):
        result = retention_cli("run", "-c", policy, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "no AWS credentials found" in result.output and "Traceback" not in result.output
        assert "sources[0].options.profile: no AWS credentials found" in result.output
        assert "botocore" not in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("versions", ["auto", "all"])
def test_a_down_endpoint_is_one_line_and_exit_2_in_a_dry_run_too(retention_cli: Any, policy_builder: Any,
                                                                  versions: str) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, sources=[
        source("any-bucket", endpoint, versions=versions, max_attempts=1)])
    for args in (["--dry-run"], []):
        result = retention_cli("run", "-c", policy, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "sources[0].options.endpoint_url: cannot reach S3" in result.output and endpoint in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
