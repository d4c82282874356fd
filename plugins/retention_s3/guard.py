"""The guard: what a scan saw of an object, and how deleting makes sure it is still that object.

A record's ``stamp`` carries the object's ETag, size and LastModified as listed. Deleting
compares them with storage in the strongest way the bucket and the endpoint allow:

* versioned buckets delete by ``VersionId`` (a version is immutable, so a newer write is
  another version and is never touched);
* unversioned buckets send each object's ``ETag`` in ``DeleteObjects`` (a conditional
  delete: S3 refuses a key whose ETag changed, per key, with ``PreconditionFailed``) when
  :func:`probe_conditional_deletes` found that the endpoint enforces it; otherwise a fresh
  listing right before deleting is compared with the stamp.

Keys that XML 1.0 cannot carry (control characters) cannot be named in a ``DeleteObjects``
body at all; :func:`xml_safe` tells them apart so they are deleted one by one, with the key
in the URL.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from .client import describe, error_code
from .settings import S3Settings

log = logging.getLogger("retention.s3")

#: Per-key codes meaning "storage no longer holds what the scan saw" (412, and the 409 S3
#: answers when a concurrent write wins the race with a conditional delete).
CHANGED_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

#: Where the probe writes its canary object, under the source's prefix (so a policy that
#: grants access to the prefix only still allows it).
CANARY_FOLDER = ".retention-canary/"
#: An ETag no object has: S3 ETags are quoted hex digests, never this.
WRONG_ETAG = '"retention-canary-wrong-etag"'

# Characters an XML 1.0 document cannot contain, plus CR, which XML parsers turn into LF
# (so a key holding it would name a different key inside a DeleteObjects body).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(key: str) -> bool:
    """Whether *key* survives a trip through an XML request body unchanged."""
    return _NOT_XML.search(key) is None


class Seen(NamedTuple):
    """An object as the scan listed it: what the fallback guard compares."""

    etag: str | None
    size: int | None
    modified: datetime

    def stamp(self) -> str:
        """The record's ``stamp``: size, LastModified, ETag (last, so it may hold any character)."""
        return f"{'' if self.size is None else self.size} {self.modified.isoformat()} {self.etag or ''}"

    @classmethod
    def parse(cls, stamp: str | None) -> Seen | None:
        """The :class:`Seen` a stamp was made from; ``None`` for a record without a usable stamp."""
        if not stamp:
            return None
        parts = stamp.split(" ", 2)
        if len(parts) != 3:
            return None
        size, modified, etag = parts
        try:
            return cls(etag or None, int(size) if size else None, datetime.fromisoformat(modified))
        except ValueError:
            return None

    def matches(self, now: Seen) -> bool:
        """Storage still holds this object: same ETag, size and LastModified where both know them."""
        return (self.modified == now.modified
                and (self.etag is None or now.etag is None or _bare(self.etag) == _bare(now.etag))
                and (self.size is None or now.size is None or self.size == now.size))


def _bare(etag: str) -> str:
    """ETags compare without their quotes (stores differ in whether they send them)."""
    return etag.strip('"')


@dataclass(frozen=True)
class ConditionalDeletes:
    """What the endpoint does with a per-object ``ETag`` in ``DeleteObjects``.

    ``enforced``: a wrong ETag is refused (``PreconditionFailed``) and the object stays.
    ``reports_missing``: a conditional delete of a key that does not exist is answered with
    a per-key ``NoSuchKey``, so ``already_gone`` needs no listing either.
    """

    enforced: bool
    reports_missing: bool = False
    reason: str = ""


NOT_ENFORCED = ConditionalDeletes(False, reason="not probed")


def probe_conditional_deletes(client: Any, settings: S3Settings) -> ConditionalDeletes:
    """Find out, with a canary object, whether the endpoint enforces per-object ETags in DeleteObjects.

    Some S3-compatible stores (moto among them) accept the ``ETag`` element and ignore it:
    the delete goes through whatever the object holds. Trusting the element there would
    silently drop the guard, so it is tested once: write a canary, ask to delete it with a
    wrong ETag, see whether it survives. The canary is removed whatever happens. Anything
    unexpected (no permission to write it, an error) answers "not enforced", and the backend
    guards with a fresh listing instead.
    """
    key = f"{settings.prefix}{CANARY_FOLDER}{uuid.uuid4().hex}"
    bucket = settings.bucket
    try:
        etag = client.put_object(Bucket=bucket, Key=key, Body=b"retention: conditional-delete probe\n",
                                 ContentType="text/plain")["ETag"]
    except Exception as exc:
        log.warning("%s: cannot write the canary %r to probe conditional deletes (%s); guarding "
                    "deletions with a fresh listing instead", settings.where, key, describe(exc))
        return ConditionalDeletes(False, reason=f"canary not written: {describe(exc)}")
    try:
        return _probe(client, bucket, key, etag)
    except Exception as exc:
        log.warning("%s: probing conditional deletes failed (%s); guarding deletions with a fresh "
                    "listing instead", settings.where, describe(exc))
        return ConditionalDeletes(False, reason=f"probe failed: {describe(exc)}")
    finally:
        _remove_canary(client, settings, key)


def _probe(client: Any, bucket: str, key: str, etag: str) -> ConditionalDeletes:
    wrong = _delete_one(client, bucket, key, WRONG_ETAG)
    if _error_code_of(wrong) not in CHANGED_CODES or not _exists(client, bucket, key):
        return ConditionalDeletes(False, reason="a DeleteObjects entry with a wrong ETag deleted the canary")
    right = _delete_one(client, bucket, key, etag)
    if "Deleted" not in right or _exists(client, bucket, key):
        return ConditionalDeletes(False, reason="a DeleteObjects entry with the right ETag did not delete")
    again = _delete_one(client, bucket, key, etag)
    return ConditionalDeletes(True, reports_missing=_error_code_of(again) in ("NoSuchKey", "404"),
                              reason="a wrong ETag was refused")


def _delete_one(client: Any, bucket: str, key: str, etag: str) -> dict[str, Any]:
    """DeleteObjects' answer for one conditional entry: ``{"Deleted": …}`` or ``{"Error": …}``."""
    response = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key, "ETag": etag}],
                                                            "Quiet": False})
    for item in response.get("Errors", ()):
        if item.get("Key") == key:
            return {"Error": item}
    for item in response.get("Deleted", ()):
        if item.get("Key") == key:
            return {"Deleted": item}
    return {}


def _error_code_of(answer: dict[str, Any]) -> str:
    return str(answer.get("Error", {}).get("Code", ""))


def _exists(client: Any, bucket: str, key: str) -> bool:
    page = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(obj["Key"] == key for obj in page.get("Contents", ()))


def _remove_canary(client: Any, settings: S3Settings, key: str) -> None:
    """Delete the canary unconditionally (deleting a key that is gone is a no-op on S3)."""
    try:
        client.delete_object(Bucket=settings.bucket, Key=key)
    except Exception as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            log.warning("%s: could not remove the canary %r (%s): delete it by hand", settings.where, key,
                        describe(exc))
