"""Item 8 — a record changed between the scan and its deletion is never deleted (issue 15 #1, #6).

A real ``retention run`` is paused by the driver after its scan, decision and intent, right
before the first backend call (inside the batch's hold fence). While it waits, the test
changes records of that very batch out of band, the way a busy application would:

* fs: a file replaced by a new one with the old mtime restored to the nanosecond (``cp -p``,
  ``touch -r``, rsync), a file rewritten in place at the same size and mtime, a file grown
  with its mtime restored;
* S3 (moto server): an object overwritten with new bytes, in a plain and a versioned bucket
  (there the version the scan saw is deleted, journalled ``deleted``, and the new one stays);
* per-record SQL (SQLite, PostgreSQL, MariaDB): a key deleted and re-inserted (created now),
  a row whose ``created`` moved to today, a row moved to the subject under a legal hold.

One record of the batch is left alone as the control. The run resumes; every changed record
must still be in storage with its new content, journalled ``changed``; the control must be
deleted. A changed record deleted is a violation (must be 0).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from .helpers import FsStore, S3Store, SqlStore, Store, layout, start_paused, trail, verify_trail, write_policy

BATCH = "4"


def outcomes(policy: Path) -> dict[str, str]:
    """The last outcome the trail gives each location."""
    return {str(e["location"]): str(e["outcome"]) for e in trail(policy) if e.get("event") == "outcome"}


# -- the mutations, per backend: each returns a check that the changed record is still the new one ----
Check = Callable[[], bool]


def fs_mutations(store: FsStore, rng: random.Random) -> list[Callable[[str], Check]]:
    def recreate(location: str) -> Check:
        path = store.root / location
        st = os.stat(path)
        new = path.read_bytes().upper()  # same size, other bytes
        path.unlink()
        path.write_bytes(new)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return lambda: path.exists() and path.read_bytes() == new

    def rewrite_in_place(location: str) -> Check:
        path = store.root / location
        st = os.stat(path)
        new = path.read_bytes()[::-1]
        with open(path, "r+b") as fh:
            fh.write(new)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return lambda: path.exists() and path.read_bytes() == new

    def grow(location: str) -> Check:
        path = store.root / location
        st = os.stat(path)
        with open(path, "ab") as fh:
            fh.write(b"appended by the application\n")
        new = path.read_bytes()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return lambda: path.exists() and path.read_bytes() == new

    return [recreate, rewrite_in_place, grow]


def s3_mutations(store: S3Store, rng: random.Random) -> list[Callable[[str], Check]]:
    def overwrite(location: str) -> Check:
        body = f"rewritten {location} {rng.random()}".encode()
        store.client.put_object(Bucket=store.bucket, Key=location, Body=body)

        def still() -> bool:
            try:
                return bool(store.client.get_object(Bucket=store.bucket, Key=location)["Body"].read() == body)
            except store.client.exceptions.NoSuchKey:
                return False
        return still

    return [overwrite, overwrite]


def sql_mutations(store: SqlStore, rng: random.Random) -> list[Callable[[str], Check]]:
    import sqlalchemy as sa

    table = store.table
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def _row(location: str) -> dict[str, Any] | None:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == int(location))).first()
        return None if row is None else dict(row._mapping)

    def reinsert(location: str) -> Check:
        old = _row(location)
        assert old is not None
        with store.engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.id == int(location)))
            conn.execute(sa.insert(table), [{**old, "created": now, "name": "re-inserted"}])
        return lambda: (_row(location) or {}).get("name") == "re-inserted"

    def created_today(location: str) -> Check:
        with store.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.id == int(location)).values(created=now, name="touched"))
        return lambda: (_row(location) or {}).get("name") == "touched"

    def to_held_subject(location: str) -> Check:
        with store.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.id == int(location)).values(subject="held", name="moved"))
        return lambda: (_row(location) or {}).get("name") == "moved"

    return [reinsert, created_today, to_held_subject]


MUTATIONS: dict[str, Callable[[Any, random.Random], list[Callable[[str], Check]]]] = {
    "fs": fs_mutations, "s3": s3_mutations, "s3-versioned": s3_mutations,
    "sql-sqlite": sql_mutations, "sql-postgres": sql_mutations, "sql-mariadb": sql_mutations}


def make(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "fs":
        return FsStore(tmp_path / "data")
    if kind.startswith("s3"):
        return S3Store(request.getfixturevalue("moto_endpoint"), versioned=kind == "s3-versioned")
    url = {"sql-sqlite": lambda: f"sqlite:///{tmp_path / 'records.db'}",
           "sql-postgres": lambda: request.getfixturevalue("postgres_url"),
           "sql-mariadb": lambda: request.getfixturevalue("mariadb_url")}[kind]()
    return SqlStore(url)


def changed_trial(kind: str, trial: int, request: pytest.FixtureRequest, tmp_path: Path, figures) -> None:
    rng = random.Random(f"changed-{kind}-{trial}")
    store = make(kind, request, tmp_path)
    try:
        store.seed(layout())
        policy = write_policy(tmp_path / "cfg", [store.source()])
        run = start_paused(tmp_path, "run", "-c", str(policy), before_delete=True, RELIABILITY_BATCH_SIZE=BATCH)
        paused = run.wait_paused()
        if paused is None:
            code, _, err = run.resume()
            raise AssertionError(f"the run ended (exit {code}) before its first deletion: {err}")
        batch = list(paused["records"])
        assert len(batch) >= 2, f"a batch of {len(batch)} cannot hold a change and a control"
        rng.shuffle(batch)
        control, targets = batch[0], batch[1:]
        mutations = MUTATIONS[kind](store, rng)
        checks: dict[str, Check] = {}
        try:
            for n, location in enumerate(targets):
                checks[location] = mutations[(n + trial) % len(mutations)](location)
        finally:
            code, _, err = run.resume()
        lost = sorted(loc for loc, still in checks.items() if not still())
        said = outcomes(policy)
        figures["changed_trials"] += 1
        figures[f"changed_trials[{kind}]"] += 1
        figures["changed_records"] += len(checks)
        figures["changed_deleted"] += len(lost)
        assert code in (0, 1), err
        assert "Traceback" not in err and "internal error" not in err, err
        assert not lost, f"changed after the scan, deleted anyway: {lost}"
        # A versioned bucket deletes the very version the scan saw (a version is immutable): the
        # new write is another version and stays. Everywhere else the record is kept as changed.
        expected = "deleted" if kind == "s3-versioned" else "changed"
        assert {loc: said.get(loc) for loc in checks} == {loc: expected for loc in checks}, said
        assert said.get(control) == "deleted" and control not in store.present(), \
            f"the unchanged control {control!r} was not deleted: {said.get(control)}"
        assert verify_trail(policy)
    finally:
        store.close()


KINDS = [pytest.param("fs", id="fs"),
         pytest.param("s3", id="s3", marks=pytest.mark.moto_server),
         pytest.param("s3-versioned", id="s3-versioned", marks=pytest.mark.moto_server),
         pytest.param("sql-sqlite", id="sql-sqlite"),
         pytest.param("sql-postgres", id="sql-postgres", marks=pytest.mark.postgres),
         pytest.param("sql-mariadb", id="sql-mariadb", marks=pytest.mark.mariadb)]
SLOW_TRIALS = 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_changed_after_the_scan_is_kept_and_reported(kind, request, tmp_path, figures):
    changed_trial(kind, 0, request, tmp_path, figures)


def _trials() -> list[object]:
    return [pytest.param(p.values[0], n, marks=[*p.marks, pytest.mark.slow], id=f"{p.id}-{n}")
            for p in KINDS for n in range(1, SLOW_TRIALS + 1)]


@pytest.mark.parametrize(("kind", "trial"), _trials())
def test_changes_after_the_scan_repeated(kind, trial, request, tmp_path, figures):
    changed_trial(kind, trial, request, tmp_path, figures)
