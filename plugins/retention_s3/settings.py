"""The ``backend: s3`` options, read once through :class:`retention_core.Options`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from retention_core import Options

VERSION_MODES = ("auto", "current", "all")
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
#: S3's own limit for one DeleteObjects call and one listing page.
S3_MAX_KEYS = 1000

# Loose on purpose: S3-compatible stores accept names AWS would not (upper case, "_").
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


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
        )
        options.done()
        return settings

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def folder_prefix(prefix: str) -> str:
    """A prefix names a folder: ``logs/2020`` lists ``logs/2020/…``, never ``logs/2020-archive/``.

    Nothing else is normalised: keys may legitimately hold ``//`` or a leading ``/``.
    """
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"
