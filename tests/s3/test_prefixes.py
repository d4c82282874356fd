"""The source split by prefix: partitions (issue 19) and the parallel listing of a scan.

Both must hold exactly the keys one plain listing holds: none missing, none twice, whatever
the keys look like around the delimiter ("a.txt" sorts between "a" and "a/").
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from retention_core import BackendError, Options, Partition, Record, Source
from retention_s3.backend import S3Backend
from retention_s3.prefixes import Part, split

from .conftest import make_bucket, native_client

SOURCE = Source(name="calls", backend="s3")
KEYS = ["top", "a", "a.txt", "a/1", "a/2", "a/b/3", "a-b/4", "a0/5", "b/6", "b/c/7", "c/8", "zz", "z/9"]


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        yield native_client()


def seeded(s3: Any, keys: list[str], *, versioned: bool = False, prefix: str = "") -> str:
    bucket = make_bucket(s3, versioned=versioned)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=b"x")
    return bucket


def identity(items: Iterator[Any]) -> Counter[tuple[str, str | None, str | None]]:
    return Counter((r.location, r.version, r.stamp) for r in items if isinstance(r, Record))


@pytest.mark.parametrize("versioned", [False, True], ids=["current", "versions"])
def test_partitions_together_are_the_scan(s3: Any, versioned: bool) -> None:
    bucket = seeded(s3, KEYS, versioned=versioned)
    with S3Backend(Options({"bucket": bucket, "page_size": 2})) as backend:
        whole = identity(backend.scan(SOURCE))
        parts = backend.partitions(SOURCE)
        assert {p.label for p in parts} == {"keys directly under ''", "prefix 'a/'", "prefix 'a-b/'",
                                            "prefix 'a0/'", "prefix 'b/'", "prefix 'c/'", "prefix 'z/'"}
        together: Counter[tuple[str, str | None, str | None]] = Counter()
        for part in parts:
            together += identity(backend.scan_partition(SOURCE, Partition(part.source, part.token, part.label)))
    assert {location for location, _, _ in whole} == set(KEYS)
    assert together == whole and set(whole.values()) == {1}


def test_a_single_folder_is_descended_into(s3: Any) -> None:
    bucket = seeded(s3, ["x/1", "x/2", "y/3"], prefix="data/all/")
    with S3Backend(Options({"bucket": bucket, "prefix": "data/"})) as backend:
        labels = [p.label for p in backend.partitions(SOURCE)]
    assert labels == ["prefix 'data/all/x/'", "prefix 'data/all/y/'"]


def test_a_flat_source_is_one_partition(s3: Any) -> None:
    bucket = seeded(s3, [f"k{i:02d}" for i in range(12)])
    with S3Backend(Options({"bucket": bucket, "page_size": 5})) as backend:
        assert [p.token for p in backend.partitions(SOURCE)] == [""]


def test_a_foreign_or_broken_token_is_refused(s3: Any) -> None:
    bucket = seeded(s3, ["a/1"])
    with S3Backend(Options({"bucket": bucket, "prefix": "a/"})) as backend:
        for token in ('{"prefix": "b/", "direct": false}', "not json"):
            with pytest.raises(BackendError):
                list(backend.scan_partition(SOURCE, Partition("calls", token, "?")))


def test_the_parallel_scan_lists_every_key_once(s3: Any) -> None:
    keys = [f"t{i % 7}/{i:04d}" for i in range(300)] + ["t3", "t3.txt", "t3-x/1", "u"]
    bucket = seeded(s3, keys)
    with S3Backend(Options({"bucket": bucket, "page_size": 20, "concurrency": 3})) as backend:
        listed = Counter(r.location for r in backend.scan(SOURCE) if isinstance(r, Record))
    assert listed == Counter(keys)


def test_ranges_cover_the_keyspace_at_prefixes() -> None:
    parts = [Part("p/", direct=True)] + [Part(f"p/{c}/") for c in "abcdefg"]
    assert split(parts, 3) == [(None, "p/c/"), ("p/c/", "p/e/"), ("p/e/", None)]
    assert split(parts[:1], 4) == [(None, None)]


def test_closing_the_scan_early_stops_its_threads(s3: Any) -> None:
    bucket = seeded(s3, [f"t{i % 5}/{i:04d}" for i in range(200)])
    before = threading.active_count()
    with S3Backend(Options({"bucket": bucket, "page_size": 10, "concurrency": 4})) as backend:
        records = backend.scan(SOURCE)
        next(records)
        records.close()
        assert threading.active_count() <= before + 1  # (the client's own threads aside)


def test_a_failing_range_fails_the_scan(s3: Any) -> None:
    bucket = seeded(s3, [f"t{i % 5}/{i:04d}" for i in range(100)])
    with S3Backend(Options({"bucket": bucket, "page_size": 10, "concurrency": 3, "max_attempts": 1})) as backend:
        calls: list[int] = []

        def fail_sixth(**_: Any) -> None:
            calls.append(1)
            if len(calls) == 6:
                raise RuntimeError("connection reset")

        backend.client.meta.events.register("before-call.s3.ListObjectsV2", fail_sixth)
        with pytest.raises(BackendError, match="ListObjectsV2 failed: RuntimeError: connection reset"):
            list(backend.scan(SOURCE))
