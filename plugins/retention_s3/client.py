"""Building the boto3 client and reading botocore errors.

boto3 is imported here, lazily, so the plugin loads (and can say how to install boto3)
without it. Retries use botocore's ``standard`` mode, never the legacy default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from retention_core import ConfigError

from .settings import S3Settings

#: Per-key DeleteObjects error codes worth retrying: S3 asked us to slow down or hiccuped.
TRANSIENT_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout",
                             "OperationAborted", "Throttling", "ThrottlingException", "503", "500"})
#: The item is not there: deleting it is already done.
GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})


def make_client(settings: S3Settings, where: str = "options") -> Any:
    """An S3 client from boto3's standard credential chain (env, profile, role)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region,
                                        botocore_session=_botocore_session())
    except ProfileNotFound as exc:
        raise ConfigError(f"no AWS profile named {settings.profile!r} ({exc})", key=f"{where}.profile") from None
    config = Config(
        # total_max_attempts counts the first try, like AWS_MAX_ATTEMPTS (botocore's
        # "max_attempts" key would count retries only).
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        # Enough sockets for every concurrent batch plus tag look-ups.
        max_pool_connections=max(10, settings.concurrency * 2),
        user_agent_extra="retention-s3",
        # S3-compatible stores (MinIO, Ceph, moto) rarely serve virtual-hosted buckets.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    return session.client("s3", region_name=settings.region or session.region_name or "us-east-1",
                          endpoint_url=settings.endpoint_url, config=config)


def _botocore_session() -> Any:
    """A botocore session of our own whose responses parse timestamps with :func:`parse_timestamp`.

    botocore's default parser runs dateutil on every listed object's ``LastModified``: it
    was the largest item of an enforcing run's CPU profile. The parser factory is a
    component of this session only, so no other boto3 user in the process is affected.
    """
    import botocore.session

    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def parse_timestamp(value: Any) -> datetime:
    """S3's ``2024-05-01T12:00:00.000Z`` as an aware UTC datetime, exactly; anything else as botocore would.

    A value neither can parse is returned as it came (a string), never raised: callers that
    read listed dates check the type (see ``listing.scan_current``).

    Only the shape S3 lists use (``T`` separator, ``Z`` suffix) takes the fast path, so
    every other form (RFC 822 headers, epoch numbers, offsets, no zone) is parsed by
    botocore's own parser, unchanged. Fractions beyond microseconds are truncated, as
    botocore does.
    """
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value[-1] == "Z":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp as botocore_parse

    try:
        return botocore_parse(value)
    except (ValueError, OverflowError, TypeError):
        # One object's unparseable date (year 10000, garbage from a store) must not fail the
        # whole listing page: the raw value goes through, and the scan reports that object.
        return value


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(status or "")
    return ""


def describe(exc: BaseException) -> str:
    """One line for a user: the S3 code and message, or the exception's own text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        return f"{err.get('Code', '?')}: {err.get('Message', '') or exc}"
    return f"{type(exc).__name__}: {exc}"


def unreachable(exc: BaseException) -> str | None:
    """Why S3 cannot be used at all (no credentials, endpoint down), as one line; else None.

    These say nothing about the bucket's contents: a dry run and an enforcing run report
    them the same way, as a configuration problem (exit 2) rather than a storage failure.
    """
    from botocore.exceptions import (
        ConnectionError,
        CredentialRetrievalError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found (environment, profile or role); cron and systemd timers start with an "
                "almost empty environment: give the job AWS_PROFILE (and HOME) or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY in its environment file (docs/user-guide.md, 'Running nightly')")
    if isinstance(exc, PartialCredentialsError | CredentialRetrievalError | ProfileNotFound):
        return f"AWS credentials unusable: {exc}"
    if isinstance(exc, NoRegionError):
        return "no AWS region configured (set 'region')"
    if isinstance(exc, ConnectionError):  # EndpointConnectionError, ConnectTimeout, proxy, SSL
        return f"cannot reach S3: {exc}"
    return None
