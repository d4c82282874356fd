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

Trust is checked, never assumed: a manifest whose checksum does not match is skipped (with
a warning) for an older complete one; a data file whose MD5 does not match, that cannot be
read or lacks a column is a :class:`~retention_core.Problem` naming it (the source's listing
is then incomplete: recovery takes no evidence from it, erasure requests stay open) and none
of its rows is yielded — each file is parsed whole before its first record goes out.
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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
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
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: Bytes per read when downloading a data file.
_CHUNK = 1 << 20


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
            skipped.append(f"inventory report skipped: {exc}")
            log.warning("%s", skipped[-1])
            continue
        return manifest, skipped
    raise InventoryError(f"{where}: no complete inventory report (manifest.json with a matching manifest.checksum)"
                         + (f"; {len(skipped)} skipped: {skipped[0]}" if skipped else ""))


def load_manifest(client: Any, bucket: str, key: str) -> Manifest:
    """Read and check ``manifest.json`` (against ``manifest.checksum`` next to it)."""
    uri = f"s3://{bucket}/{key}"
    checksum_key = key[: -len("manifest.json")] + "manifest.checksum"
    text = _get(client, bucket, key, uri)
    expected = _get(client, bucket, checksum_key, f"s3://{bucket}/{checksum_key}").decode("ascii", "replace").strip()
    actual = hashlib.md5(text).hexdigest()
    if expected.lower() != actual:
        raise InventoryError(f"{uri}: MD5 {actual} does not match manifest.checksum ({expected[:40]!r}): "
                             "incomplete or altered")
    try:
        data = json.loads(text)
        fmt = FORMATS.get(str(data["fileFormat"]).lower())
        if fmt is None:
            raise InventoryError(f"{uri}: unknown fileFormat {data['fileFormat']!r} (expected CSV, Parquet or ORC)")
        files = tuple(DataFile(str(f["key"]), _int_or_none(f.get("size")), str(f["MD5checksum"]).lower())
                      for f in data["files"])
        created = datetime.fromtimestamp(int(data["creationTimestamp"]) / 1000, timezone.utc)
        source_bucket = str(data["sourceBucket"])
        destination = str(data.get("destinationBucket") or "")
        columns = schema_columns(fmt, str(data["fileSchema"]))
    except InventoryError:
        raise
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise InventoryError(f"{uri}: not an S3 Inventory manifest ({type(exc).__name__}: {exc})") from None
    data_bucket = destination.rsplit(":", 1)[-1] if destination else bucket
    return Manifest(bucket, key, source_bucket, data_bucket or bucket, created, fmt, columns, files)


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
    """Refuse a report older than *max_age*: what changed since is not in it."""
    now = now or datetime.now(timezone.utc)
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
        parsed = split_uri(data["manifest"])
        if parsed is None:
            raise ValueError(data["manifest"])
        return parsed[0], parsed[1], str(data["file"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InventoryError(f"not an inventory partition: {token!r} ({exc})") from None


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
        """The row's record; a Problem for a row that cannot be read; None for what a listing would not yield."""
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
            return Problem(self.source, key, f"inventory row of bucket {bucket!r}, not {self.source_bucket!r}")
        if not key.startswith(self.prefix):
            return None
        try:
            if _flag(row.get("is_delete_marker"), False):
                return None  # delete markers are not data (as the live listing treats them)
            version = None
            if self.versioned:
                version = row.get("version_id") or "null"
            elif not _flag(row.get("is_latest"), True):
                return None  # an older version where only current objects are records
        except ValueError as exc:
            return Problem(self.source, key, str(exc))
        try:
            modified = _date(row.get("last_modified_date"))
            size = _int_or_none(row.get("size"))
        except (TypeError, ValueError, OverflowError):
            raw_date = row.get("last_modified_date")
            reason = (f"LastModified {raw_date!r} cannot be read as a date" if raw_date not in (None, "")
                      else "inventory row without a LastModifiedDate")
            return Problem(self.source, key, reason + (f" (version {version})" if version else ""))
        etag = row.get("e_tag") or None
        if etag is not None and not etag.startswith('"'):
            etag = f'"{etag}"'  # listings quote ETags; inventories do not
        seen = Seen(etag, size, modified)
        return Record(source=self.source, location=key, created=modified, size=size, version=version,
                      stamp=seen.stamp())


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"inventory flag {value!r} is neither true nor false")


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("a flag is not a size")
    return int(value)


def _date(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return utc(value)


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
        for row in rows(path, manifest, need):
            record = reader.record(row)
            if record is not None:
                yield record
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _get(client: Any, bucket: str, key: str, uri: str) -> bytes:
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            raise InventoryError(f"{uri}: missing") from None
        raise InventoryError(f"{uri}: cannot be read: {describe(exc)}") from None


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
    """The file's rows as dicts of the wanted snake_case columns; InventoryError if it cannot be read
    or lacks a column of *need*. ``convert=False`` only parses (no row goes out)."""
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
            columns = []
            for name in names:
                column = batch.column(name)
                if pa.types.is_timestamp(column.type):  # ORC reads back in ns: datetime wants us
                    column = column.cast(pa.timestamp("us", tz=column.type.tz or "UTC"), safe=False)
                columns.append(column)
            if convert:
                yield from pa.RecordBatch.from_arrays(columns, names=names).to_pylist()
    except InventoryError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise InventoryError(f"cannot be read as {manifest.fmt}: {type(exc).__name__}: {exc}") from None


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
