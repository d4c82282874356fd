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


def storage_hold(client: Any, bucket: str, key: str, version: str | None, message: str) -> str | None:
    """Why storage holds this version (a legal hold, a retention date), or None if it does not."""
    extra = {"VersionId": version} if version else {}
    unreadable = False
    try:
        status = client.get_object_legal_hold(Bucket=bucket, Key=key, **extra)["LegalHold"]["Status"]
        if status == "ON":
            return "held by storage: S3 Object Lock legal hold is ON"
    except Exception as exc:
        unreadable = unreadable or error_code(exc) in ("AccessDenied", "MethodNotAllowed")
    try:
        retention = client.get_object_retention(Bucket=bucket, Key=key, **extra)["Retention"]
        until = retention.get("RetainUntilDate")
        if until is not None and until > datetime.now(timezone.utc):
            return (f"held by storage: S3 Object Lock {retention.get('Mode', '')} retention "
                    f"until {until.astimezone(timezone.utc).isoformat()}").replace("  ", " ")
    except Exception as exc:
        unreadable = unreadable or error_code(exc) in ("AccessDenied", "MethodNotAllowed")
    if unreadable and "object lock" in message.lower():
        return f"held by storage: {message}"
    return None
