"""Writing S3 Inventory reports the way AWS lays them out, for tests (moto has no inventory job).

The layout and the fields follow AWS's documentation ("Locating your inventory list"):

    <prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.json
    <prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.checksum   (MD5 of manifest.json)
    <prefix>/<source-bucket>/<config-id>/hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt
    <prefix>/<source-bucket>/<config-id>/data/<uuid>.csv.gz | .orc | .parquet

CSV files are gzipped, have no header (``fileSchema`` gives the column order), quote every
field and URL-encode the key the way AWS does (form encoding: a space is ``+``); ORC and
Parquet carry the key as it is, in snake_case columns (``version_id``, ``last_modified_date``…).
ETags are written without the quotes a listing shows. Delete markers have no size or ETag.

``write_inventory`` takes what a live listing returned (:func:`listed` builds that list), so
a test can compare an inventory scan with the live scan of the same objects.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

FORMATS = ("CSV", "Parquet", "ORC")
_EXTENSION = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}

#: (CSV name, snake_case name, ORC type, Parquet declaration) in the order AWS documents them.
COLUMNS = [
    ("Bucket", "bucket", "string", "required binary bucket (UTF8)"),
    ("Key", "key", "string", "required binary key (UTF8)"),
    ("VersionId", "version_id", "string", "optional binary version_id (UTF8)"),
    ("IsLatest", "is_latest", "boolean", "optional boolean is_latest"),
    ("IsDeleteMarker", "is_delete_marker", "boolean", "optional boolean is_delete_marker"),
    ("Size", "size", "bigint", "optional int64 size"),
    ("LastModifiedDate", "last_modified_date", "timestamp", "optional int64 last_modified_date (TIMESTAMP_MILLIS)"),
    ("ETag", "e_tag", "string", "optional binary e_tag (UTF8)"),
    ("StorageClass", "storage_class", "string", "optional binary storage_class (UTF8)"),
    ("IsMultipartUploaded", "is_multipart_uploaded", "boolean", "optional boolean is_multipart_uploaded"),
    ("ObjectLockRetainUntilDate", "object_lock_retain_until_date", "timestamp",
     "optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS)"),
    ("ObjectLockMode", "object_lock_mode", "string", "optional binary object_lock_mode (UTF8)"),
    ("ObjectLockLegalHoldStatus", "object_lock_legal_hold_status", "string",
     "optional binary object_lock_legal_hold_status (UTF8)"),
]
_VERSIONCOLUMNS = {"VersionId", "IsLatest", "IsDeleteMarker"}


def listed(client: Any, bucket: str, *, versions: bool, prefix: str = "") -> list[dict[str, Any]]:
    """What a live listing of *bucket* shows, as ``write_inventory`` entries.

    With *versions*: every version and delete marker (``IsDeleteMarker``), else current objects.
    """
    out: list[dict[str, Any]] = []
    if not versions:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [dict(obj) for obj in page.get("Contents", ())]
        return out
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [dict(v, IsDeleteMarker=False) for v in page.get("Versions", ())]
        out += [dict(m, IsDeleteMarker=True) for m in page.get("DeleteMarkers", ())]
    return out


def base_key(prefix: str, source_bucket: str, config_id: str) -> str:
    """``<prefix>/<source-bucket>/<config-id>`` (no prefix: ``<source-bucket>/<config-id>``)."""
    return "/".join(p for p in (prefix.strip("/"), source_bucket, config_id) if p)


def write_inventory(s3_client: Any, dest_bucket: str, prefix: str, source_bucket: str,
                    objects_or_versions: Iterable[Mapping[str, Any]], fmt: str, when: datetime,
                    files: int = 2, *, config_id: str = "daily", versions: bool | None = None,
                    omit: Sequence[str] = (), checksum: str | None = None) -> str:
    """Write one inventory report of *source_bucket* into *dest_bucket*; return its manifest key.

    *objects_or_versions*: listing entries (``Key``, ``Size``, ``LastModified``, ``ETag``,
    optionally ``VersionId``, ``IsLatest``, ``IsDeleteMarker`` and the Object Lock fields
    ``ObjectLockMode``, ``ObjectLockRetainUntilDate``, ``ObjectLockLegalHoldStatus``).
    *versions*: an "All versions" report (with ``VersionId``, ``IsLatest``, ``IsDeleteMarker``);
    by default when any entry has a ``VersionId``. *omit*: CSV column names to leave out (a
    report configured without them). *checksum*: what to write in ``manifest.checksum``
    instead of the right MD5 (a bad checksum).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    entries = [dict(e) for e in objects_or_versions]
    if versions is None:
        versions = any("VersionId" in e for e in entries)
    columns = [c for c in COLUMNS if c[0] not in omit and (versions or c[0] not in _VERSIONCOLUMNS)]
    rows = [entry_row(source_bucket, e) for e in entries]
    base = base_key(prefix, source_bucket, config_id)
    when = when.astimezone(timezone.utc)
    chunks = [rows[i::files] for i in range(max(1, files))]
    described = []
    for chunk in chunks:
        body = encode(fmt, columns, chunk)
        key = f"{base}/data/{uuid.uuid4()}.{_EXTENSION[fmt]}"
        s3_client.put_object(Bucket=dest_bucket, Key=key, Body=body)
        described.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{dest_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(when.timestamp() * 1000)),
        "fileFormat": fmt,
        "fileSchema": file_schema(fmt, columns),
        "files": described,
    }
    text = json.dumps(manifest, indent=4).encode()
    folder = f"{base}/{when:%Y-%m-%dT%H-%MZ}"
    s3_client.put_object(Bucket=dest_bucket, Key=f"{folder}/manifest.json", Body=text)
    s3_client.put_object(Bucket=dest_bucket, Key=f"{folder}/manifest.checksum",
                         Body=(checksum if checksum is not None else hashlib.md5(text).hexdigest()).encode())
    if fmt == "CSV":  # Hive's manifest, as AWS writes it next to CSV reports
        symlink = "".join(f"s3://{dest_bucket}/{f['key']}\n" for f in described)
        s3_client.put_object(Bucket=dest_bucket, Key=f"{base}/hive/dt={when:%Y-%m-%d-%H-%M}/symlink.txt",
                             Body=symlink.encode())
    return f"{folder}/manifest.json"


def rewrite_manifest(s3_client: Any, dest_bucket: str, manifest_key: str,
                     change: Callable[[dict[str, Any]], None] | bytes) -> None:
    """Replace a report's ``manifest.json`` (*change* edits its fields, or is the new text) and write
    the matching ``manifest.checksum``: a manifest AWS could not have written, that passes its checksum."""
    if isinstance(change, bytes):
        text = change
    else:
        manifest = json.loads(s3_client.get_object(Bucket=dest_bucket, Key=manifest_key)["Body"].read())
        change(manifest)
        text = json.dumps(manifest, indent=4).encode()
    s3_client.put_object(Bucket=dest_bucket, Key=manifest_key, Body=text)
    s3_client.put_object(Bucket=dest_bucket, Key=manifest_key.replace("manifest.json", "manifest.checksum"),
                         Body=hashlib.md5(text).hexdigest().encode())


def aws_url_encode(key: str) -> str:
    """A key as AWS writes it in CSV inventories: form encoding (space ``+``, ``+`` ``%2B``, UTF-8)."""
    return quote_plus(key, safe="*").replace("~", "%7E")


def entry_row(bucket: str, e: Mapping[str, Any]) -> dict[str, Any]:
    marker = bool(e.get("IsDeleteMarker", False))
    etag = e.get("ETag")
    return {
        "bucket": bucket,
        "key": e["Key"],
        "version_id": e.get("VersionId"),
        "is_latest": bool(e.get("IsLatest", True)),
        "is_delete_marker": marker,
        "size": None if marker else e.get("Size"),
        "last_modified_date": _utc(e["LastModified"]),
        "e_tag": None if marker or etag is None else str(etag).strip('"'),
        "storage_class": None if marker else e.get("StorageClass", "STANDARD"),
        "is_multipart_uploaded": None if marker else "-" in str(etag or ""),
        "object_lock_retain_until_date": _utc(e["ObjectLockRetainUntilDate"])
        if e.get("ObjectLockRetainUntilDate") else None,
        "object_lock_mode": e.get("ObjectLockMode"),
        "object_lock_legal_hold_status": e.get("ObjectLockLegalHoldStatus"),
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def encode(fmt: str, columns: list[tuple[str, str, str, str]], rows: list[dict[str, Any]]) -> bytes:
    if fmt == "CSV":
        return _csv(columns, rows)
    import pyarrow as pa

    types = {"string": pa.string(), "boolean": pa.bool_(), "bigint": pa.int64(),
             "timestamp": pa.timestamp("ms", tz="UTC") if fmt == "Parquet" else pa.timestamp("ms")}
    fields = [pa.field(snake, types[kind], nullable=snake not in ("bucket", "key")) for _, snake, kind, _ in columns]
    data = {}
    for _, snake, kind, _ in columns:
        values = [r[snake] for r in rows]
        if kind == "timestamp" and fmt == "ORC":
            values = [v.replace(tzinfo=None) if v is not None else None for v in values]
        data[snake] = values
    table = pa.table(data, schema=pa.schema(fields))
    sink = io.BytesIO()
    if fmt == "Parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="snappy")
    else:
        import pyarrow.orc as orc

        orc.write_table(table, sink, compression="zlib")
    return sink.getvalue()


def _csv(columns: list[tuple[str, str, str, str]], rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in rows:
        writer.writerow([_csv_value(snake, row[snake]) for _, snake, _, _ in columns])
    return gzip.compress(text.getvalue().encode("utf-8"))


def _csv_value(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "key":
        return aws_url_encode(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return str(value)


def file_schema(fmt: str, columns: list[tuple[str, str, str, str]]) -> str:
    if fmt == "CSV":
        return ", ".join(c[0] for c in columns)
    if fmt == "ORC":
        return "struct<" + ",".join(f"{snake}:{kind}" for _, snake, kind, _ in columns) + ">"
    return "message s3.inventory { " + " ".join(f"{decl};" for *_, decl in columns) + " }"
