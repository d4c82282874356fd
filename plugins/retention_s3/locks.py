"""Telling an Object Lock refusal from a permissions failure.

DeleteObjects answers ``AccessDenied`` for both a locked version and a key a bucket policy
protects. A lock is storage holding the data (``refused``, reported as held by storage);
a policy denial is a failure someone must fix. We ask the version itself, and fall back on
S3's message only when we may not read its lock.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .client import error_code


def lock_enabled(client: Any, bucket: str) -> bool:
    """Whether the bucket has Object Lock switched on (only then can a version be locked)."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"):
            return False
        return True  # cannot tell: let the per-version look-up decide
    return config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def legal_hold_status(client: Any, bucket: str, key: str, version: str | None) -> str:
    """``ON`` or ``OFF``; a version whose legal hold was never set reads as ``OFF``."""
    extra = {"VersionId": version} if version else {}
    try:
        answer = client.get_object_legal_hold(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        if error_code(exc) in _NOT_SET:
            return "OFF"
        raise
    return str(answer.get("LegalHold", {}).get("Status") or "OFF")


def storage_hold(client: Any, bucket: str, key: str, version: str | None, message: str) -> str | None:
    """Why storage holds this version (a legal hold, a retention date), or None if it does not.

    When the version's lock cannot be read (no s3:GetObjectLegalHold / GetObjectRetention
    permission, a store that lacks the call), S3's own message decides: it says "object lock".
    """
    extra = {"VersionId": version} if version else {}
    unreadable = False
    try:
        if legal_hold_status(client, bucket, key, version) == "ON":
            return "held by storage: S3 Object Lock legal hold is ON"
    except Exception as exc:
        unreadable = error_code(exc) not in _NOT_SET
    try:
        retention = client.get_object_retention(Bucket=bucket, Key=key, **extra).get("Retention", {})
        until = retention.get("RetainUntilDate")
        if until is not None and until > datetime.now(timezone.utc):
            mode = retention.get("Mode") or "Object Lock"
            until_utc = until.astimezone(timezone.utc).isoformat()
            return f"held by storage: S3 Object Lock {mode} retention until {until_utc}"
    except Exception as exc:
        unreadable = unreadable or error_code(exc) not in _NOT_SET
    if unreadable and "object lock" in message.lower():
        return f"held by storage: {message}"
    return None


#: Errors that mean "this version has no such lock", as opposed to "could not look".
_NOT_SET = frozenset({"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"})
