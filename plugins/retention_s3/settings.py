"""The ``backend: s3`` options, read once through :class:`retention_core.Options`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from retention_core import Options, parse_duration

VERSION_MODES = ("auto", "current", "all")
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
#: S3's own limit for one DeleteObjects call and one listing page.
S3_MAX_KEYS = 1000
#: An inventory older than this is refused: what changed since is not in it.
DEFAULT_MAX_AGE = "8d"

# Loose on purpose: S3-compatible stores accept names AWS would not (upper case, "_").
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


@dataclass(frozen=True)
class InventorySettings:
    """The ``inventory:`` block: where AWS writes the reports, or one manifest, and how old is too old."""

    bucket: str | None = None
    prefix: str = ""
    config_id: str | None = None
    manifest: str | None = None
    max_age: str = DEFAULT_MAX_AGE

    @classmethod
    def from_options(cls, options: Options) -> InventorySettings:
        manifest = options.str("manifest", None)
        bucket = options.str("bucket", None)
        prefix = options.raw("prefix", "")
        config_id = options.str("config_id", None)
        max_age = options.str("max_age", DEFAULT_MAX_AGE)
        try:
            parse_duration(max_age)
        except ValueError as exc:
            raise options.error("max_age", str(exc)) from None
        if not isinstance(prefix, str):
            raise options.error("prefix", f"expected a string, found {type(prefix).__name__}")
        if manifest is not None:
            if bucket is not None or config_id is not None or prefix:
                raise options.error("manifest", "give either manifest (one report) or bucket, prefix and "
                                                "config_id (the newest report there), not both")
            parsed = split_uri(manifest)
            if parsed is None or not parsed[1].endswith("manifest.json"):
                raise options.error("manifest", f"expected s3://BUCKET/…/manifest.json, found {manifest!r}")
        elif bucket is None or config_id is None:
            raise options.error("bucket" if bucket is None else "config_id",
                                "is required (the inventory's destination bucket, prefix and configuration "
                                "id; or manifest: s3://…/manifest.json)")
        elif "/" in config_id:
            raise options.error("config_id", f"expected the inventory configuration's id, found {config_id!r}")
        options.done()
        return cls(bucket=bucket, prefix=prefix.strip("/"), config_id=config_id, manifest=manifest, max_age=max_age)

    def base(self, source_bucket: str) -> str:
        """``<prefix>/<source-bucket>/<config-id>/``, where AWS writes this configuration's reports."""
        return "/".join(p for p in (self.prefix, source_bucket, self.config_id or "") if p) + "/"


def split_uri(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://"):].partition("/")
    return (bucket, key) if bucket and key else None


@dataclass(frozen=True)
class S3Settings:
    """Validated options of one S3 source."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    versions: str = "auto"
    concurrency: int = DEFAULT_CONCURRENCY
    tags: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    page_size: int = S3_MAX_KEYS
    #: Scan from this S3 Inventory report instead of listing (docs/s3.md).
    inventory: InventorySettings | None = None

    @classmethod
    def from_options(cls, options: Options) -> S3Settings:
        bucket = options.str("bucket")
        if bucket.startswith("s3://") or "/" in bucket or not _BUCKET.match(bucket):
            raise options.error("bucket", f"expected a bucket name (put the folder in 'prefix'), "
                                          f"found {bucket!r}")
        prefix = options.raw("prefix", "")
        if not isinstance(prefix, str):
            raise options.error("prefix", f"expected a string, found {type(prefix).__name__}")
        endpoint_url = options.str("endpoint_url", None)
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise options.error("endpoint_url", f"expected an http:// or https:// URL, found {endpoint_url!r}")
        settings = cls(
            bucket=bucket,
            prefix=folder_prefix(prefix),
            region=options.str("region", None),
            profile=options.str("profile", None),
            endpoint_url=endpoint_url,
            versions=options.choice("versions", VERSION_MODES, "auto"),
            concurrency=options.int("concurrency", DEFAULT_CONCURRENCY, minimum=1, maximum=64),
            tags=options.bool("tags", False),
            max_attempts=options.int("max_attempts", DEFAULT_MAX_ATTEMPTS, minimum=1, maximum=20),
            page_size=options.int("page_size", S3_MAX_KEYS, minimum=1, maximum=S3_MAX_KEYS),
            inventory=_inventory(options),
        )
        options.done()
        return settings

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _inventory(options: Options) -> InventorySettings | None:
    block = options.mapping("inventory", None)
    if block is None:
        return None
    return InventorySettings.from_options(Options(block, where=f"{options.where}.inventory"))


def folder_prefix(prefix: str) -> str:
    """A prefix names a folder: ``logs/2020`` lists ``logs/2020/…``, never ``logs/2020-archive/``.

    Nothing else is normalised: keys may legitimately hold ``//`` or a leading ``/``.
    """
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"
