"""Injecting S3 trouble into a live client with botocore event hooks (no stubbing of our code).

* :func:`fail_keys_once` — DeleteObjects answers 200 with a per-key error (``SlowDown``,
  ``InternalError`` …) the first time(s) each given key is asked for; those keys never
  reach the server that time, so a retry finds them still there.
* :func:`throttle` — the next *times* requests of an operation get a 503 ``SlowDown``
  before they are sent (botocore's standard retry mode must absorb them). Over HTTP only:
  in-process ``mock_aws`` also answers ``before-send``, so the request would still run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from botocore.awsrequest import AWSResponse


def fail_keys_once(client: Any, keys: Iterable[str], code: str = "SlowDown",
                   message: str = "Please reduce your request rate.", times: int = 1) -> dict[str, int]:
    """Fail each of *keys* in DeleteObjects the next *times* times it is asked for.

    Returns a counter of injected errors by key.
    """
    keys = set(keys)
    left = dict.fromkeys(keys, times)
    waiting = {k for k in keys if left[k] > 0}
    held_back: list[dict[str, str]] = []
    injected: dict[str, int] = {}
    nothing_left: list[bool] = []

    def hold_back(params: dict[str, Any], **_: Any) -> None:
        objects = params.get("Delete", {}).get("Objects", [])
        keep = [o for o in objects if o["Key"] not in waiting]
        dropped = [o for o in objects if o["Key"] in waiting]
        if not dropped:
            return
        if not keep:  # an empty Delete is malformed: answer without calling S3 at all
            nothing_left.append(True)
        for obj in dropped:
            left[obj["Key"]] -= 1
            if left[obj["Key"]] <= 0:
                waiting.discard(obj["Key"])
            injected[obj["Key"]] = injected.get(obj["Key"], 0) + 1
        params["Delete"]["Objects"] = keep or dropped
        held_back.extend(dropped)

    def answer_locally(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not nothing_left:
            return None
        nothing_left.clear()
        return AWSResponse("local", 200, {}, _Body(b"")), {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def report(parsed: dict[str, Any], **_: Any) -> None:
        errors = [{"Key": o["Key"], **({"VersionId": o["VersionId"]} if "VersionId" in o else {}),
                   "Code": code, "Message": message} for o in held_back]
        held_back.clear()
        if errors:
            parsed.setdefault("Errors", []).extend(errors)

    client.meta.events.register("before-parameter-build.s3.DeleteObjects", hold_back)
    client.meta.events.register("before-call.s3.DeleteObjects", answer_locally)
    client.meta.events.register("after-call.s3.DeleteObjects", report)
    return injected


class _Body:
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
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(body))

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
