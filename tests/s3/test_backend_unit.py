"""Unit tests of the s3 backend against moto in-process (``mock_aws``): fast, no sockets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from moto import mock_aws

from retention_core import ConfigError, Options, Record, Source, Status
from retention_core.registry import BackendRegistry
from retention_s3.backend import S3Backend, chunk_by_key
from retention_s3.guard import CANARY_FOLDER

from .conftest import all_versions, make_bucket, native_client
from .faults import deny_delete_policy, fail_keys_once

SOURCE = Source(name="calls", backend="s3")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        yield native_client()


def backend_for(bucket: str, **options: Any) -> S3Backend:
    backend = S3Backend(Options({"bucket": bucket, **options}))
    backend.backoff_base = 0
    return backend


def put(s3: Any, bucket: str, key: str, body: bytes = b"x") -> str | None:
    return s3.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")


def is_canary(params: dict[str, Any]) -> bool:
    """A request of the conditional-delete probe (its canary key), not of the records."""
    keys = [o["Key"] for o in params.get("Delete", {}).get("Objects", ())] or [params.get("Key", "")]
    return all(CANARY_FOLDER in key for key in keys)


def sent_deletes(backend: S3Backend) -> list[dict[str, Any]]:
    """Every DeleteObjects request the backend makes for records, as botocore parameters."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if not is_canary(params):
            calls.append(params)

    backend.client.meta.events.register("before-parameter-build.s3.DeleteObjects", record)
    return calls


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "key", "fragment"), [
    ({}, "options.bucket", "is required"),
    ({"bucket": "s3://acme/recordings"}, "options.bucket", "put the folder in 'prefix'"),
    ({"bucket": "acme", "versions": "latest"}, "options.versions", "expected one of auto, current, all"),
    ({"bucket": "acme", "concurrency": 0}, "options.concurrency", ">= 1"),
    ({"bucket": "acme", "max_attempts": "3"}, "options.max_attempts", "expected an integer"),
    ({"bucket": "acme", "endpoint_url": "localhost:9000"}, "options.endpoint_url", "http://"),
    ({"bucket": "acme", "tags": "yes"}, "options.tags", "true or false"),
    ({"bucket": "acme", "buckett": "x"}, "options.buckett", "unknown key"),
])
def test_bad_options_name_the_key(options: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        S3Backend(Options(options))
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_batch_size_follows_concurrency_and_retries_are_standard(s3: Any) -> None:
    backend = backend_for("acme", concurrency=3, max_attempts=7)
    assert backend.batch_size == 3000
    assert backend.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}


def test_without_boto3_the_backend_is_unavailable_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import retention_s3

    monkeypatch.setattr(retention_s3, "boto3_available", lambda: False)
    registry = BackendRegistry()
    retention_s3.retention_register_backends(registry.for_plugin("s3"))
    with pytest.raises(ConfigError, match=r"pip install 'retention\[s3\]'"):
        registry.get("s3")


# -- listing --------------------------------------------------------------------------------------


def test_prefix_is_a_folder_never_a_sibling(s3: Any) -> None:
    bucket = make_bucket(s3)
    for key in ("logs/2020/a", "logs/2020-archive/b", "logs/20201", "logs/2020/deep/c"):
        put(s3, bucket, key)
    with backend_for(bucket, prefix="logs/2020") as backend:
        assert sorted(r.location for r in backend.scan(SOURCE)) == ["logs/2020/a", "logs/2020/deep/c"]


def test_scan_is_lazy_and_reads_only_listings(s3: Any) -> None:
    bucket = make_bucket(s3)
    for i in range(25):
        put(s3, bucket, f"k/{i:03d}")
    with backend_for(bucket, page_size=10) as backend:
        calls: list[str] = []
        backend.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
        records = backend.scan(SOURCE)
        first = next(records)
        # Two delimited listings find how to split the source (k/ alone, then k/ flat: not
        # split), then one page of the listing itself: not the whole bucket.
        assert calls == ["GetBucketVersioning"] + ["ListObjectsV2"] * 3, "one page, not the whole bucket"
        rest = list(records)
        assert [r.location for r in [first, *rest]] == [f"k/{i:03d}" for i in range(25)]
        assert set(calls) == {"GetBucketVersioning", "ListObjectsV2"}, "never a HEAD per object"
        assert first.created.tzinfo == timezone.utc and first.size == 1 and first.version is None


@pytest.mark.parametrize("text", [
    "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123456Z",
    "2024-05-01T12:00:00.1234567Z", "2024-02-29T23:59:59.9Z",
    # not S3's listing shape: botocore's own parser, unchanged
    "Wed, 01 May 2024 12:00:00 GMT", "2024-05-01T14:00:00+02:00", 1714564800, "1714564800",
])
def test_timestamps_parse_exactly_as_botocore_does(text: Any) -> None:
    from botocore.utils import parse_timestamp as botocore_parse

    from retention_s3.client import parse_timestamp

    ours = parse_timestamp(text)
    assert ours == botocore_parse(text) and ours.utcoffset() is not None
    assert ours.astimezone(timezone.utc).isoformat() == botocore_parse(text).astimezone(timezone.utc).isoformat()


def test_listed_times_skip_dateutil_and_stay_aware_utc(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "k")
    with backend_for(bucket) as backend:
        zones: list[Any] = []
        backend.client.meta.events.register("after-call.s3.ListObjectsV2", lambda parsed, **_: zones.extend(
            o["LastModified"].tzinfo for o in parsed.get("Contents", ())))
        [record] = backend.scan(SOURCE)
    # botocore's own parser (dateutil) would have answered with dateutil's tzutc()
    # (the delimited listing that finds the source's prefixes lists "k" too)
    assert zones and set(zones) == {timezone.utc}, "the listing was parsed by botocore's default timestamp parser"
    assert record.created.tzinfo is timezone.utc
    assert abs(record.created - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_a_scan_closed_early_stops_listing(s3: Any) -> None:
    bucket = make_bucket(s3)
    for i in range(50):
        put(s3, bucket, f"k/{i:03d}")
    with backend_for(bucket, page_size=5) as backend:
        calls: list[str] = []
        backend.client.meta.events.register("before-call.s3.ListObjectsV2", lambda model, **_: calls.append(model.name))
        records = backend.scan(SOURCE)
        assert [next(records).location for _ in range(7)] == [f"k/{i:03d}" for i in range(7)]
        records.close()
        # two delimited listings find that k/ is flat (not split), then two pages of the scan
        assert len(calls) == 4, "two pages read, nothing listed after the scan was closed"


def test_a_listing_failure_mid_scan_is_a_backend_error(s3: Any) -> None:
    from retention_core import BackendError

    bucket = make_bucket(s3)
    for i in range(12):
        put(s3, bucket, f"k/{i:03d}")
    with backend_for(bucket, page_size=5, max_attempts=1) as backend:
        pages: list[int] = []

        def fail_third(**_: Any) -> None:
            pages.append(1)
            if len(pages) == 5:  # two delimited listings find k/ flat; then the third page fails
                raise RuntimeError("connection reset")

        backend.client.meta.events.register("before-call.s3.ListObjectsV2", fail_third)
        seen: list[str] = []
        with pytest.raises(BackendError, match="ListObjectsV2 failed: RuntimeError: connection reset"):
            seen.extend(r.location for r in backend.scan(SOURCE))
    assert seen == [f"k/{i:03d}" for i in range(10)], "the pages before the failure were all yielded"


def test_odd_keys_round_trip(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    keys = ["a b/with space", "plus+sign", "per%25cent", "ünï/名前", "double//slash", "/leading", "tab\tkey"]
    for key in keys:
        put(s3, bucket, key)
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
        assert sorted(r.location for r in records) == sorted(keys)
        outcomes = list(backend.delete(records))
    assert {o.status for o in outcomes} == {Status.DELETED}
    assert all_versions(s3, bucket) == []


def test_versioned_bucket_yields_every_version_on_its_own_date(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    v1 = put(s3, bucket, "calls/a.wav", b"1")
    v2 = put(s3, bucket, "calls/a.wav", b"22")
    s3.delete_object(Bucket=bucket, Key="calls/a.wav")  # a delete marker is not data
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
    assert sorted((r.location, r.version, r.size) for r in records) == sorted(
        [("calls/a.wav", v1, 1), ("calls/a.wav", v2, 2)])


def test_tags_supply_subject_and_category(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "x/1")
    put(s3, bucket, "x/2")
    s3.put_object_tagging(Bucket=bucket, Key="x/1", Tagging={"TagSet": [
        {"Key": "subject", "Value": "acme"}, {"Key": "category", "Value": "voice_recording"}]})
    with backend_for(bucket, tags=True) as backend:
        assert backend.warnings(SOURCE) and "GetObjectTagging" in backend.warnings(SOURCE)[0]
        found = {r.location: (r.subject, r.category) for r in backend.scan(SOURCE)}
    assert found == {"x/1": ("acme", "voice_recording"), "x/2": (None, None)}


# -- deleting on versioned buckets ----------------------------------------------------------------


def test_versions_are_deleted_by_id_and_orphaned_markers_removed(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    put(s3, bucket, "t/acme/1.wav")
    put(s3, bucket, "t/acme/1.wav")
    s3.delete_object(Bucket=bucket, Key="t/acme/1.wav")  # marker on top of two versions
    put(s3, bucket, "t/other/2.wav")
    with backend_for(bucket) as backend:
        calls = sent_deletes(backend)
        bare: list[Any] = []
        backend.client.meta.events.register("before-call.s3.DeleteObject", lambda params, **_: bare.append(params))
        acme = [r for r in backend.scan(SOURCE) if r.location.startswith("t/acme/")]
        outcomes = list(backend.delete(acme))
    assert [o.status for o in outcomes] == [Status.DELETED, Status.DELETED]
    assert all("VersionId" in obj for call in calls for obj in call["Delete"]["Objects"]), \
        "a versioned bucket must never get a bare delete (it only adds a marker)"
    assert all("BypassGovernanceRetention" not in call for call in calls)
    assert bare == [], "never a single-object DeleteObject"
    assert s3.list_object_versions(Bucket=bucket, Prefix="t/acme/").get("Versions") is None
    assert s3.list_object_versions(Bucket=bucket, Prefix="t/acme/").get("DeleteMarkers") is None
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["t/other/2.wav"]


def test_marker_stays_while_a_version_remains(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    old = put(s3, bucket, "k")
    put(s3, bucket, "k")
    s3.delete_object(Bucket=bucket, Key="k")
    with backend_for(bucket) as backend:
        newest = [r for r in backend.scan(SOURCE) if r.version != old]
        assert [o.status for o in backend.delete(newest)] == [Status.DELETED]
    left = all_versions(s3, bucket)
    assert [(v, marker) for _, v, marker in left if not marker] == [(old, False)]
    assert any(marker for _, _, marker in left), "removing the marker would resurrect the old version"


def test_versioned_record_without_version_is_never_a_bare_delete(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    put(s3, bucket, "k")
    with backend_for(bucket) as backend:
        calls = sent_deletes(backend)
        bare = Record(source="calls", location="k", created=datetime.now(timezone.utc))
        [outcome] = backend.delete([bare])
    assert outcome.status is Status.FAILED and "version id" in (outcome.error or "")
    assert calls == [] and len(all_versions(s3, bucket)) == 1


def test_legal_hold_and_retention_are_refused_policy_denial_fails(s3: Any) -> None:
    bucket = make_bucket(s3, lock=True)
    for key in ("a", "b", "c", "d"):
        put(s3, bucket, key)
    s3.put_object_legal_hold(Bucket=bucket, Key="a", LegalHold={"Status": "ON"})
    until = datetime.now(timezone.utc) + timedelta(days=30)
    s3.put_object_retention(Bucket=bucket, Key="b", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    s3.put_bucket_policy(Bucket=bucket, Policy=deny_delete_policy(bucket, "c"))
    with backend_for(bucket, max_attempts=2) as backend:
        calls = sent_deletes(backend)
        outcomes = {o.record.location: o for o in backend.delete(list(backend.scan(SOURCE)))}
    assert outcomes["a"].status is Status.REFUSED and "legal hold" in (outcomes["a"].error or "")
    # moto answers GetObjectRetention with a 500, so S3's own "object lock" message decides here.
    assert outcomes["b"].status is Status.REFUSED and "object lock" in (outcomes["b"].error or "").lower()
    assert outcomes["c"].status is Status.FAILED and "AccessDenied" in (outcomes["c"].error or "")
    assert outcomes["d"].status is Status.DELETED
    assert sorted(k for k, _, _ in all_versions(s3, bucket)) == ["a", "b", "c"]
    assert all("BypassGovernanceRetention" not in call for call in calls)


# -- per-key errors, retries and what is already gone ---------------------------------------------


def test_transient_per_key_errors_are_retried(s3: Any) -> None:
    bucket = make_bucket(s3)
    for i in range(6):
        put(s3, bucket, f"k{i}")
    with backend_for(bucket) as backend:
        injected = fail_keys_once(backend.client, {"k1", "k4"}, code="SlowDown")
        calls = sent_deletes(backend)
        outcomes = list(backend.delete(list(backend.scan(SOURCE))))
    assert injected == {"k1": 1, "k4": 1}
    assert {o.status for o in outcomes} == {Status.DELETED} and len(outcomes) == 6
    assert [sorted(o["Key"] for o in c["Delete"]["Objects"]) for c in calls][1] == ["k1", "k4"]
    assert all_versions(s3, bucket) == []


def test_persistent_per_key_errors_fail_after_max_attempts(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "stuck")
    put(s3, bucket, "fine")
    with backend_for(bucket, max_attempts=3) as backend:
        records = list(backend.scan(SOURCE))
        fail_keys_once(backend.client, {"stuck"}, code="InternalError", times=3)
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert outcomes["fine"].status is Status.DELETED
    assert outcomes["stuck"].status is Status.FAILED
    assert "InternalError" in (outcomes["stuck"].error or "") and "3 attempts" in (outcomes["stuck"].error or "")
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["stuck"]


def test_other_per_key_errors_fail_that_record_only(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "a")
    put(s3, bucket, "b")
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
        fail_keys_once(backend.client, {"a"}, code="InvalidObjectState", message="archived")
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert outcomes["a"].status is Status.FAILED and outcomes["a"].error == "InvalidObjectState: archived"
    assert outcomes["b"].status is Status.DELETED


def test_a_key_s3_does_not_mention_is_retried_then_failed(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "k")
    with backend_for(bucket, max_attempts=2) as backend:
        records = list(backend.scan(SOURCE))

        def forget(parsed: dict[str, Any], **_: Any) -> None:
            parsed.pop("Deleted", None)

        backend.client.meta.events.register("after-call.s3.DeleteObjects", forget)
        [outcome] = backend.delete(records)
    assert outcome.status is Status.FAILED and "reported nothing" in (outcome.error or "")


def test_a_record_without_stamp_is_compared_on_its_date(s3: Any) -> None:
    """A record the backend did not scan (no stamp) is guarded by its created and size."""
    bucket = make_bucket(s3)
    put(s3, bucket, "k", b"old")
    with backend_for(bucket) as backend:
        [record] = backend.scan(SOURCE)
        earlier = Record(source="calls", location="k", created=record.created - timedelta(minutes=5))
        [outcome] = backend.delete([earlier])
    assert outcome.status is Status.CHANGED and "LastModified" in (outcome.error or "")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"


def test_missing_versions_are_already_gone(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    put(s3, bucket, "a")
    put(s3, bucket, "b")
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
        assert {o.status for o in backend.delete(records)} == {Status.DELETED}
        again = list(backend.delete(records))
    assert [(o.status, o.error) for o in again] == [(Status.ALREADY_GONE, None)] * 2


def test_many_chunks_run_concurrently_and_each_record_gets_one_outcome(s3: Any) -> None:
    bucket = make_bucket(s3)
    keys = [f"p/{i:05d}" for i in range(25)]
    for key in keys:
        put(s3, bucket, key)
    with backend_for(bucket, concurrency=3) as backend:
        backend.keys_per_request = 10
        calls = sent_deletes(backend)
        records = list(backend.scan(SOURCE))
        outcomes = list(backend.delete(records))
    assert sorted(o.record.location for o in outcomes) == keys
    assert {o.status for o in outcomes} == {Status.DELETED}
    assert sorted(len(c["Delete"]["Objects"]) for c in calls) == [5, 10, 10]


def test_chunks_keep_a_keys_versions_together() -> None:
    now = datetime.now(timezone.utc)
    records = [Record("s", f"k{i // 3}", now, version=str(i)) for i in range(9)]
    chunks = chunk_by_key(records, size=4)
    assert [[r.location for r in c] for c in chunks] == [["k0"] * 3, ["k1"] * 3, ["k2"] * 3]


# -- check() ---------------------------------------------------------------------------------------


def test_check_refuses_mfa_delete(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    with backend_for(bucket) as backend:
        def mfa(parsed: dict[str, Any], **_: Any) -> None:
            parsed["MFADelete"] = "Enabled"  # moto cannot enable MFA Delete; S3 reports it here

        backend.client.meta.events.register("after-call.s3.GetBucketVersioning", mfa)
        with pytest.raises(ConfigError, match="MFA Delete") as caught:
            backend.check(SOURCE)
    assert caught.value.key == "options.bucket" and caught.value.exit_code == 2


def test_check_refuses_current_on_a_versioned_bucket(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    with backend_for(bucket, versions="current") as backend, pytest.raises(ConfigError) as caught:
        backend.check(SOURCE)
    assert caught.value.key == "options.versions"


def test_check_names_a_missing_bucket(s3: Any) -> None:
    with backend_for("no-such-bucket") as backend, pytest.raises(ConfigError, match="does not exist") as caught:
        backend.check(SOURCE)
    assert caught.value.key == "options.bucket"


def test_check_passes_a_plain_bucket(s3: Any) -> None:
    with backend_for(make_bucket(s3)) as backend:
        backend.check(SOURCE)
