"""Key ranges as partitions of an SQL source (a distributed run scans each on its own).

The table's valid rows are cut at key values taken every ``total / n`` rows in key order, so
each range holds about :data:`ROWS_PER_PARTITION` rows; the first range is open below, the
last open above, so together they cover every key — a row inserted after the cut still falls
in exactly one. Problems (rows whose created value is unusable) go with the range of their
key; rows with a NULL key (no range holds them) with the first range. A key that is neither
an integer nor text gives one partition, the whole source.

Cutting costs ``n`` ordered ``OFFSET`` reads of the key index, once per run in the main
process.
"""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from retention_core import Partition, Source

from .rows import TableOps

#: About how many rows one partition lists.
ROWS_PER_PARTITION = 250_000
#: At most this many partitions per source, however large the table.
MAX_PARTITIONS = 256


def key_partitions(engine: sa.Engine, ops: TableOps, source: Source,
                   rows_per_partition: int | None = None) -> list[Partition]:
    """*source*'s key ranges (one partition, the whole source, for a small table)."""
    per = rows_per_partition or ROWS_PER_PARTITION
    whole = [Partition(source.name, "", "the whole table")]
    if ops.info.key_type not in (int, str):
        return whole
    with engine.connect() as conn:
        total = conn.execute(ops.select(sa.func.count()).where(ops.valid())).scalar() or 0
        count = min(MAX_PARTITIONS, math.ceil(total / per))
        if count <= 1:
            return whole
        bounds: list[Any] = []
        ordered = ops.select(ops.key).where(ops.valid()).order_by(ops.key)
        for i in range(1, count):
            value = conn.execute(ordered.offset(i * total // count).limit(1)).scalar()
            if value is not None and (not bounds or value > bounds[-1]):
                bounds.append(value)
    edges: list[Any] = [None, *bounds, None]
    return [Partition(source.name, json.dumps({"from": lo, "to": hi}), _label(ops, lo, hi))
            for lo, hi in zip(edges, edges[1:], strict=False)]


def key_range(ops: TableOps, partition: Partition) -> tuple[ColumnElement[bool], bool]:
    """(the partition's condition on the key, whether it also lists the NULL-key problems)."""
    token = json.loads(partition.token)
    lo, hi = token.get("from"), token.get("to")
    parts = []
    if lo is not None:
        parts.append(ops.key >= lo)
    if hi is not None:
        parts.append(ops.key < hi)
    return (sa.and_(*parts) if parts else sa.true()), lo is None


def _label(ops: TableOps, lo: Any, hi: Any) -> str:
    name = ops.key.name
    if lo is None:
        return f"{name} < {hi!r}"
    if hi is None:
        return f"{name} >= {lo!r}"
    return f"{lo!r} <= {name} < {hi!r}"


__all__ = ["MAX_PARTITIONS", "ROWS_PER_PARTITION", "key_partitions", "key_range"]
