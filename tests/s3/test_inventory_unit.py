"""Inventory rows to records, without a server: URL decoding, flags, versions, schemas (issue 19)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from retention_core import Problem, Record
from retention_s3.inventory import (
    REQUIRED,
    REQUIRED_VERSIONED,
    InventoryError,
    Manifest,
    RowReader,
    rows,
    schema_columns,
)

from .inventories import COLUMNS, aws_url_encode, encode, entry_row, file_schema

WHEN = "2026-11-01T10:20:30.123Z"


def reader(**kw: object) -> RowReader:
    defaults: dict[str, object] = {"source": "calls", "source_bucket": "b", "prefix": "t/", "versioned": False,
                                   "url_encoded": True}
    return RowReader(**{**defaults, **kw})  # type: ignore[arg-type]


def row(key: str, **kw: object) -> dict[str, object]:
    return {"bucket": "b", "key": key, "size": "5", "last_modified_date": WHEN, "e_tag": "abc", **kw}


@pytest.mark.parametrize("key", ["t/a b+c.wav", "t/100%.wav", "t/ü/漢字 ~*.wav", "t/x//y", "t/\x01ctl"])
def test_csv_keys_decode_exactly(key: str) -> None:
    record = reader().record(row(aws_url_encode(key)))
    assert isinstance(record, Record) and record.location == key


def test_a_record_looks_like_a_listed_one() -> None:
    record = reader().record(row("t/a.wav"))
    assert record == Record(source="calls", location="t/a.wav", size=5,
                            created=datetime(2026, 11, 1, 10, 20, 30, 123000, tzinfo=timezone.utc),
                            stamp='5 2026-11-01T10:20:30.123000+00:00 "abc"')


@pytest.mark.parametrize(("raw", "reason"), [("t/a%2", "not valid URL encoding"), ("t/a%zz", "not valid URL encoding"),
                                             ("t/%FF%FE", "not UTF-8")])
def test_a_key_that_does_not_decode_is_a_problem(raw: str, reason: str) -> None:
    problem = reader().record(row(raw))
    assert isinstance(problem, Problem) and reason in problem.reason and problem.location == raw


def test_what_a_listing_would_not_yield_is_not_a_record() -> None:
    assert reader().record(row("other/a.wav")) is None  # outside the prefix
    assert reader().record(row("t/m", is_delete_marker="true")) is None
    assert reader().record(row("t/old", is_latest="false")) is None  # unversioned: current objects only
    versioned = reader(versioned=True)
    old = versioned.record(row("t/old", is_latest="false", version_id="v1"))
    assert isinstance(old, Record) and old.version == "v1"
    null = versioned.record(row("t/n", version_id=""))
    assert isinstance(null, Record) and null.version == "null"


@pytest.mark.parametrize(("changes", "reason"), [({"is_delete_marker": "maybe"}, "neither true nor false"),
                                                 ({"last_modified_date": "yesterday"}, "cannot be read as a date"),
                                                 ({"last_modified_date": ""}, "without a LastModifiedDate"),
                                                 ({"bucket": "other"}, "of bucket 'other'")])
def test_a_row_that_cannot_be_read_is_a_problem(changes: dict[str, object], reason: str) -> None:
    problem = reader().record(row("t/a.wav", **changes))
    assert isinstance(problem, Problem) and reason in problem.reason


@pytest.mark.parametrize("fmt", ["CSV", "ORC", "Parquet"])
def test_file_schemas_name_the_columns(fmt: str) -> None:
    assert schema_columns(fmt, file_schema(fmt, COLUMNS)) == tuple(c[1] for c in COLUMNS)


def test_a_data_file_lacking_a_column_the_source_needs_is_not_read(tmp_path: Path) -> None:
    """fileSchema said version_id, the Parquet file has none: its rows would all read as version "null"."""
    columns = [c for c in COLUMNS if c[1] != "version_id"]
    entry = {"Key": "t/a", "Size": 1, "LastModified": datetime(2026, 1, 1, tzinfo=timezone.utc), "ETag": '"e"'}
    path = tmp_path / "data"
    path.write_bytes(encode("Parquet", columns, [entry_row("b", entry)]))
    manifest = Manifest("d", "k/manifest.json", "b", "d", datetime(2026, 1, 1, tzinfo=timezone.utc), "Parquet",
                        tuple(c[1] for c in COLUMNS), ())
    assert len(list(rows(path, manifest, REQUIRED))) == 1
    with pytest.raises(InventoryError, match="no version_id column"):
        list(rows(path, manifest, REQUIRED + REQUIRED_VERSIONED, convert=False))


def test_a_data_file_problem_never_reads_as_one_subjects() -> None:
    """``(?P<subject>[^/]+)/.+`` would read ``s3:`` as the subject of a problem named by the file's URI."""
    from retention_core.patterns import LinearPattern

    uri = "s3://dest/inv/b/daily/data/f.parquet"
    loose = reader(match=LinearPattern(r"(?P<subject>[^/]+)/.+")).file_problem(uri, "not read")
    assert loose.location == "" and uri in loose.reason
    strict = reader(match=LinearPattern(r"t/(?P<subject>[^/]+)/.+")).file_problem(uri, "not read")
    assert strict.location == uri


# -- untrusted manifests: every field checked once, at parse, one line naming the manifest (F03, F10) --------


class FakeS3:
    """``get_object`` over a dict of keys, enough for load_manifest and read_file without a server."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, object]:  # noqa: N803 (boto3's names)
        import io

        if Key not in self.objects:
            raise KeyError(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


MANIFEST_KEY = "inv/b/daily/2026-11-01T00-00Z/manifest.json"
GOOD_MANIFEST: dict[str, object] = {
    "sourceBucket": "b", "destinationBucket": "arn:aws:s3:::d", "version": "2016-11-30",
    "creationTimestamp": "1761955200000", "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
    "files": [{"key": "inv/b/daily/data/1.csv.gz", "size": 10, "MD5checksum": "0" * 32}],
}


def served(text: bytes, key: str = MANIFEST_KEY, **more: bytes) -> FakeS3:
    import hashlib

    return FakeS3({key: text, key.replace(".json", ".checksum"): hashlib.md5(text).hexdigest().encode(), **more})


def manifest_with(**changes: object) -> bytes:
    import json

    data = {**GOOD_MANIFEST, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not DROP}).encode()


DROP = object()


def test_a_good_manifest_loads() -> None:
    from retention_s3.inventory import load_manifest

    manifest = load_manifest(served(manifest_with()), "d", MANIFEST_KEY)
    assert manifest.created == datetime(2025, 11, 1, tzinfo=timezone.utc)
    assert manifest.columns == ("bucket", "key", "size", "last_modified_date", "e_tag") and manifest.data_bucket == "d"


FILE = {"key": "inv/b/daily/data/1.csv.gz", "size": 10, "MD5checksum": "0" * 32}


@pytest.mark.parametrize(("changes", "message"), [
    ({"creationTimestamp": "99999999999999999999"}, "creationTimestamp '99999999999999999999' is not"),
    ({"creationTimestamp": "-1"}, "creationTimestamp '-1' is not"),
    ({"creationTimestamp": "1.7e12"}, "creationTimestamp '1.7e12' is not"),
    ({"creationTimestamp": 1.7e12}, "creationTimestamp 1700000000000.0 is not"),
    ({"creationTimestamp": True}, "creationTimestamp True is not"),
    ({"creationTimestamp": "١٧٦١٩٥٥٢٠٠٠٠٠"}, "creationTimestamp"),  # digits, but not ASCII ones
    ({"creationTimestamp": DROP}, "no creationTimestamp"),
    ({"fileSchema": "Bucket, Key, Key, Size, LastModifiedDate, ETag"}, "fileSchema names the column 'key' twice"),
    ({"fileSchema": "Bucket, Key, key, Size, LastModifiedDate, ETag"}, "fileSchema names the column 'key' twice"),
    ({"fileSchema": "Bucket, Key, , Size, LastModifiedDate, ETag"}, "fileSchema names an empty column"),
    ({"fileSchema": ["Key"]}, "fileSchema ['Key'] is not a string"),
    ({"fileSchema": "message s3.inventory { }", "fileFormat": "Parquet"}, "declares no column"),
    ({"fileFormat": 7}, "fileFormat 7 is not a string"),
    ({"fileFormat": "JSON"}, "unknown fileFormat 'JSON'"),
    ({"sourceBucket": ""}, "sourceBucket '' is not a bucket name"),
    ({"sourceBucket": ["b"]}, "sourceBucket ['b'] is not a string"),
    ({"destinationBucket": 5}, "destinationBucket 5 is not a string"),
    ({"destinationBucket": "arn:aws:s3:::"}, "destinationBucket 'arn:aws:s3:::' names no bucket"),
    ({"files": "all"}, "files 'all' is not a list"),
    ({"files": ["x"]}, "files[0] 'x' is not an object"),
    ({"files": [{**FILE, "key": ""}]}, "files[0].key '' is not a key"),
    ({"files": [{**FILE, "key": 5}]}, "files[0].key 5 is not a string"),
    ({"files": [{k: v for k, v in FILE.items() if k != "MD5checksum"}]}, "no files[0].MD5checksum"),
    ({"files": [{**FILE, "MD5checksum": "xyz"}]}, "files[0].MD5checksum 'xyz' is not an MD5"),
    ({"files": [{**FILE, "size": -1}]}, "files[0].size -1 is not a size in bytes"),
    ({"files": [{**FILE, "size": "abc"}]}, "files[0].size 'abc' is not a size in bytes"),
    ({"files": [FILE, FILE]}, "files[1] lists the data file 'inv/b/daily/data/1.csv.gz' again"),
])
def test_a_manifest_field_that_cannot_be_right_is_one_line_naming_it(changes: dict[str, object],
                                                                     message: str) -> None:
    from retention_s3.inventory import load_manifest

    with pytest.raises(InventoryError) as err:
        load_manifest(served(manifest_with(**changes)), "d", MANIFEST_KEY)
    assert str(err.value).startswith(f"s3://d/{MANIFEST_KEY}: ") and "\n" not in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"[]", "not a JSON object"),
    (b"{nope", "not JSON"),
    (b'{"sourceBucket": "\xff"}', "not JSON"),
])
def test_a_manifest_that_is_not_a_json_object_is_one_line(text: bytes, message: str) -> None:
    from retention_s3.inventory import load_manifest

    with pytest.raises(InventoryError, match=message) as err:
        load_manifest(served(text), "d", MANIFEST_KEY)
    assert str(err.value).startswith(f"s3://d/{MANIFEST_KEY}: ") and "\n" not in str(err.value)


def test_a_manifest_too_large_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import retention_s3.inventory as inventory

    monkeypatch.setattr(inventory, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(InventoryError, match="larger than 100 bytes"):
        inventory.load_manifest(served(manifest_with()), "d", MANIFEST_KEY)


def at(created: datetime) -> Manifest:
    return Manifest("d", MANIFEST_KEY, "b", "d", created, "CSV", (), ())


def test_a_report_dated_in_the_future_is_refused() -> None:
    """Beyond the clock-skew tolerance a report would pass for evidence about what happens after now."""
    from datetime import timedelta

    from retention_s3.inventory import FUTURE_TOLERANCE, check_age

    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    assert FUTURE_TOLERANCE == timedelta(minutes=15)
    check_age(at(now + FUTURE_TOLERANCE), "8d", now)  # a clock a little behind AWS's
    with pytest.raises(InventoryError) as err:
        check_age(at(now + FUTURE_TOLERANCE + timedelta(seconds=1)), "8d", now)
    assert str(err.value).startswith(f"s3://d/{MANIFEST_KEY}: the inventory of 2026-11-29 12:15 UTC is dated after "
                                     "now (2026-11-29 12:00 UTC)") and "\n" not in str(err.value)
    with pytest.raises(InventoryError, match="dated after now"):
        check_age(at(datetime(9999, 12, 31, tzinfo=timezone.utc)), "8d", now)


# -- rows: every column's type and range, a problem naming the column (and, from read_file, the file) ---------


@pytest.mark.parametrize(("changes", "reason"), [
    ({"size": "abc"}, "Size 'abc' is not a size in bytes"),
    ({"size": "1e400"}, "Size '1e400' is not a size in bytes"),
    ({"size": "-1"}, "Size '-1' is not a size in bytes"),
    ({"size": " 5"}, "Size ' 5' is not a size in bytes"),
    ({"size": "5_000"}, "Size '5_000' is not a size in bytes"),
    ({"size": "٥"}, "Size '٥' is not a size in bytes"),
    ({"size": str(2**63)}, f"Size '{2**63}' is not a size in bytes"),
    ({"size": 2**64 - 1}, f"Size {2**64 - 1} is not a size in bytes"),
    ({"size": 5.0}, "Size 5.0 is not a size in bytes"),
    ({"size": True}, "Size True is not a size in bytes"),
    ({"last_modified_date": 5}, "LastModifiedDate 5 cannot be read as a date"),
    ({"last_modified_date": "0001-01-01T00:00:00+01:00"}, "cannot be read as a date"),  # year 0 in UTC
    ({"e_tag": 5}, "ETag 5 is not a string"),
    ({"version_id": 5}, "VersionId 5 is not a string"),
    ({"is_latest": 1}, "IsLatest 1 is neither true nor false"),
    ({"is_delete_marker": "maybe"}, "IsDeleteMarker 'maybe' is neither true nor false"),
])
def test_a_row_value_that_cannot_be_right_is_a_problem_naming_its_column(changes: dict[str, object],
                                                                         reason: str) -> None:
    for versioned in (False, True):
        if ("version_id" in changes and not versioned) or ("is_latest" in changes and versioned):
            continue  # a column that kind of source does not read
        problem = reader(versioned=versioned).record(row("t/a.wav", **{"version_id": "v1", **changes}))
        assert isinstance(problem, Problem) and reason in problem.reason, problem
        assert problem.location == "t/a.wav" and "\n" not in problem.reason
        if "last_modified_date" not in changes:
            assert "date" not in problem.reason  # F03: a bad Size was reported as a bad LastModified


def test_sizes_and_dates_in_range_are_records() -> None:
    record = reader().record(row("t/a.wav", size=str(2**63 - 1), last_modified_date="9999-12-31T23:59:59Z"))
    assert isinstance(record, Record) and record.size == 2**63 - 1
    empty = reader().record(row("t/a.wav", size=0))
    assert isinstance(empty, Record) and empty.size == 0


def parquet(tmp_path: Path, table: object) -> Path:
    import pyarrow.parquet as pq

    path = tmp_path / "data"
    pq.write_table(table, str(path))
    return path


def typed_manifest() -> Manifest:
    return Manifest("d", MANIFEST_KEY, "b", "d", datetime(2026, 1, 1, tzinfo=timezone.utc), "Parquet",
                    REQUIRED, ())


def base_columns() -> dict[str, object]:
    import pyarrow as pa

    return {"key": pa.array(["t/a"]), "size": pa.array([1], pa.int64()),
            "last_modified_date": pa.array([datetime(2026, 1, 1)], pa.timestamp("ms", tz="UTC")),
            "e_tag": pa.array(["e"])}


@pytest.mark.parametrize(("change", "message"), [
    ("duplicate", "the column key appears 2 times"),
    ("size-double", "column size is double, not integer"),
    ("etag-int", "column e_tag is int64, not string"),
    ("date-string-ok", None),
    ("date-seconds-overflow", "would result in out of bounds timestamp"),
    ("date-year-20000", "column last_modified_date has a date out of range"),
    ("date-nanoseconds", None),
])
def test_a_typed_data_file_is_checked_whole_before_a_row_goes_out(tmp_path: Path, change: str,
                                                                    message: str | None) -> None:
    import pyarrow as pa

    columns = base_columns()
    if change == "duplicate":
        table = pa.Table.from_arrays([*columns.values(), pa.array(["t/b"])], names=[*columns, "key"])  # type: ignore
    else:
        if change == "size-double":
            columns["size"] = pa.array([1.5])
        elif change == "etag-int":
            columns["e_tag"] = pa.array([5])
        elif change == "date-string-ok":
            columns["last_modified_date"] = pa.array(["2026-01-01T00:00:00Z"])
        elif change == "date-seconds-overflow":  # cast to µs unchecked, it wrapped around to 1970
            columns["last_modified_date"] = pa.array([2**62], pa.timestamp("ms"))
        elif change == "date-year-20000":
            columns["last_modified_date"] = pa.array([(20000 - 1970) * 365 * 86400 * 10**6], pa.timestamp("us"))
        elif change == "date-nanoseconds":
            columns["last_modified_date"] = pa.array([1_767_225_600_123_456_789], pa.timestamp("ns"))
        table = pa.table(columns)  # type: ignore[arg-type]
    path = parquet(tmp_path, table)
    if message is None:
        [got] = rows(path, typed_manifest(), REQUIRED)
        record = reader().record(got)
        assert isinstance(record, Record) and record.created.year == 2026
        return
    with pytest.raises(InventoryError, match=message) as err:
        list(rows(path, typed_manifest(), REQUIRED, convert=False))  # the parse pass, before any row
    assert "\n" not in str(err.value)


def test_a_data_file_with_invalid_utf8_is_not_read(tmp_path: Path) -> None:
    import pyarrow as pa

    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"),
                                                 pa.py_buffer(b"\xff\xfe")])
    columns = {**base_columns(), "e_tag": bad}
    path = parquet(tmp_path, pa.table(columns))  # type: ignore[arg-type]
    with pytest.raises(InventoryError, match="UTF8"):
        list(rows(path, typed_manifest(), REQUIRED, convert=False))


def test_a_corrupt_gzip_data_file_is_not_read(tmp_path: Path) -> None:
    import gzip

    body = gzip.compress(b'"b","t/a","1","2026-01-01T00:00:00.000Z","e"\n' * 1000)
    path = tmp_path / "data"
    path.write_bytes(body[:20] + bytes(b ^ 0xFF for b in body[20:60]) + body[60:])
    manifest = Manifest("d", MANIFEST_KEY, "b", "d", datetime(2026, 1, 1, tzinfo=timezone.utc), "CSV",
                        ("bucket", *REQUIRED), ())
    with pytest.raises(InventoryError, match="cannot be read as CSV"):
        list(rows(path, manifest, REQUIRED, convert=False))


def test_a_row_problem_names_the_data_file() -> None:
    import gzip
    import hashlib

    from retention_s3.inventory import DataFile, read_file

    body = gzip.compress(b'"b","t/a.wav","abc","2026-01-01T00:00:00.000Z","e"\n'
                         b'"b","t/b.wav","1","2026-01-01T00:00:00.000Z","e"\n')
    data = DataFile("inv/data/1.csv.gz", len(body), hashlib.md5(body).hexdigest())
    manifest = Manifest("d", MANIFEST_KEY, "b", "d", datetime(2026, 1, 1, tzinfo=timezone.utc), "CSV",
                        ("bucket", *REQUIRED), (data,))
    got = list(read_file(FakeS3({data.key: body}), manifest, data, reader()))
    [problem] = [p for p in got if isinstance(p, Problem)]
    assert problem.location == "t/a.wav"
    assert problem.reason == "inventory Size 'abc' is not a size in bytes (s3://d/inv/data/1.csv.gz)"
    assert [r.location for r in got if isinstance(r, Record)] == ["t/b.wav"]
