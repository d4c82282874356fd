"""S3 test helpers: fake credentials, a moto server over HTTP, and a native client to seed with.

The server is session-scoped and shared; each test gets buckets of its own (unique names),
so tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from retention_core.testing import require_service

REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}



@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach real AWS from tests: fake keys, no profile, no config files."""
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server started for this test session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # moto[server] (flask) not installed
        require_service(False, "moto server (pip install 'moto[server]')")
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def native_client(endpoint: str | None = None) -> Any:
    """A plain boto3 client: how tests seed and inspect storage, never through the backend."""
    import boto3

    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return native_client(moto_endpoint)


def make_bucket(client: Any, *, versioned: bool = False, lock: bool = False) -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    if lock:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    if versioned and not lock:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def bucket_factory(s3: Any) -> Callable[..., str]:
    return lambda **kw: make_bucket(s3, **kw)


def all_versions(client: Any, bucket: str, prefix: str = "") -> list[tuple[str, str, bool]]:
    """(key, version id, is delete marker) for everything in *bucket* under *prefix*."""
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"], False) for v in page.get("Versions", ())]
        out += [(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", ())]
    return sorted(out)
