"""A moto S3 server on 127.0.0.1 started by the bench for one workload and stopped after."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

REGION = "us-east-1"
#: Fake credentials for every contender; nothing here can reach real AWS.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def available() -> str | None:
    """None when a moto server can be started here, else why not."""
    try:
        import flask  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"moto[server] is not installed ({exc.name})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` of a moto server in this process; always stopped after.

    In this process so :func:`seed` can create objects directly in moto's store (over HTTP,
    50,000 PUTs took minutes) and date them in the past. Contenders are child processes and
    reach it over HTTP like any S3; while they run, this process only waits.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(max_pool_connections=32, retries={"mode": "standard"}))


def seed(endpoint: str, bucket: str, n: int, age_days: float, prefixes: int = 100, *, versioned: bool = False) -> None:
    """A fresh *bucket* holding *n* one-byte objects in *prefixes* folders, all *age_days* old
    (*versioned*: versioning enabled first, so each object is one version with a real id)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    store = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    client(endpoint).create_bucket(Bucket=bucket)
    if versioned:
        client(endpoint).put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    when = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=age_days)  # moto keeps naive UTC
    for i in range(n):
        key = store.put_object(bucket, f"tenants/t{i % prefixes:03d}/calls/{i:07d}.wav", b"x")
        key.last_modified = when


def drop(endpoint: str, bucket: str) -> None:
    """Forget *bucket* and whatever is left in it (out of band, untimed)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    store = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    store.get_bucket(bucket).keys.clear()
    store.delete_bucket(bucket)


def count(endpoint: str, bucket: str) -> int:
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(page.get("KeyCount", 0) for page in pages)


def count_versions(endpoint: str, bucket: str) -> int:
    """Versions and delete markers left in *bucket*."""
    pages = client(endpoint).get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sum(len(page.get("Versions", ())) + len(page.get("DeleteMarkers", ())) for page in pages)
