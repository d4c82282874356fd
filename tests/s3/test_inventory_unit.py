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
