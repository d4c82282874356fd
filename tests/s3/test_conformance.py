"""The s3 backend passes the plugin kit's conformance suite, against a moto server over HTTP.

Storage is seeded and inspected with a plain boto3 client, never through the backend.
Two buckets shapes run the suite: a plain one and a versioned one with Object Lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from retention_core import Backend, Options
from retention_core.testing import BackendConformanceTests
from retention_s3.backend import S3Backend

from .conftest import make_bucket, native_client
from .faults import fail_keys_once

pytestmark = pytest.mark.moto_server


class _S3Conformance(BackendConformanceTests):
    page_size = 50
    versioned = False
    # S3 itself stores keys with a newline, but moto's HTTP server answers 404 to the PUT.
    supports_newlines = False

    @pytest.fixture
    def backend(self, moto_endpoint: str) -> Iterator[Backend]:
        self.client = native_client(moto_endpoint)
        self.bucket = make_bucket(self.client, versioned=self.versioned, lock=self.versioned)
        # concurrency 1 keeps batch_size at 1000, so the suite's "batch_size + 1" test seeds
        # 1001 objects rather than 4001 (moto lists versions in O(all versions) per page).
        options = {"bucket": self.bucket, "endpoint_url": moto_endpoint, "page_size": self.page_size,
                   "concurrency": 1}
        with S3Backend(Options(options)) as backend:
            backend.backoff_base = 0
            yield backend

    def to_location(self, name: str) -> str | None:
        return name

    def seed(self, location: str, created: datetime) -> datetime:
        self.client.put_object(Bucket=self.bucket, Key=location, Body=b"seeded by the conformance suite\n")
        return self.client.head_object(Bucket=self.bucket, Key=location)["LastModified"]

    def exists(self, location: str) -> bool:
        """Any version or delete marker left at exactly this key counts."""
        page = self.client.list_object_versions(Bucket=self.bucket, Prefix=location)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        return any(e["Key"] == location for e in entries)

    def lock(self, location: str) -> None:
        self.client.put_object_legal_hold(Bucket=self.bucket, Key=location, LegalHold={"Status": "ON"})

    def fault(self, location: str) -> None:
        backend: Any = self._backend_under_test
        fail_keys_once(backend.client, {location}, code="InternalError")

    @pytest.fixture(autouse=True)
    def _remember_backend(self, backend: Backend) -> None:
        self._backend_under_test = backend


class TestPlainBucket(_S3Conformance):
    """An unversioned bucket: records are current objects (list_objects_v2)."""

    def test_refusal_is_refused_and_does_not_abort_the_batch(self, backend: Backend, source: Any) -> None:
        pytest.skip("an unversioned bucket has no Object Lock; refusals run on the versioned bucket")


class TestVersionedLockedBucket(_S3Conformance):
    """A versioned bucket with Object Lock: records are versions, legal holds are refusals."""

    versioned = True
