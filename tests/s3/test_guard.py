"""The guard (issue 15): the s3 backend deletes only what the scan saw.

Versioned buckets delete by version id; unversioned ones by a conditional DeleteObjects
(per-object ETag) where the endpoint enforces it — found with a canary — and otherwise
after a fresh listing compared with the record's stamp. moto accepts the ETag element and
ignores it, so the conditional path runs against moto with :func:`faults.enforce_etags`
making DeleteObjects behave as S3 does, and the fallback against plain moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from retention_core import Options, Problem, Record, Source, Status
from retention_s3.backend import S3Backend
from retention_s3.guard import CANARY_FOLDER, Seen, xml_safe

from .conftest import all_versions, make_bucket, native_client
from .faults import enforce_etags

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


def body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def calls_of(backend: S3Backend) -> list[str]:
    names: list[str] = []
    backend.client.meta.events.register("before-call.s3.*", lambda model, **_: names.append(model.name))
    return names


# -- stamps ------------------------------------------------------------------------------------------


def test_scan_stamps_each_record_with_what_the_guard_compares(s3: Any) -> None:
    bucket = make_bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    with backend_for(bucket) as backend:
        [record] = backend.scan(SOURCE)
    seen = Seen.parse(record.stamp)
    assert seen == Seen(etag, 3, record.created)


@pytest.mark.parametrize("stamp", [None, "", "garbage", "x 2024-01-01T00:00:00+00:00 \"e\"", "1 not-a-date \"e\""])
def test_a_malformed_stamp_reads_as_none(stamp: str | None) -> None:
    assert Seen.parse(stamp) is None


def test_an_etag_with_spaces_survives_the_stamp() -> None:
    from datetime import datetime, timezone

    seen = Seen('"odd etag" w/ spaces', None, datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert Seen.parse(seen.stamp()) == seen


# -- the canary probe --------------------------------------------------------------------------------


def test_on_moto_the_probe_finds_etags_not_enforced_and_removes_its_canary(s3: Any) -> None:
    bucket = make_bucket(s3)
    with backend_for(bucket, prefix="tenants") as backend:
        puts: list[str] = []
        backend.client.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append(
            params["url_path"]))
        probed = backend.conditional_deletes()
        assert backend.conditional_deletes() is probed, "probed once per backend"
    assert not probed.enforced and "wrong ETag deleted the canary" in probed.reason
    assert len(puts) == 1 and f"tenants/{CANARY_FOLDER}" in puts[0], "the canary lives under the prefix"
    assert all_versions(s3, bucket) == [], "the canary must not be left behind"


def test_where_etags_are_enforced_the_probe_says_so_and_removes_its_canary(s3: Any) -> None:
    bucket = make_bucket(s3)
    with backend_for(bucket) as backend:
        enforce_etags(backend.client, native_client(), bucket)
        probed = backend.conditional_deletes()
    assert probed.enforced and probed.reports_missing
    assert all_versions(s3, bucket) == []


def test_a_probe_that_cannot_write_its_canary_falls_back_to_the_listing(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "k")
    with backend_for(bucket) as backend:
        def deny(**_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no s3:PutObject"}}, "PutObject")

        backend.client.meta.events.register("before-call.s3.PutObject", deny)
        records = list(backend.scan(SOURCE))
        outcomes = list(backend.delete(records))
        assert not backend.conditional_deletes().enforced
    assert [o.status for o in outcomes] == [Status.DELETED]


def test_dry_runs_never_probe(s3: Any) -> None:
    """Only deleting needs the probe: a scan (all a dry run does) writes nothing."""
    bucket = make_bucket(s3)
    put(s3, bucket, "k")
    with backend_for(bucket) as backend:
        calls = calls_of(backend)
        list(backend.scan(SOURCE))
        backend.check(SOURCE)
    assert "PutObject" not in calls and "DeleteObjects" not in calls


# -- unversioned: the fallback (moto ignores the per-object ETag) ------------------------------------


def test_fallback_an_object_rewritten_since_the_scan_is_changed_and_survives(s3: Any) -> None:
    """Same key, same size, same second: only the ETag tells; the old 2-second slack deleted it."""
    bucket = make_bucket(s3)
    for key in ("a", "b", "c"):
        put(s3, bucket, key, b"old")
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
        put(s3, bucket, "a", b"new")  # rewritten by the application after the scan
        s3.delete_object(Bucket=bucket, Key="b")  # removed by someone else
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert outcomes["a"].status is Status.CHANGED and "ETag" in (outcomes["a"].error or "")
    assert outcomes["b"].status is Status.ALREADY_GONE
    assert outcomes["c"].status is Status.DELETED
    assert body(s3, bucket, "a") == b"new", "the new object was never judged: it must survive"
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["a"]
    assert not backend.conditional_deletes().enforced, "moto ignores the ETag: this was the fallback"


def test_fallback_a_failed_listing_deletes_nothing_unverified(s3: Any) -> None:
    bucket = make_bucket(s3)
    for key in ("k1", "k2", "k3"):
        put(s3, bucket, key)
    with backend_for(bucket, max_attempts=1) as backend:
        records = list(backend.scan(SOURCE))
        listings: list[str] = []

        def fail(params: dict[str, Any], **_: Any) -> None:
            if CANARY_FOLDER not in params["query_string"].get("prefix", ""):
                listings.append(params["query_string"].get("prefix", ""))
                raise RuntimeError("connection reset")

        backend.client.meta.events.register("before-call.s3.ListObjectsV2", fail)
        outcomes = list(backend.delete(records))
    assert [o.status for o in outcomes] == [Status.FAILED] * 3
    assert all("could not check" in (o.error or "") and "connection reset" in (o.error or "") for o in outcomes)
    assert len(listings) == 2, "the range listing, one exact look-up, then no more asking"
    assert [k for k, _, _ in all_versions(s3, bucket)] == ["k1", "k2", "k3"]


def test_fallback_keys_beyond_the_listings_page_budget_are_looked_up_exactly(s3: Any) -> None:
    """A sparse chunk: the range listing stops after its budget; the rest are still guarded."""
    bucket = make_bucket(s3)
    for i in range(30):
        put(s3, bucket, f"k/{i:03d}")
    with backend_for(bucket, page_size=2) as backend:
        records = [r for r in backend.scan(SOURCE) if r.location in ("k/000", "k/029")]
        put(s3, bucket, "k/029", b"y")  # rewritten: the range listing's 4 pages do not reach it
        outcomes = {o.record.location: o.status for o in backend.delete(records)}
    assert outcomes == {"k/000": Status.DELETED, "k/029": Status.CHANGED}
    assert body(s3, bucket, "k/029") == b"y"


# -- unversioned: the conditional path ---------------------------------------------------------------


def test_conditional_deletes_guard_on_the_server_without_a_listing(s3: Any) -> None:
    bucket = make_bucket(s3)
    etags = {key: s3.put_object(Bucket=bucket, Key=key, Body=b"old")["ETag"] for key in ("a", "b", "c")}
    with backend_for(bucket) as backend:
        sent = enforce_etags(backend.client, native_client(), bucket)
        records = list(backend.scan(SOURCE))
        assert backend.conditional_deletes().enforced
        sent.clear()
        calls = calls_of(backend)
        put(s3, bucket, "a", b"new")
        s3.delete_object(Bucket=bucket, Key="b")
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert {k: o.status for k, o in outcomes.items()} == {
        "a": Status.CHANGED, "b": Status.ALREADY_GONE, "c": Status.DELETED}
    assert "PreconditionFailed" in (outcomes["a"].error or "")
    assert sorted((o["Key"], o["ETag"]) for o in sent) == sorted(etags.items()), "every entry carries its ETag"
    assert calls == ["DeleteObjects"], "the server guards: no listing before deleting"
    assert body(s3, bucket, "a") == b"new"


def test_conditional_deletes_of_stampless_records_take_the_etag_from_a_listing(s3: Any) -> None:
    bucket = make_bucket(s3)
    put(s3, bucket, "k", b"old")
    with backend_for(bucket) as backend:
        sent = enforce_etags(backend.client, native_client(), bucket)
        [scanned] = backend.scan(SOURCE)
        backend.conditional_deletes()
        sent.clear()
        bare = Record(source="calls", location="k", created=scanned.created, size=scanned.size)
        [outcome] = backend.delete([bare])
    assert outcome.status is Status.DELETED
    assert [o["Key"] for o in sent] == ["k"] and sent[0]["ETag"]


# -- versioned buckets -------------------------------------------------------------------------------


def test_versioned_a_version_written_after_the_scan_survives(s3: Any) -> None:
    bucket = make_bucket(s3, versioned=True)
    old = put(s3, bucket, "k", b"old")
    with backend_for(bucket) as backend:
        records = list(backend.scan(SOURCE))
        new = put(s3, bucket, "k", b"new")
        calls = calls_of(backend)
        outcomes = list(backend.delete(records))
    assert [(o.record.version, o.status) for o in outcomes] == [(old, Status.DELETED)]
    assert "PutObject" not in calls, "versioned buckets need no probe: the version id is the guard"
    assert all_versions(s3, bucket) == [("k", new, False)]
    assert body(s3, bucket, "k") == b"new"


def test_suspended_versioning_a_rewritten_null_version_is_changed(s3: Any) -> None:
    """While versioning is suspended a write replaces the ``null`` version in place: its id guards nothing."""
    bucket = make_bucket(s3, versioned=True)
    put(s3, bucket, "k", b"v1")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put(s3, bucket, "k", b"old")
    with backend_for(bucket) as backend:
        records = [r for r in backend.scan(SOURCE) if r.version == "null"]
        put(s3, bucket, "k", b"new")  # same id "null", new content
        [outcome] = backend.delete(records)
    assert outcome.status is Status.CHANGED
    assert body(s3, bucket, "k") == b"new"
    # (moto drops the older real versions on a suspended write, so only "null" is left to look at)
    assert [v for _, v, _ in all_versions(s3, bucket)] == ["null"]


# -- keys XML cannot carry ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "safe"), [("a/b c.wav", True), ("tab\tok", True), ("line\nfeed", True),
                                            ("ctl\x01", False), ("cr\rlf", False), ("nul\x00", False),
                                            ("\ufffe", False)])
def test_xml_safe(key: str, safe: bool) -> None:
    assert xml_safe(key) is safe


def test_a_control_character_key_is_deleted_alone_by_version_id(s3: Any) -> None:
    """moto cannot list versions of such a key (it ignores EncodingType there); the id still guards."""
    bucket = make_bucket(s3, versioned=True)
    odd = "t/a\x01b.wav"
    version = put(s3, bucket, odd)
    normal = put(s3, bucket, "t/plain.wav")
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    records = [Record("calls", odd, now, version=version), Record("calls", "t/plain.wav", now, version=normal)]
    with backend_for(bucket, max_attempts=1) as backend:
        singles: list[dict[str, Any]] = []
        backend.client.meta.events.register("before-call.s3.DeleteObject",
                                            lambda params, **_: singles.append(params))
        outcomes = {o.record.location: o.status for o in backend.delete(records)}
    assert outcomes == {odd: Status.DELETED, "t/plain.wav": Status.DELETED}
    assert len(singles) == 1 and "versionId" in singles[0]["query_string"]


def test_a_key_xml_cannot_carry_that_still_fails_fails_alone(s3: Any) -> None:
    bucket = make_bucket(s3)
    stuck, fine = "t/stuck\x01.wav", "t/fine\x02.wav"
    for key in (stuck, fine, "t/plain.wav"):
        put(s3, bucket, key)
    with backend_for(bucket, max_attempts=1) as backend:
        records = list(backend.scan(SOURCE))

        def refuse(params: dict[str, Any], **_: Any) -> None:
            from botocore.exceptions import ClientError

            if params["url_path"].endswith("stuck%01.wav"):
                raise ClientError({"Error": {"Code": "InvalidObjectState", "Message": "archived"}}, "DeleteObject")

        backend.client.meta.events.register("before-call.s3.DeleteObject", refuse)
        outcomes = {o.record.location: o for o in backend.delete(records)}
    assert {k: o.status for k, o in outcomes.items()} == {
        stuck: Status.FAILED, fine: Status.DELETED, "t/plain.wav": Status.DELETED}
    assert "InvalidObjectState: archived" in (outcomes[stuck].error or "")
    # (not all_versions: moto's ListObjectVersions cannot answer with a \x01 key in it)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [stuck]


def test_an_unparseable_last_modified_is_a_problem_not_a_stopped_scan(s3: Any) -> None:
    bucket = make_bucket(s3)
    with backend_for(bucket) as backend:
        listing = (
            b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix></Prefix>'
            b"<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
            b"<EncodingType>url</EncodingType>"
            b"<Contents><Key>far</Key><LastModified>10000-01-01T00:00:00.000Z</LastModified>"
            b'<ETag>"e1"</ETag><Size>1</Size></Contents>'
            b"<Contents><Key>near</Key><LastModified>2024-05-01T12:00:00.000Z</LastModified>"
            b'<ETag>"e2"</ETag><Size>2</Size></Contents></ListBucketResult>')
        from botocore.awsrequest import AWSResponse

        from .faults import Body

        backend.client.meta.events.register("before-send.s3.ListObjectsV2", lambda request, **_: AWSResponse(
            request.url, 200, {"Content-Type": "application/xml"}, Body(listing)))
        items = list(backend.scan(SOURCE))
    assert [type(i).__name__ for i in items] == ["Problem", "Record"]
    problem = items[0]
    assert isinstance(problem, Problem) and problem.location == "far" and "10000-01-01" in problem.reason
    assert items[1].location == "near"
