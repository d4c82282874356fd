"""Injecting S3 trouble into a live client with botocore event hooks (no stubbing of our code).

* :func:`fail_keys_once` — DeleteObjects answers 200 with a per-key error (``SlowDown``,
  ``InternalError`` …) the first time(s) each given key is asked for; those keys never
  reach the server that time, so a retry finds them still there.
* :func:`enforce_etags` — DeleteObjects honours each entry's ``ETag`` (a conditional
  delete) as AWS S3 does, where moto accepts the element and ignores it.
* :func:`throttle` — the next *times* requests of an operation get a 503 ``SlowDown``
  before they are sent (botocore's standard retry mode must absorb them). Over HTTP only:
  in-process ``mock_aws`` also answers ``before-send``, so the request would still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from botocore.awsrequest import AWSResponse


def fail_keys_once(client: Any, keys: Iterable[str], code: str = "SlowDown",
                   message: str = "Please reduce your request rate.", times: int = 1) -> dict[str, int]:
    """Fail each of *keys* in DeleteObjects the next *times* times it is asked for.

    Returns a counter of injected errors by key.
    """
    left = dict.fromkeys(set(keys), times)
    injected: dict[str, int] = {}

    def decide(obj: dict[str, str]) -> tuple[str, str] | None:
        if left.get(obj["Key"], 0) <= 0:
            return None
        left[obj["Key"]] -= 1
        injected[obj["Key"]] = injected.get(obj["Key"], 0) + 1
        return code, message

    answer_per_key(client, decide)
    return injected


def enforce_etags(client: Any, native: Any, bucket: str) -> list[dict[str, str]]:
    """Make DeleteObjects honour each entry's ``ETag`` as S3 does (moto ignores it).

    An entry whose ETag no longer matches the object is answered ``PreconditionFailed`` and
    one whose key is gone ``NoSuchKey``, and neither reaches the server; *native* (another
    client) reads the object. Returns every conditional entry seen. Not atomic like S3, but
    deterministic: tests change storage before the call, never during it.
    """
    conditional: list[dict[str, str]] = []

    def decide(obj: dict[str, str]) -> tuple[str, str] | None:
        if "ETag" not in obj:
            return None
        conditional.append(dict(obj))
        page = native.list_objects_v2(Bucket=bucket, Prefix=obj["Key"], MaxKeys=1)
        now = [o for o in page.get("Contents", ()) if o["Key"] == obj["Key"]]
        if not now:
            return "NoSuchKey", "The specified key does not exist."
        if now[0]["ETag"].strip('"') != obj["ETag"].strip('"'):
            return "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
        return None

    answer_per_key(client, decide)
    return conditional


def answer_per_key(client: Any, decide: Callable[[dict[str, str]], tuple[str, str] | None]) -> None:
    """Answer some DeleteObjects entries locally: *decide* gives (code, message) for those.

    The chosen entries are taken out of the request before it is sent and come back as
    per-key ``Errors`` in the parsed answer, as S3 reports them.
    """
    held_back: list[tuple[dict[str, str], str, str]] = []
    nothing_left: list[bool] = []

    def hold_back(params: dict[str, Any], **_: Any) -> None:
        objects = params.get("Delete", {}).get("Objects", [])
        keep = []
        for obj in objects:
            answer = decide(obj)
            if answer is None:
                keep.append(obj)
            else:
                held_back.append((obj, *answer))
        if len(keep) == len(objects):
            return
        if not keep:  # an empty Delete is malformed: answer without calling S3 at all
            nothing_left.append(True)
        params["Delete"]["Objects"] = keep or objects

    def answer_locally(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not nothing_left:
            return None
        nothing_left.clear()
        return AWSResponse("local", 200, {}, Body(b"")), {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def report(parsed: dict[str, Any], **_: Any) -> None:
        errors = [{"Key": o["Key"], **({"VersionId": o["VersionId"]} if "VersionId" in o else {}),
                   "Code": code, "Message": message} for o, code, message in held_back]
        held_back.clear()
        if errors:
            parsed.setdefault("Errors", []).extend(errors)

    client.meta.events.register("before-parameter-build.s3.DeleteObjects", hold_back)
    client.meta.events.register("before-call.s3.DeleteObjects", answer_locally)
    client.meta.events.register("after-call.s3.DeleteObjects", report)


class Body:
    """A canned HTTP response body for botocore's AWSResponse."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self.data


def throttle(client: Any, operation: str, times: int) -> list[str]:
    """Answer the next *times* *operation* requests with 503 SlowDown; returns the URLs hit."""
    hits: list[str] = []
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

    def slow_down(request: Any, **_: Any) -> AWSResponse | None:
        if len(hits) >= times:
            return None
        hits.append(request.url)
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Body(body))

    client.meta.events.register(f"before-send.s3.{operation}", slow_down)
    return hits


def deny_delete_policy(bucket: str, key: str) -> str:
    """A bucket policy that denies deleting one key (and its versions)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny", "Principal": "*",
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "Resource": f"arn:aws:s3:::{bucket}/{key}",
        }],
    })
