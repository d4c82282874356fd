"""The s3 backend passes the plugin kit's conformance suite, against a moto server over HTTP.

Storage is seeded and inspected with a plain boto3 client, never through the backend.
Two buckets shapes run the suite: a plain one and a versioned one with Object Lock. On the
plain bucket the guard tests exercise the fallback (moto ignores the per-object ETag in
DeleteObjects, which the backend's canary probe detects); on the versioned one, the version id.
"""

from __future__ import annotations

import uuid
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

    def recreate(self, location: str, created: datetime) -> datetime:
        """Delete the object and put a new one at the key (on a versioned bucket: a marker, then
        a new version). S3 chooses LastModified itself, so *created* cannot be kept: it is read back."""
        self.client.delete_object(Bucket=self.bucket, Key=location)
        self.client.put_object(Bucket=self.bucket, Key=location, Body=f"re-created {uuid.uuid4()}\n".encode())
        return self.client.head_object(Bucket=self.bucket, Key=location)["LastModified"]

    def modify(self, location: str) -> None:
        """Overwrite the object with its content and one more byte (a new version when versioned)."""
        old = self.client.get_object(Bucket=self.bucket, Key=location)["Body"].read()
        self.client.put_object(Bucket=self.bucket, Key=location, Body=old + b"+")

    def exists(self, location: str) -> bool:
        """Any version or delete marker left at exactly this key counts."""
        page = self.client.list_object_versions(Bucket=self.bucket, Prefix=location)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        return any(e["Key"] == location for e in entries)

    def seed_problem(self, location: str) -> None:
        """A real object whose listed LastModified the backend cannot read (year 10000).

        S3 never lists such a date and moto cannot store one, so the object is put natively
        and the backend's own listing answers are altered, as a store with a broken clock would.
        """
        self.client.put_object(Bucket=self.bucket, Key=location, Body=b"listed with an impossible date\n")

        def impossible_date(parsed: dict[str, Any], **_: Any) -> None:
            for entry in parsed.get("Contents", []) + parsed.get("Versions", []):
                if entry.get("Key") == location:
                    entry["LastModified"] = "10000-01-01T00:00:00.000Z"

        backend: Any = self._backend_under_test
        for operation in ("ListObjectsV2", "ListObjectVersions"):
            backend.client.meta.events.register(f"after-call.s3.{operation}", impossible_date)

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
