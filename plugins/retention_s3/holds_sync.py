"""Mirroring our holds into S3 Object Lock legal holds (defence in depth).

A version covered by an active hold of ours gets ``put_object_legal_hold ON``; when our
last covering hold is released it goes back ``OFF`` — but only on versions *we* switched
on, remembered in the state store's ``s3_legal_holds`` table. A legal hold someone else
placed is never touched: S3 keeps one flag per version, so a version found already ON is
left alone and not recorded as ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from retention_core import Hold, Record

from .client import GONE_CODES, describe, error_code
from .locks import legal_hold_status

metadata = sa.MetaData()

#: Versions whose legal hold we switched ON. Keys can be 1024 bytes, so the primary key
#: is a digest (portable to MySQL's index limits), and the key itself is plain text.
legal_holds_table = sa.Table(
    "s3_legal_holds", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(200), nullable=False, index=True),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("version_id", sa.String(1024), nullable=False),
    sa.Column("hold_ids", sa.Text, nullable=False),
    sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
)


def row_id(bucket: str, key: str, version: str) -> str:
    return hashlib.sha256("\0".join((bucket, key, version)).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Change:
    """One line of what sync did (or, in dry-run, would do)."""

    action: str  # "on" | "off" | "foreign" | "failed"
    key: str
    version: str
    detail: str


@dataclass
class SyncResult:
    changes: list[Change] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def sync_source(*, engine: sa.Engine, client: Any, bucket: str, source: str, records: Iterable[Record],
                holds: tuple[Hold, ...], covering: Callable[[Record, tuple[Hold, ...]], tuple[str, ...]],
                dry_run: bool) -> SyncResult:
    """Switch legal holds ON for covered versions and OFF for ours no longer covered."""
    metadata.create_all(engine)
    result = SyncResult()
    wanted: dict[str, tuple[Record, tuple[str, ...]]] = {}
    for record in records:
        ids = covering(record, holds)
        if ids and record.version is not None:
            wanted[row_id(bucket, record.location, record.version)] = (record, ids)
    with engine.connect() as conn:
        ours = {row.id: row for row in conn.execute(
            sa.select(legal_holds_table).where(legal_holds_table.c.source == source,
                                               legal_holds_table.c.bucket == bucket))}

    for rid, (record, ids) in sorted(wanted.items(), key=lambda item: item[1][0].location):
        version = record.version or ""
        if rid in ours:
            if not dry_run and ours[rid].hold_ids != ",".join(ids):
                _update_ids(engine, rid, ids)
            continue
        result.changes.append(_place(engine, client, bucket, source, record.location, version, ids, rid, dry_run))

    for rid, row in sorted(ours.items(), key=lambda item: item[1].object_key):
        if rid not in wanted:
            result.changes.append(_release(engine, client, bucket, row, dry_run))
    return result


def _place(engine: sa.Engine, client: Any, bucket: str, source: str, key: str, version: str,
           ids: tuple[str, ...], rid: str, dry_run: bool) -> Change:
    held_by = ", ".join(ids)
    try:
        current = legal_hold_status(client, bucket, key, version)
    except Exception as exc:
        if error_code(exc) not in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"):
            return Change("failed", key, version, f"cannot read its legal hold: {describe(exc)}")
        current = "OFF"
    if current == "ON":
        return Change("foreign", key, version, f"already ON, placed by someone else: left alone ({held_by})")
    if dry_run:
        return Change("on", key, version, f"would switch ON: held by {held_by}")
    try:
        client.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "ON"})
    except Exception as exc:
        return Change("failed", key, version, f"could not switch ON: {describe(exc)}")
    with engine.begin() as conn:
        conn.execute(legal_holds_table.insert().values(
            id=rid, source=source, bucket=bucket, object_key=key, version_id=version, hold_ids=",".join(ids),
            placed_at=datetime.now(timezone.utc)))
    return Change("on", key, version, f"switched ON: held by {held_by}")


def _release(engine: sa.Engine, client: Any, bucket: str, row: Any, dry_run: bool) -> Change:
    key, version = row.object_key, row.version_id
    if dry_run:
        return Change("off", key, version, f"would switch OFF: no active hold covers it any more (was {row.hold_ids})")
    try:
        client.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"})
        detail = f"switched OFF: no active hold covers it any more (was {row.hold_ids})"
    except Exception as exc:
        if error_code(exc) not in GONE_CODES:
            return Change("failed", key, version, f"could not switch OFF: {describe(exc)}")
        detail = "version no longer exists: forgotten"
    with engine.begin() as conn:
        conn.execute(legal_holds_table.delete().where(legal_holds_table.c.id == row.id))
    return Change("off", key, version, detail)


def _update_ids(engine: sa.Engine, rid: str, ids: tuple[str, ...]) -> None:
    with engine.begin() as conn:
        conn.execute(legal_holds_table.update().where(legal_holds_table.c.id == rid).values(hold_ids=",".join(ids)))
