"""Fixtures of the distributed tests: a shared 2-worker LocalCluster per module, a PostgreSQL
state schema of each test's own (helpers and tests run at once), a moto server.

Workers are separate processes: they read the policy from disk, the state store from
PostgreSQL and S3 from the moto server, exactly as on a real cluster."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core.testing import require_service
from tests.support import reachable

POSTGRES = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: What the worker processes inherit: fake AWS keys, never real AWS.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def postgres_up() -> bool:
    return reachable(POSTGRES)


@pytest.fixture
def pg_state() -> Iterator[str]:
    """A state store URL on a PostgreSQL schema of this test's own, dropped afterwards."""
    require_service(postgres_up(), "PostgreSQL at " + POSTGRES)
    schema = f"dist_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(POSTGRES)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


def start_cluster(workers: int = 2, env: dict[str, str] | None = None) -> Any:
    """A DaskExecutor on a LocalCluster of *workers* processes that inherit *env* (and fake AWS)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        require_service(False, "dask distributed (pip install 'retention[dask]')")
    from retention_core.executors import DaskExecutor

    return DaskExecutor(workers=workers, env={**FAKE_AWS, **(env or {})})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One 2-worker LocalCluster (processes) for the whole module: starting one costs seconds."""
    executor = start_cluster()
    try:
        yield executor
    finally:
        executor.close()


@pytest.fixture(scope="module")
def dying_cluster() -> Iterator[Any]:
    """Two workers that SIGKILL themselves at the 3rd record a deletion batch reports (and so
    do the workers their nannies restart): ``RETENTION_TEST_KILL_AT`` in their environment."""
    executor = start_cluster(env={"RETENTION_TEST_KILL_AT": "mid-batch:3"})
    try:
        yield executor
    finally:
        executor.close()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require_service(False, "moto server (pip install 'moto[server]')")
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
