"""Scanning an S3 source from its S3 Inventory report instead of listing it (``inventory:``).

An inventory is AWS's own daily or weekly list of a bucket (docs/s3.md, "Scanning from S3
Inventory"): ``manifest.json`` names its data files (CSV.gz, Parquet or ORC) with their MD5,
``manifest.checksum`` is the MD5 of ``manifest.json``. Reading it costs a few GETs instead
of one LIST per 1,000 keys.

The records are exactly those a live listing would give for the same objects (location,
version, created, size and the stamp of ETag, size and LastModified), so the delete guard
is unchanged: an object changed since the inventory is ``changed``, never deleted, and an
Object Lock refuses the delete as it does after a live listing. What the inventory cannot
show is what was written after it was taken: the backend says so in every run's warnings,
and an inventory older than ``max_age`` is refused.

Trust is checked, never assumed: a manifest whose checksum does not match, or a field of
which is of the wrong type or out of range (:func:`parse_manifest` checks each once), is
skipped (with a warning) for an older complete one; a report dated in the future is refused
(:func:`check_age`); a data file whose MD5 does not match, that cannot be read, lacks a
column or has one twice or of the wrong type is a :class:`~retention_core.Problem` naming it
(the source's listing is then incomplete: recovery takes no evidence from it, erasure
requests stay open) and none of its rows is yielded — each file is parsed and checked whole
before its first record goes out; a row value that cannot be right is a problem naming the
column and the file. Nothing read from a report raises anything but :class:`InventoryError`.
pyarrow is imported only here, lazily (``pip install 'retention[inventory]'``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from retention_core import ConfigError, Partition, Problem, Record, parse_duration

from .client import describe, error_code
from .guard import Seen
from .listing import utc
from .settings import InventorySettings, split_uri

log = logging.getLogger("retention.s3")

INSTALL_HINT = "pip install 'retention[inventory]'"
#: The folder AWS names after the time it started the report: ``2016-11-06T21-32Z``.
_STAMP_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z")
FORMATS = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}
#: What a record's stamp needs, as a live listing has it.
REQUIRED = ("key", "size", "last_modified_date", "e_tag")
#: What a versioned source needs besides: records are versions, markers are not data.
REQUIRED_VERSIONED = ("version_id", "is_delete_marker")
_WANTED = (*REQUIRED, *REQUIRED_VERSIONED, "bucket", "is_latest")
_SKIPPED = "inventory report skipped: "
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: Bytes per read when downloading a data file.
_CHUNK = 1 << 20
#: How far after this machine's clock a report may be dated (clock skew) before it is refused.
FUTURE_TOLERANCE = timedelta(minutes=15)
#: A ``manifest.json`` larger than this is refused unread (it lists data files, ~150 bytes each).
MAX_MANIFEST_BYTES = 64 << 20
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The last millisecond a datetime holds (9999-12-31T23:59:59.999Z).
_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
#: Sizes are stored as signed 64-bit integers (S3's largest object is far below).
_MAX_SIZE = (1 << 63) - 1
#: The range of datetime, in microseconds since 1970 (the unit rows() casts timestamps to).
_US_RANGE = ((datetime(1, 1, 2, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1),
             (datetime(9999, 12, 30, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1))
#: The report's CSV name of each column a record reads (problems name the column as the operator configured it).
_CSV_NAME = {"key": "Key", "bucket": "Bucket", "version_id": "VersionId", "is_latest": "IsLatest",
             "is_delete_marker": "IsDeleteMarker", "size": "Size", "last_modified_date": "LastModifiedDate",
             "e_tag": "ETag"}
#: What each column may be in a Parquet or ORC file besides text (CSV's, read as text like CSV's) or all nulls.
_KIND = {"key": "string", "bucket": "string", "version_id": "string", "e_tag": "string", "size": "integer",
         "last_modified_date": "timestamp", "is_latest": "boolean", "is_delete_marker": "boolean"}


class InventoryError(Exception):
    """A manifest that cannot be used; the message names it (the backend makes it a ConfigError)."""


@dataclass(frozen=True)
class DataFile:
    key: str
    size: int | None
    md5: str


@dataclass(frozen=True)
class Manifest:
    """One report's ``manifest.json``, its checksum verified."""

    bucket: str  # where the manifest is (and, unless it names another, its data files)
    key: str
    source_bucket: str
    data_bucket: str
    created: datetime
    fmt: str  # "CSV" | "Parquet" | "ORC"
    columns: tuple[str, ...]  # snake_case, in fileSchema's order
    files: tuple[DataFile, ...]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def file(self, key: str) -> DataFile:
        for f in self.files:
            if f.key == key:
                return f
        raise InventoryError(f"{self.uri}: lists no data file {key!r}")


# -- finding and checking the manifest -----------------------------------------------------------


def find_manifest(client: Any, settings: InventorySettings, source_bucket: str) -> tuple[Manifest, list[str]]:
    """The newest complete manifest, and a warning for each newer one skipped (incomplete, bad checksum).

    Lists only the report folders of the destination (one delimited listing), never the source.
    """
    if settings.manifest is not None:
        bucket, key = split_uri(settings.manifest) or ("", "")
        return load_manifest(client, bucket, key), []
    assert settings.bucket is not None
    base = settings.base(source_bucket)
    where = f"s3://{settings.bucket}/{base}"
    folders: list[str] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=base, Delimiter="/")
        for page in pages:
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(base):].rstrip("/")
                if _STAMP_FOLDER.fullmatch(name):
                    folders.append(name)
    except Exception as exc:
        raise InventoryError(f"{where}: cannot list the inventory's reports: {describe(exc)}") from None
    skipped: list[str] = []
    for name in sorted(folders, reverse=True):
        try:
            manifest = load_manifest(client, settings.bucket, f"{base}{name}/manifest.json")
        except InventoryError as exc:
            skipped.append(f"{_SKIPPED}{exc}")
            log.warning("%s", skipped[-1])
            continue
        return manifest, skipped
    raise InventoryError(f"{where}: no complete inventory report (manifest.json with a matching manifest.checksum)"
                         + (f"; {len(skipped)} skipped: {skipped[0].removeprefix(_SKIPPED)}" if skipped else ""))


def load_manifest(client: Any, bucket: str, key: str) -> Manifest:
    """Read and check ``manifest.json`` (against ``manifest.checksum`` next to it)."""
    uri = f"s3://{bucket}/{key}"
    checksum_key = key[: -len("manifest.json")] + "manifest.checksum"
    text = _get(client, bucket, key, uri, MAX_MANIFEST_BYTES)
    expected = _get(client, bucket, checksum_key, f"s3://{bucket}/{checksum_key}", 1024)
    expected_text = expected.decode("ascii", "replace").strip()
    actual = hashlib.md5(text).hexdigest()
    if expected_text.lower() != actual:
        raise InventoryError(f"{uri}: MD5 {actual} does not match manifest.checksum ({_show(expected_text)}): "
                             "incomplete or altered")
    return parse_manifest(text, bucket, key)


def parse_manifest(text: bytes, bucket: str, key: str) -> Manifest:
    """A checked ``manifest.json``: every field's type and range, once, here; InventoryError naming it.

    The manifest is untrusted input (anyone who can write the destination can write one), so
    nothing past this point meets a value of the wrong type or out of range.
    """
    uri = f"s3://{bucket}/{key}"
    try:
        data = json.loads(text)
    except RecursionError:
        raise InventoryError(f"{uri}: not an S3 Inventory manifest (JSON nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InventoryError(f"{uri}: not an S3 Inventory manifest (not JSON: {exc})") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{uri}: not an S3 Inventory manifest (not a JSON object)")
    fields = _Fields(uri)
    fmt_name = fields.text(data, "fileFormat")
    fmt = FORMATS.get(fmt_name.lower())
    if fmt is None:
        raise InventoryError(f"{uri}: unknown fileFormat {_show(fmt_name)} (expected CSV, Parquet or ORC)")
    source_bucket = fields.text(data, "sourceBucket")
    if not source_bucket or "/" in source_bucket:
        raise fields.wrong("sourceBucket", source_bucket, "is not a bucket name")
    data_bucket = bucket
    if data.get("destinationBucket") not in (None, ""):
        destination = fields.text(data, "destinationBucket")
        data_bucket = destination.rsplit(":", 1)[-1]  # arn:aws:s3:::NAME
        if not data_bucket or "/" in data_bucket:
            raise fields.wrong("destinationBucket", destination, "names no bucket")
    columns = schema_columns(fmt, fields.text(data, "fileSchema"))
    if not columns:
        raise fields.wrong("fileSchema", data["fileSchema"], "declares no column")
    if "" in columns:
        raise InventoryError(f"{uri}: fileSchema names an empty column")
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise InventoryError(f"{uri}: fileSchema names the column {twice[0]!r} twice (a report has each once)")
    return Manifest(bucket, key, source_bucket, data_bucket, fields.created(data), fmt, columns,
                    fields.files(data))


class _Fields:
    """Reads a manifest's fields, each of one type and range, else an InventoryError naming it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def wrong(self, name: str, value: Any, why: str) -> InventoryError:
        return InventoryError(f"{self.uri}: {name} {_show(value)} {why}")

    def get(self, data: dict[str, Any], name: str, where: str = "") -> Any:
        if name not in data:
            raise InventoryError(f"{self.uri}: not an S3 Inventory manifest (no {where}{name})")
        return data[name]

    def text(self, data: dict[str, Any], name: str, where: str = "") -> str:
        value = self.get(data, name, where)
        if not isinstance(value, str):
            raise self.wrong(where + name, value, "is not a string")
        return value

    def created(self, data: dict[str, Any]) -> datetime:
        """``creationTimestamp``: milliseconds since 1970 as a string of digits (AWS writes it so) or a number."""
        value = self.get(data, "creationTimestamp")
        ms = _natural(value)
        if ms is None or ms > _MAX_MS:
            raise self.wrong("creationTimestamp", value, "is not a time (milliseconds since 1970, before year "
                             "10000)")
        return _EPOCH + timedelta(milliseconds=ms)

    def files(self, data: dict[str, Any]) -> tuple[DataFile, ...]:
        entries = self.get(data, "files")
        if not isinstance(entries, list):
            raise self.wrong("files", entries, "is not a list")
        out: list[DataFile] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"files[{i}]"
            if not isinstance(entry, dict):
                raise self.wrong(where, entry, "is not an object")
            key = self.text(entry, "key", f"{where}.")
            if not key:
                raise self.wrong(f"{where}.key", key, "is not a key")
            if key in seen:
                raise InventoryError(f"{self.uri}: {where} lists the data file {_show(key)} again")
            seen.add(key)
            md5 = self.text(entry, "MD5checksum", f"{where}.")
            if not _MD5.fullmatch(md5):
                raise self.wrong(f"{where}.MD5checksum", md5, "is not an MD5 (32 hex digits)")
            size = entry.get("size")
            if size not in (None, ""):
                size = _natural(size)
                if size is None or size > _MAX_SIZE:
                    raise self.wrong(f"{where}.size", entry["size"], "is not a size in bytes")
            out.append(DataFile(key, size if isinstance(size, int) else None, md5.lower()))
        return tuple(out)


def _natural(value: Any) -> int | None:
    """A whole number ≥ 0 given as an int or as ASCII digits (no sign, space, ``_`` or exponent); None if not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


def _show(value: Any) -> str:
    """A value from the report as it reads in a one-line message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def schema_columns(fmt: str, schema: str) -> tuple[str, ...]:
    """The column names a ``fileSchema`` declares, in snake_case (CSV names mapped)."""
    if fmt == "CSV":  # "LastModifiedDate" is ORC's and Parquet's "last_modified_date", "ETag" their "e_tag"
        return tuple(re.sub(r"(?<!^)(?=[A-Z])", "_", n.strip()).lower() for n in schema.split(","))
    if fmt == "ORC":
        return tuple(re.findall(r"[<,]\s*(\w+)\s*:", schema))
    return tuple(re.findall(r"(?:required|optional|repeated)\s+\w+\s+(\w+)", schema))


def check_columns(manifest: Manifest, versioned: bool) -> None:
    """Refuse a report that lacks what a record needs (a report configured without ETag, say)."""
    need = REQUIRED + (REQUIRED_VERSIONED if versioned else ())
    missing = [c for c in need if c not in manifest.columns]
    if missing and versioned and "version_id" in missing:
        raise InventoryError(f"{manifest.uri}: lists current versions only, but s3://{manifest.source_bucket} is "
                             "versioned (records are versions): configure the inventory with all versions")
    if missing:
        raise InventoryError(f"{manifest.uri}: no {', '.join(missing)} column in fileSchema (add the field to the "
                             "inventory configuration: retention needs it to guard deletions)")


def check_age(manifest: Manifest, max_age: str, now: datetime | None = None) -> None:
    """Refuse a report older than *max_age* (what changed since is not in it), or dated after now.

    A report dated in the future would pass for evidence about what happens after now (recovery
    and erasure requests trust a listing about what happened before its time: ``listed_at``);
    :data:`FUTURE_TOLERANCE` allows for this machine's clock being a little behind AWS's.
    """
    now = now or datetime.now(timezone.utc)
    if manifest.created > now + FUTURE_TOLERANCE:
        raise InventoryError(f"{manifest.uri}: the inventory of {manifest.created:%Y-%m-%d %H:%M} UTC is dated after "
                             f"now ({now:%Y-%m-%d %H:%M} UTC) by more than {_minutes(FUTURE_TOLERANCE)} minutes: "
                             "refused (check this machine's clock, and who wrote the manifest)")
    if parse_duration(max_age).after(manifest.created) < now:
        age = now - manifest.created
        raise InventoryError(f"{manifest.uri}: the inventory of {manifest.created:%Y-%m-%d %H:%M} UTC is "
                             f"{age.days}d {age.seconds // 3600}h old, older than max_age {max_age}: refused "
                             "(wait for the next report, or raise inventory.max_age)")


def coverage(client: Any, manifest: Manifest, source_prefix: str) -> list[str]:
    """Refuse a report whose inventory configuration filters out part of the source; warnings otherwise.

    A manifest does not say which prefix its inventory was filtered on, so a report of
    ``tenants/acme/`` would silently hide the rest of a ``tenants/`` source. The configuration
    (its id is the folder above the report's) says it; if it cannot be read, a warning asks
    the operator to make sure.
    """
    parts = manifest.key.split("/")
    config_id = parts[-3] if len(parts) >= 3 else ""
    try:
        config = client.get_bucket_inventory_configuration(Bucket=manifest.source_bucket, Id=config_id)
        config = config["InventoryConfiguration"]
    except Exception as exc:
        return [f"inventory configuration {config_id!r} of s3://{manifest.source_bucket} cannot be read "
                f"({describe(exc)}): make sure its filter covers the source's prefix {source_prefix!r}"]
    found = config.get("Filter") or {}
    if set(found) - {"Prefix"}:
        return [f"inventory configuration {config_id!r} of s3://{manifest.source_bucket} filters on "
                f"{', '.join(sorted(set(found) - {'Prefix'}))}: objects it leaves out are not scanned"]
    prefix = found.get("Prefix") or ""
    if not source_prefix.startswith(prefix):
        raise InventoryError(f"{manifest.uri}: inventory configuration {config_id!r} lists only keys under "
                             f"{prefix!r}, not the whole source prefix {source_prefix!r}")
    if config.get("IsEnabled") is False:
        return [f"inventory configuration {config_id!r} of s3://{manifest.source_bucket} is disabled: no newer "
                "report will come"]
    return []


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def staleness_warning(manifest: Manifest) -> str:
    return (f"scanned from the S3 Inventory of {manifest.created:%Y-%m-%d %H:%M} UTC ({manifest.uri}): objects "
            "written since are not seen until the next inventory, and ones deleted since are reported already gone")


def partitions(manifest: Manifest, source: str) -> list[Partition]:
    """One partition per data file; the token names the manifest, so every worker reads the same report."""
    return [Partition(source, json.dumps({"manifest": manifest.uri, "file": f.key}, sort_keys=True),
                      f"inventory {f.key}") for f in manifest.files]


def partition_file(token: str) -> tuple[str, str, str]:
    """(bucket, manifest key, data file key) of a partition's token."""
    try:
        data = json.loads(token)
    except (ValueError, RecursionError):
        data = None
    uri, name = (data.get("manifest"), data.get("file")) if isinstance(data, dict) else (None, None)
    parsed = split_uri(uri) if isinstance(uri, str) else None
    if parsed is None or not isinstance(name, str):
        raise InventoryError(f"not an inventory partition: {_show(token)}")
    return parsed[0], parsed[1], name


# -- reading data files --------------------------------------------------------------------------


@dataclass(frozen=True)
class RowReader:
    """Turns a report's rows into the records a live listing of the same objects gives."""

    source: str
    source_bucket: str
    prefix: str
    versioned: bool
    url_encoded: bool  # CSV keys are URL-encoded (form encoding: space is "+")
    #: The source's ``match`` (anything with ``fullmatch``): see :meth:`file_problem`.
    match: Any = None

    def file_problem(self, uri: str, reason: str) -> Problem:
        """A Problem for a whole data file, which may hide anyone's records.

        The core gives a problem the subject its location names through ``match``; a data
        file's URI is no key, so should it happen to match (``(?P<subject>[^/]+)/.+`` reads
        ``s3:`` as a subject) the problem would hide one made-up subject only: then it names
        no location, and the reason carries the URI.
        """
        location = uri if self.match is None or self.match.fullmatch(uri) is None else ""
        return Problem(self.source, location, reason if location else f"{uri}: {reason}")

    def record(self, row: dict[str, Any]) -> Record | Problem | None:
        """The row's record; a Problem naming the column for a row that cannot be read; None for
        what a listing would not yield. Never raises: every value is checked for type and range."""
        raw = row.get("key")
        if not isinstance(raw, str) or not raw:
            return Problem(self.source, str(raw), "inventory row without a Key")
        key = raw
        if self.url_encoded:
            if _BAD_ESCAPE.search(raw):
                return Problem(self.source, raw, "inventory Key is not valid URL encoding")
            try:
                key = unquote_plus(raw, errors="strict")
            except UnicodeDecodeError:
                return Problem(self.source, raw, "inventory Key is URL-encoded bytes that are not UTF-8")
        bucket = row.get("bucket")
        if bucket not in (None, "", self.source_bucket):
            return Problem(self.source, key, f"inventory row of bucket {_show(bucket)}, not {self.source_bucket!r}")
        if not key.startswith(self.prefix):
            return None
        version = None
        try:
            if _flag(row, "is_delete_marker", False):
                return None  # delete markers are not data (as the live listing treats them)
            if self.versioned:
                version = _text(row, "version_id") or "null"
            elif not _flag(row, "is_latest", True):
                return None  # an older version where only current objects are records
            modified = _date(row)
            size = _size(row)
            etag = _text(row, "e_tag")
        except _BadValue as exc:
            return Problem(self.source, key, f"inventory {exc}" + (f" (version {version})" if version else ""))
        if etag is not None and not etag.startswith('"'):
            etag = f'"{etag}"'  # listings quote ETags; inventories do not
        seen = Seen(etag, size, modified)
        return Record(source=self.source, location=key, created=modified, size=size, version=version,
                      stamp=seen.stamp())


class _BadValue(Exception):
    """A row's value of the wrong type or out of range; the message names the column."""


def _bad(column: str, value: Any, why: str) -> _BadValue:
    return _BadValue(f"{_CSV_NAME.get(column, column)} {_show(value)} {why}")


def _flag(row: dict[str, Any], column: str, default: bool) -> bool:
    value = row.get(column)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(column, value, "is neither true nor false")


def _text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(column, value, "is not a string")
    return value


def _size(row: dict[str, Any]) -> int | None:
    value = row.get("size")
    if value is None or value == "":
        return None
    size = _natural(value)
    if size is None or size > _MAX_SIZE:
        raise _bad("size", value, "is not a size in bytes")
    return size


def _date(row: dict[str, Any]) -> datetime:
    value = row.get("last_modified_date")
    if value is None or value == "":
        raise _BadValue("row without a LastModifiedDate")
    try:
        return utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise _bad("last_modified_date", value, "cannot be read as a date") from None


def read_file(client: Any, manifest: Manifest, data: DataFile, reader: RowReader) -> Iterator[Record | Problem]:
    """The records of one data file; one Problem naming the file instead if it cannot be trusted whole."""
    uri = f"s3://{manifest.data_bucket}/{data.key}"
    folder = Path(tempfile.mkdtemp(prefix="retention-inventory-"))
    try:
        path = folder / "data"
        try:
            _download(client, manifest.data_bucket, data, path, uri)
            need = REQUIRED + (REQUIRED_VERSIONED if reader.versioned else ())
            for _ in rows(path, manifest, need, convert=False):  # parsed whole first: a file that breaks
                pass                                              # midway yields nothing
        except InventoryError as exc:
            yield reader.file_problem(uri, f"inventory data file not read: {exc}")
            return
        try:
            for row in rows(path, manifest, need):
                record = reader.record(row)
                if isinstance(record, Problem):
                    record = replace(record, reason=f"{record.reason} ({uri})")
                if record is not None:
                    yield record
        except InventoryError as exc:  # not expected: the parse pass checked what converting rows needs
            yield reader.file_problem(uri, f"inventory data file not read to its end: {exc}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _get(client: Any, bucket: str, key: str, uri: str, limit: int) -> bytes:
    """The object's bytes; InventoryError if it is missing, unreadable or larger than *limit*."""
    try:
        body = bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read(limit + 1))
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            raise InventoryError(f"{uri}: missing") from None
        raise InventoryError(f"{uri}: cannot be read: {describe(exc)}") from None
    if len(body) > limit:
        raise InventoryError(f"{uri}: larger than {limit} bytes: not an S3 Inventory manifest")
    return body


def _download(client: Any, bucket: str, data: DataFile, path: Path, uri: str) -> None:
    """Copy the data file to *path*, checking its MD5 against the manifest's."""
    digest = hashlib.md5()
    try:
        body = client.get_object(Bucket=bucket, Key=data.key)["Body"]
        with path.open("wb") as out:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            raise InventoryError("missing") from None
        raise InventoryError(f"cannot be read: {describe(exc)}") from None
    if digest.hexdigest() != data.md5:
        raise InventoryError(f"MD5 {digest.hexdigest()} does not match the manifest's {data.md5}")


def rows(path: Path, manifest: Manifest, need: tuple[str, ...], *,
         convert: bool = True) -> Iterator[dict[str, Any]]:
    """The file's rows as dicts of the wanted snake_case columns; InventoryError if it cannot be read,
    lacks a column of *need*, has a wanted column twice or of the wrong type, a date beyond what
    Python holds, or text that is not UTF-8. ``convert=False`` only parses and checks (no row goes
    out): what passes converts to Python values without error, and :meth:`RowReader.record`
    checks each value."""
    try:
        import pyarrow as pa
    except ImportError:
        raise InventoryError(f"reading S3 Inventory needs pyarrow ({INSTALL_HINT})") from None
    try:
        for batch in _batches(path, manifest):
            names = [n for n in _WANTED if n in batch.schema.names]
            missing = [n for n in need if n not in names]
            if missing:
                raise InventoryError(f"no {', '.join(missing)} column")
            checked = pa.RecordBatch.from_arrays([_column(batch, name) for name in names], names=names)
            checked.validate(full=True)  # strings are UTF-8
            if convert:
                yield from checked.to_pylist()
    except InventoryError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError, OverflowError, zlib.error) as exc:
        raise InventoryError(f"cannot be read as {manifest.fmt}: {type(exc).__name__}: {exc}") from None


def _column(batch: Any, name: str) -> Any:
    """One wanted column, checked: there once, of its kind, timestamps as µs UTC within datetime's range."""
    import pyarrow as pa
    import pyarrow.compute as pc

    count = len(batch.schema.get_all_field_indices(name))
    if count != 1:
        raise InventoryError(f"the column {name} appears {count} times")
    column = batch.column(name)
    kind = _KIND[name]
    typ = column.type
    fits = {"string": pa.types.is_string(typ) or pa.types.is_large_string(typ),
            "integer": pa.types.is_integer(typ), "timestamp": pa.types.is_timestamp(typ),
            "boolean": pa.types.is_boolean(typ)}[kind]
    if not (fits or pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
        raise InventoryError(f"column {name} is {typ}, not {kind}")
    if pa.types.is_timestamp(typ):
        # Stored as UTC instants (naive ones, ORC's, read as UTC). Only ns → µs may drop digits;
        # a coarser unit must not overflow (unchecked, a year-20000 date in seconds wraps to 1970).
        column = column.cast(pa.timestamp("us", tz="UTC"), safe=typ.unit != "ns")
        low, high = (pc.min_max(column.view(pa.int64()))[b].as_py() for b in ("min", "max"))
        if low is not None and (low < _US_RANGE[0] or high > _US_RANGE[1]):
            raise InventoryError(f"column {name} has a date out of range (years 1 to 9999)")
    return column


def _batches(path: Path, manifest: Manifest) -> Iterator[Any]:
    if manifest.fmt == "CSV":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        with gzip.open(path, "rb") as probe:
            if not probe.read(1):
                return  # a report of nothing
        names = list(manifest.columns)
        stream = pa.input_stream(str(path), compression="gzip")
        yield from pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    elif manifest.fmt == "Parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(str(path)).iter_batches(batch_size=65536)
    else:
        import pyarrow.orc as orc

        reader = orc.ORCFile(str(path))
        for stripe in range(reader.nstripes):
            yield reader.read_stripe(stripe)


def config_error(exc: InventoryError, where: str) -> ConfigError:
    return ConfigError(str(exc), key=f"{where}.inventory")
