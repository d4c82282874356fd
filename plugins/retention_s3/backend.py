"""The ``s3`` backend: lists objects or object versions, deletes them in concurrent batches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from retention_core import (
    Backend,
    BackendError,
    ConfigError,
    Options,
    Outcome,
    Partition,
    Problem,
    Record,
    Source,
    Status,
    host_identity,
)

from .client import describe, error_code, make_client, unreachable
from .deletion import ChunkDeleter
from .guard import NOT_ENFORCED, ConditionalDeletes, probe_conditional_deletes
from .inventory import (
    FUTURE_TOLERANCE,
    DataFile,
    InventoryError,
    Manifest,
    RowReader,
    check_age,
    check_columns,
    config_error,
    coverage,
    find_manifest,
    load_manifest,
    partition_file,
    read_file,
    staleness_warning,
)
from .inventory import partitions as inventory_partitions
from .listing import scan_current, scan_range, scan_versions
from .locks import lock_enabled
from .prefixes import Part, discover, in_parallel, split
from .settings import DEFAULT_CONCURRENCY, S3_MAX_KEYS, S3Settings
from .tagging import with_tags

log = logging.getLogger("retention.s3")


class S3Backend(Backend):
    """Objects in one bucket under one prefix; with versioning, every version is a record.

    Deleting is by version id on versioned buckets (never a bare delete that adds a delete
    marker) and under the object's ETag on unversioned ones (see :mod:`.guard`), never
    bypasses governance retention, and reports Object Lock refusals as ``refused``. See
    docs/s3.md.
    """

    name = "s3"
    batch_size = S3_MAX_KEYS * DEFAULT_CONCURRENCY  # per instance: 1000 × concurrency
    can_refuse = True
    #: Seconds of the first per-key retry's backoff (doubling, jittered, capped at 5 s).
    backoff_base = 0.2
    #: Keys per DeleteObjects request (S3 allows at most 1000).
    keys_per_request = S3_MAX_KEYS

    def __init__(self, options: Options) -> None:
        self.settings = S3Settings.from_options(options)
        self._where = options.where  # "sources[0].options": check() names keys like the core does
        # The core reads batch_size from the instance: every thread gets a full request.
        self.batch_size = S3_MAX_KEYS * self.settings.concurrency
        self._client: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self._versioning: dict[str, Any] | None = None
        self._lock_enabled: bool | None = None
        self._conditional: ConditionalDeletes | None = None
        self._manifest: Manifest | None = None
        self._manifest_notes: list[str] = []

    # -- lazily built, shared by threads ----------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._guard:
            return self._ensure_client()

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="retention-s3")
            return self._executor

    def versioning(self) -> dict[str, Any]:
        """GetBucketVersioning's answer (``Status``, ``MFADelete``), read once."""
        if self._versioning is None:
            self._versioning = self.client.get_bucket_versioning(Bucket=self.settings.bucket)
        return self._versioning

    def versioned(self) -> bool:
        """Whether records are object versions (``versions: all``, or ``auto`` on a versioned bucket)."""
        if self.settings.versions == "auto":
            try:
                return self.versioning().get("Status") in ("Enabled", "Suspended")
            except Exception as exc:
                # A dry run starts here (it skips check()): the same one-line errors, exit 2.
                if error_code(exc) in ("NoSuchBucket", "404") or unreachable(exc) is not None:
                    raise self._config_error(exc) from None
                raise BackendError(f"{self.settings.where}: GetBucketVersioning failed: {describe(exc)}") from exc
        return self.settings.versions == "all"

    def lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock (so versions can carry legal holds), read once."""
        return self._bucket_lock_enabled()

    def _bucket_lock_enabled(self) -> bool:
        if self._lock_enabled is None:
            self._lock_enabled = lock_enabled(self.client, self.settings.bucket)
        return self._lock_enabled

    def territory(self, source: Source) -> str:
        """Endpoint, bucket and prefix: prefixes are plain string prefixes in S3. The endpoint
        is compared without case in its scheme and host and without a trailing slash."""
        endpoint = self.settings.endpoint_url
        if endpoint:
            parts = urlsplit(endpoint)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            endpoint = f"{host_identity(parts.hostname, port)}{parts.path.rstrip('/')}"
        return f"{endpoint or 'aws'} {self.settings.where}"

    def address(self, source: Source, given: str) -> str | None:
        """An ``s3://bucket/key`` URI of this source's bucket under its prefix: the key."""
        if not given.startswith("s3://"):
            return None
        bucket, _, key = given[len("s3://"):].partition("/")
        return key if bucket == self.settings.bucket and key.startswith(self.settings.prefix) and key else None

    def present(self, source: Source, location: str, version: str | None = None) -> bool | None:
        """Whether the object (that version of it) is in the bucket now: one HeadObject. Recovery
        asks it before reading an object's absence from a listing — an S3 Inventory report that
        left the object out, for one — as its deletion; an error raises, never answers False."""
        request: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": location}
        if version is not None:
            request["VersionId"] = version
        try:
            self.client.head_object(**request)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "405", "MethodNotAllowed"):
                return False  # 405: the version is a delete marker, so no object is there
            raise BackendError(f"{self.settings.where}: cannot look up {location!r}: {describe(exc)}") from None
        return True

    def conditional_deletes(self) -> ConditionalDeletes:
        """Whether this endpoint enforces per-object ETags in DeleteObjects, probed once per instance.

        Only an enforcing run deletes, so only an enforcing run writes the probe's canary;
        versioned buckets never need it (their guard is the version id).
        """
        with self._guard:
            if self._conditional is None:
                self._conditional = probe_conditional_deletes(self._ensure_client(), self.settings)
                log.info("%s: conditional DeleteObjects %s (%s)", self.settings.where,
                         "enforced" if self._conditional.enforced else "not enforced: fresh listing before "
                         "deleting", self._conditional.reason)
            return self._conditional

    def _ensure_client(self) -> Any:
        """The client, for callers already holding ``_guard``."""
        if self._client is None:
            self._client = make_client(self.settings, self._where)
        return self._client

    # -- Backend ----------------------------------------------------------------------------------
    def check(self, source: Source) -> None:
        """Refuse a bucket we cannot reach, one with MFA Delete, or ``current`` on a versioned bucket."""
        try:
            versioning = self.versioning()
        except Exception as exc:
            raise self._config_error(exc) from None
        if versioning.get("MFADelete") == "Enabled":
            raise ConfigError(f"bucket {self.settings.bucket!r} has MFA Delete enabled: versions cannot be "
                              "deleted without an MFA token, so retention refuses to run this source",
                              key=self._key("bucket"))
        status = versioning.get("Status")
        if self.settings.versions == "current" and status in ("Enabled", "Suspended"):
            raise ConfigError(f"bucket {self.settings.bucket!r} has versioning {status}: 'current' would "
                              "leave every older version behind; use 'auto' or 'all'", key=self._key("versions"))

    def _key(self, option: str) -> str:
        return f"{self._where}.{option}"

    def _config_error(self, exc: BaseException) -> ConfigError:
        code = error_code(exc)
        bucket = self.settings.bucket
        if code in ("NoSuchBucket", "404"):
            return ConfigError(f"bucket {bucket!r} does not exist", key=self._key("bucket"))
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return ConfigError(f"access to bucket {bucket!r} denied (s3:GetBucketVersioning): "
                               f"{describe(exc)}", key=self._key("bucket"))
        why = unreachable(exc)
        if why is not None:
            from botocore.exceptions import ConnectionError

            option = ("endpoint_url" if self.settings.endpoint_url else "region") \
                if isinstance(exc, ConnectionError) else "profile"
            return ConfigError(why, key=self._key(option))
        return ConfigError(f"bucket {bucket!r} cannot be checked: {describe(exc)}", key=self._key("bucket"))

    def warnings(self, source: Source) -> list[str]:
        out = []
        if self.settings.inventory is not None:
            manifest = self.manifest()  # refuses a report too old, incomplete or unusable
            out += [*self._manifest_notes, staleness_warning(manifest)]
        if self.settings.tags:
            out.append("tags: true reads each object's tags with one GetObjectTagging request per object "
                       "(slow, and billed per request)")
        return out

    # -- S3 Inventory (inventory.py) ------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The inventory report this source is scanned from: the newest complete one, checked once."""
        if self._manifest is None:
            assert self.settings.inventory is not None
            try:
                manifest, notes = find_manifest(self.client, self.settings.inventory, self.settings.bucket)
                self._check_manifest(manifest)
                notes += coverage(self.client, manifest, self.settings.prefix)
            except InventoryError as exc:
                raise config_error(exc, self._where) from None
            self._manifest, self._manifest_notes = manifest, notes
        return self._manifest

    def _check_manifest(self, manifest: Manifest) -> None:
        assert self.settings.inventory is not None
        if manifest.source_bucket != self.settings.bucket:
            raise InventoryError(f"{manifest.uri}: an inventory of bucket {manifest.source_bucket!r}, "
                                 f"not {self.settings.bucket!r}")
        check_age(manifest, self.settings.inventory.max_age)
        check_columns(manifest, self.versioned())

    def _inventory_records(self, source: Source, manifest: Manifest,
                           files: Sequence[DataFile]) -> Iterator[Record | Problem]:
        reader = RowReader(source.name, self.settings.bucket, self.settings.prefix, self.versioned(),
                           url_encoded=manifest.fmt == "CSV", match=source.match)
        for data in files:
            yield from read_file(self.client, manifest, data, reader)

    def partitions(self, source: Source) -> list[Partition]:
        """With ``inventory:``, one partition per data file of the report (else the whole source)."""
        if self.settings.inventory is not None:
            return inventory_partitions(self.manifest(), source.name) or super().partitions(source)
        return self._prefix_partitions(source)

    def scan_partition(self, source: Source, partition: Partition) -> Iterator[Record | Problem]:
        if partition.token == "":
            return super().scan_partition(source, partition)
        if self.settings.inventory is None:
            return self._listed(self._list_part(source, self._part(partition)))
        try:
            bucket, key, name = partition_file(partition.token)
            manifest = self._manifest
            if manifest is None or manifest.uri != f"s3://{bucket}/{key}":
                # A worker reads the report the partitions were made from, not whatever is newest now.
                manifest = load_manifest(self.client, bucket, key)
                self._check_manifest(manifest)
                self._manifest = self._manifest or manifest
            data = manifest.file(name)
        except InventoryError as exc:
            raise config_error(exc, self._where) from None
        return self._listed(self._inventory_records(source, manifest, [data]))

    def listed_at(self, source: Source) -> datetime | None:
        """With ``inventory:``, the report's time: recovery settles only intents journalled before
        it, and an erasure request received after it stays open (retention_core's rules). Taken
        as :data:`FUTURE_TOLERANCE` earlier than the manifest says, so that AWS's clock running
        ahead of ours never makes a report look later than what it saw."""
        if self.settings.inventory is not None:
            return self.manifest().created - FUTURE_TOLERANCE
        return None

    def scan(self, source: Source) -> Iterator[Record | Problem]:
        if self.settings.inventory is not None:
            manifest = self.manifest()
            yield from self._listed(self._inventory_records(source, manifest, manifest.files))
            return
        yield from self._listed(self._listing(source))

    # -- listing by prefix (prefixes.py) ---------------------------------------------------------
    def _listing(self, source: Source) -> Iterator[Record | Problem]:
        """The source listed: current objects as a few key ranges in parallel, cut at the prefixes
        a delimited listing finds (see prefixes.py); versions in one listing.

        Versions are not split: a versions listing cannot start at an arbitrary key on every
        store (moto skips an entry after a ``KeyMarker``), and moto answers every versions
        request in time proportional to the whole bucket, so more requests cost more there.
        """
        if self.versioned():
            yield from scan_versions(self.client, self.settings, source.name)
            return
        threads = self.settings.concurrency
        ranges = split(discover(self.client, self.settings, False), threads)
        yield from in_parallel(ranges, lambda r: scan_range(self.client, self.settings, source.name, *r), threads)

    def _list_part(self, source: Source, part: Part) -> Iterator[Record | Problem]:
        if self.versioned():
            return scan_versions(self.client, self.settings, source.name, part.prefix, part.direct)
        return scan_current(self.client, self.settings, source.name, part.prefix, part.direct)

    def _prefix_partitions(self, source: Source) -> list[Partition]:
        """One partition per prefix the delimited listing finds (see prefixes.py)."""
        try:
            parts = discover(self.client, self.settings, self.versioned())
        except Exception as exc:
            if unreachable(exc) is None:
                raise
            raise self._config_error(exc) from None
        if len(parts) == 1 and not parts[0].direct and parts[0].prefix == self.settings.prefix:
            return super().partitions(source)
        return [Partition(source.name, part.token(), part.label()) for part in parts]

    def _part(self, partition: Partition) -> Part:
        try:
            part = Part.parse(partition.token)
        except ValueError as exc:
            raise BackendError(f"{self.settings.where}: {exc}") from None
        if not part.prefix.startswith(self.settings.prefix):
            raise BackendError(f"{self.settings.where}: partition {partition.label!r} is outside the source's prefix")
        return part

    def _listed(self, records: Iterator[Record | Problem]) -> Iterator[Record | Problem]:
        """Records with their tags when asked, and S3 unreachable said as the configuration problem it is."""
        if self.settings.tags:
            records = with_tags(records, self.client, self.settings, self.executor)
        try:
            yield from records
        except Exception as exc:
            if unreachable(exc) is None:
                raise
            raise self._config_error(exc) from None  # as check() says it before an enforcing run

    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        records = list(records)
        if not records:
            return
        try:
            versioned = self.versioned()
            deleter = ChunkDeleter(self.client, self.settings, versioned, self._bucket_lock_enabled,
                                   NOT_ENFORCED if versioned else self.conditional_deletes(),
                                   backoff_base=self.backoff_base)
        except Exception as exc:
            error = str(exc) if isinstance(exc, BackendError) else describe(exc)
            yield from (Outcome(r, Status.FAILED, error) for r in records)
            return
        chunks = chunk_by_key(records, self.keys_per_request)
        if len(chunks) == 1:
            yield from _run(deleter, chunks[0])
            return
        futures: dict[Future[list[Outcome]], list[Record]] = {
            self.executor.submit(_run, deleter, chunk): chunk for chunk in chunks}
        for future in as_completed(futures):
            yield from future.result()

    def close(self) -> None:
        with self._guard:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._client is not None:
                self._client.close()
                self._client = None


def _run(deleter: ChunkDeleter, chunk: list[Record]) -> list[Outcome]:
    try:
        return deleter.run(chunk)
    except Exception as exc:  # one chunk's surprise must not hide the others' outcomes
        return [Outcome(r, Status.FAILED, f"{type(exc).__name__}: {exc}") for r in chunk]


def chunk_by_key(records: Sequence[Record], size: int = S3_MAX_KEYS) -> list[list[Record]]:
    """Sorted chunks of at most *size*, keeping a key's versions together (unless one key has more)."""
    ordered = sorted(records, key=lambda r: (r.location, r.version or ""))
    chunks: list[list[Record]] = []
    current: list[Record] = []
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j].location == ordered[i].location:
            j += 1
        group = ordered[i:j]
        if current and len(current) + len(group) > size:
            chunks.append(current)
            current = []
        while len(group) > size:
            chunks.append(group[:size])
            group = group[size:]
        current += group
        i = j
    if current:
        chunks.append(current)
    return chunks
