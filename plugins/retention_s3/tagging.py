"""Optional ``tags: true``: object tags ``subject`` / ``category`` classify records.

Costly by nature: one GetObjectTagging request per object (run concurrently, a page at a
time). A tag wins over the source's ``match`` groups and ``category``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import replace
from itertools import islice
from typing import Any

from retention_core import BackendError, Problem, Record

from .client import GONE_CODES, describe, error_code
from .settings import S3Settings

TAG_KEYS = ("subject", "category")


def with_tags(records: Iterator[Record | Problem], client: Any, settings: S3Settings,
              executor: Executor) -> Iterator[Record | Problem]:
    """*records* with ``subject``/``category`` taken from their tags, in the same order (problems pass)."""
    while True:
        page = list(islice(records, settings.page_size))
        if not page:
            return
        yield from executor.map(lambda r: _tagged(r, client, settings), page)


def _tagged(record: Record | Problem, client: Any, settings: S3Settings) -> Record | Problem:
    if isinstance(record, Problem):
        return record
    extra = {"VersionId": record.version} if record.version else {}
    try:
        tags = client.get_object_tagging(Bucket=settings.bucket, Key=record.location, **extra)["TagSet"]
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            return record  # gone since the listing; deleting it will say already_gone
        raise BackendError(f"{settings.where}: GetObjectTagging {record.location!r} failed: {describe(exc)}"
                           ) from exc
    found = {t["Key"]: t["Value"] for t in tags if t.get("Key") in TAG_KEYS and t.get("Value")}
    if not found:
        return record
    return replace(record, subject=found.get("subject", record.subject),
                   category=found.get("category", record.category))
