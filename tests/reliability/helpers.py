"""Shared helpers: running the real CLI in a subprocess, the stores under test, reading the trail.

Every store is seeded and inspected *out of band* (plain files, a plain boto3 client, plain
SQLAlchemy) — never through the backend under test, so a backend that misreports cannot
pass. One data layout serves every backend:

========  =====================  ==============================================
subject   subjects.csv           what an uninterrupted run must do
========  =====================  ==============================================
ended*    service ended in 2020  delete (retain 1d after service end)
kid       minor                  delete at once
active    service not ended      keep
held      service ended in 2020  keep: a legal hold in the policy covers it
========  =====================  ==============================================
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from retention_core.audit import records

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER = HERE / "driver.py"
POSTGRES_URL = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")

SUBJECTS_CSV = """subject_id,controller,service_ended_at,minor
ended,ctl-e,2020-01-01,false
ended2,ctl-e,2020-03-01,false
kid,ctl-k,,true
active,ctl-a,,false
held,ctl-h,2020-01-01,false
"""
#: records per subject in the standard layout
LAYOUT = {"ended": 8, "ended2": 8, "kid": 4, "active": 4, "held": 6}
DUE_SUBJECTS = {"ended", "ended2", "kid"}


# -- services --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server_process() -> Iterator[str | None]:
    """``http://127.0.0.1:PORT`` of a moto server subprocess, or None if moto[server] is missing."""
    try:
        import flask  # noqa: F401  (moto[server] needs it)
        import moto.server  # noqa: F401
    except ImportError:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        else:
            yield None
            return
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def postgres_problem(url: str = POSTGRES_URL) -> str | None:
    """None when the database (PostgreSQL unless *url* says otherwise) answers at *url*, else why not."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


# -- running the CLI -----------------------------------------------------------------------------------
def cli_env(**extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELIABILITY_", "RETENTION_TEST_KILL"))}
    env["RETENTION_ACTOR"] = "reliability"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH")]))
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def retention(*args: str, timeout: float = 180, **env: str | None) -> subprocess.CompletedProcess[str]:
    """``retention ARGS`` in a fresh process (through the driver); env values are extra variables."""
    return subprocess.run([sys.executable, str(DRIVER), *args], capture_output=True, text=True,
                          env=cli_env(**env), timeout=timeout)


@dataclass
class Paused:
    """A ``retention`` process paused at a batch boundary by the driver, resumed by :meth:`resume`."""

    proc: subprocess.Popen[str]
    signal: Path
    resume_file: Path

    def wait_paused(self, timeout: float = 120) -> dict[str, Any] | None:
        """The driver's pause info, or None if the process ended without pausing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.signal.exists():
                with contextlib.suppress(json.JSONDecodeError):
                    return dict(json.loads(self.signal.read_text()))
            if self.proc.poll() is not None:
                return None
            time.sleep(0.01)
        raise AssertionError("the run never paused")

    def resume(self, timeout: float = 180) -> tuple[int, str, str]:
        self.resume_file.write_text("go")
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def start_paused(tmp: Path, *args: str, after_batch: int | None = None, before_delete: bool = False,
                 **env: str | None) -> Paused:
    tag = uuid.uuid4().hex[:8]
    signal, resume = tmp / f"paused-{tag}", tmp / f"resume-{tag}"
    extra = {"RELIABILITY_SIGNAL": str(signal), "RELIABILITY_RESUME": str(resume),
             "RELIABILITY_PAUSE_AFTER_BATCH": str(after_batch) if after_batch is not None else None,
             "RELIABILITY_PAUSE_BEFORE_DELETE": "1" if before_delete else None, **env}
    proc = subprocess.Popen([sys.executable, str(DRIVER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(**extra))
    return Paused(proc, signal, resume)


# -- policies ----------------------------------------------------------------------------------------
def write_policy(folder: Path, sources: list[dict[str, Any]], *, state: str | None = None,
                 holds: list[dict[str, Any]] | None = None, subjects_csv: str = SUBJECTS_CSV,
                 categories: Mapping[str, Any] | None = None, limits: Mapping[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subjects.csv").write_text(subjects_csv)
    policy: dict[str, Any] = {
        "version": 1,
        "state": state or "sqlite:///state/state.db",
        "audit": "state/audit.jsonl",
        "subjects": {"source": "csv", "path": "subjects.csv"},
        "categories": dict(categories or {"data": {"retain": "1d", "after": "service_end"}}),
        "sources": sources,
    }
    if holds is None:
        holds = [{"id": "LH-HELD", "kind": "legal", "scope": {"subject": "held"}, "reason": "standing hold"}]
    if holds:
        policy["holds"] = holds
    # No limit unless asked: these runs delete most of a source on purpose (``{}`` = no limit).
    policy["limits"] = dict(limits or {})
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


# -- the trail ---------------------------------------------------------------------------------------
def trail(policy: Path) -> list[dict[str, Any]]:
    path = policy.parent / "state" / "audit.jsonl"
    if not path.exists():
        return []
    return list(records(path))


def journalled_deletions(policy: Path) -> Counter[str]:
    """How many times the trail says each location was deleted (outcome events, recovery included)."""
    return Counter(e["location"] for e in trail(policy)
                   if e.get("event") == "outcome" and e.get("outcome") == "deleted")


def verify_trail(policy: Path) -> bool:
    from retention_core.audit import verify

    return bool(verify(policy.parent / "state" / "audit.jsonl").ok)


# -- stores under test ---------------------------------------------------------------------------------
def layout(counts: Mapping[str, int] = LAYOUT) -> dict[str, str]:
    """location -> subject for the standard layout (``subject/rec-007``)."""
    return {f"{s}/rec-{i:03d}": s for s, n in counts.items() for i in range(n)}


class Store:
    """One source's storage, seeded and inspected out of band."""

    kind = "?"
    #: whether the source uses the set-based path (push-down batches)
    push_down = False

    def source(self) -> dict[str, Any]:
        raise NotImplementedError

    def seed(self, records: Mapping[str, str]) -> None:
        """Create one record per location, owned by the given subject."""
        raise NotImplementedError

    def present(self) -> set[str]:
        raise NotImplementedError

    def location(self, name: str) -> str:
        """How the trail names the record seeded as *name*."""
        return name

    def subject_of(self, location: str) -> str:
        return location.split("/", 1)[0]

    def close(self) -> None:
        pass


class FsStore(Store):
    kind = "fs"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def source(self) -> dict[str, Any]:
        return {"name": "files", "backend": "fs", "options": {"root": str(self.root)},
                "match": r"(?P<subject>[^/]+)/rec-\d+", "category": "data"}

    def seed(self, records: Mapping[str, str]) -> None:
        for location in records:
            path = self.root / location
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"payload of {location}\n")

    def present(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}


class S3Store(Store):
    kind = "s3"

    def __init__(self, endpoint: str, *, versioned: bool = False) -> None:
        self.endpoint = endpoint
        self.client = s3_client(endpoint)
        self.bucket = f"rel-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=self.bucket)
        if versioned:
            self.client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def source(self) -> dict[str, Any]:
        return {"name": "objects", "backend": "s3",
                "options": {"bucket": self.bucket, "endpoint_url": self.endpoint, "concurrency": 1,
                            "max_attempts": 3},
                "match": r"(?P<subject>[^/]+)/rec-\d+", "category": "data"}

    def seed(self, records: Mapping[str, str]) -> None:
        for location in records:
            self.client.put_object(Bucket=self.bucket, Key=location, Body=f"payload of {location}".encode())

    def present(self) -> set[str]:
        out: set[str] = set()
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            out |= {v["Key"] for v in page.get("Versions", ())}
        return out

    def close(self) -> None:
        self.client.close()


@dataclass
class SqlStore(Store):
    """A table of records (PostgreSQL unless *url* names SQLite or MariaDB); per-record path
    (with ``match``) or set-based push-down."""

    url: str
    push_down: bool = False
    kind: str = "sql"
    table_name: str = field(default_factory=lambda: f"rel_{uuid.uuid4().hex[:12]}")
    names: dict[str, str] = field(default_factory=dict)  # location (id as text) -> seeded name

    def __post_init__(self) -> None:
        import sqlalchemy as sa

        self.kind = "sql-pushdown" if self.push_down else "sql"
        self.engine = sa.create_engine(self.url)
        self.table = sa.Table(self.table_name, sa.MetaData(),
                              sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                              sa.Column("subject", sa.String(64)),
                              sa.Column("created", sa.DateTime(timezone=True)),
                              sa.Column("name", sa.String(100)))
        self.table.create(self.engine)

    def source(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "rows", "backend": "sql", "category": "data",
                                "options": {"url": self.url, "table": self.table_name, "key": "id",
                                            "subject": "subject", "created": "created", "batch_size": 4}}
        if not self.url.startswith("postgresql"):
            body["options"]["timezone"] = "UTC"  # SQLite and MariaDB store these timestamps naive
        if not self.push_down:
            body["match"] = r"\d+"  # a match keeps the source on the per-record path
        return body

    def seed(self, records: Mapping[str, str]) -> None:
        import sqlalchemy as sa

        start = len(self.names) + 1
        rows = []
        for n, (name, subject) in enumerate(records.items(), start=start):
            self.names[str(n)] = name
            rows.append({"id": n, "subject": subject, "created": datetime(2021, 1, 1, tzinfo=timezone.utc),
                         "name": name})
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.table), rows)

    def present(self) -> set[str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return {str(i) for i in conn.execute(sa.select(self.table.c.id)).scalars()}

    def location(self, name: str) -> str:
        return next(loc for loc, seeded in self.names.items() if seeded == name)

    def subject_of(self, location: str) -> str:
        return self.names[location].split("/", 1)[0]

    def close(self) -> None:
        self.table.drop(self.engine, checkfirst=True)
        self.engine.dispose()


def subjects_of(store: Store, locations: set[str]) -> Counter[str]:
    return Counter(store.subject_of(loc) for loc in locations)
