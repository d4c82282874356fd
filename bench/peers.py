"""Hand-written Python peers, run as their own processes: ``python -m bench.peers NAME ARGS``.

Each is the obvious few lines a person would write instead of adopting a tool, done well.
"""

from __future__ import annotations

import os
import sys


def scandir_unlink(root: str, cutoff: str) -> int:
    """Delete regular files under *root* whose mtime is before *cutoff*; print how many."""
    limit = float(cutoff)
    deleted = 0
    stack = [root]
    while stack:
        path = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)
                    deleted += 1
    print(deleted)
    return 0


def scandir_stat(root: str, cutoff: str) -> int:
    """Count regular files under *root* whose mtime is before *cutoff*: the least a dry run in
    Python must do (one ``lstat`` per entry through ``os.scandir``), no decisions, no records."""
    limit = float(cutoff)
    due = 0
    stack = [root]
    while stack:
        path = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and st.st_mtime < limit:
                    due += 1
    print(due)
    return 0


def _s3(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"mode": "standard"}))


def boto3_list(endpoint: str, bucket: str, prefix: str) -> int:
    """list_objects_v2 through the paginator; print how many keys."""
    pages = _s3(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    print(sum(len(page.get("Contents", ())) for page in pages))
    return 0


def boto3_delete(endpoint: str, bucket: str, prefix: str) -> int:
    """List, then DeleteObjects in chunks of 1000 keys, one after another; print how many."""
    s3 = _s3(endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [{"Key": o["Key"]} for page in pages for o in page.get("Contents", ())]
    for i in range(0, len(keys), 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
        if answer.get("Errors"):
            print(f"{len(answer['Errors'])} keys not deleted: {answer['Errors'][0]}", file=sys.stderr)
            return 1
    print(len(keys))
    return 0


def boto3_delete_versions(endpoint: str, bucket: str, prefix: str) -> int:
    """list_object_versions, then DeleteObjects by VersionId in chunks of 1000, one after
    another (delete markers too, so the keys vanish); print how many versions."""
    s3 = _s3(endpoint)
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
             for page in pages for v in (*page.get("Versions", ()), *page.get("DeleteMarkers", ()))]
    for i in range(0, len(items), 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": items[i:i + 1000], "Quiet": True})
        if answer.get("Errors"):
            print(f"{len(answer['Errors'])} versions not deleted: {answer['Errors'][0]}", file=sys.stderr)
            return 1
    print(len(items))
    return 0


def _cutoff(url: str, days: str):  # type: ignore[no-untyped-def]
    """now - *days*, in the form the column compares with (naive UTC where columns are naive)."""
    from datetime import datetime, timedelta, timezone

    cutoff = datetime.now(timezone.utc) - timedelta(days=float(days))
    if url.startswith("sqlite"):
        return cutoff.strftime("%Y-%m-%d %H:%M:%S")
    return cutoff if url.startswith("postgresql") else cutoff.replace(tzinfo=None)


#: The SQL workload's held tenants (1% of rows): every SQL peer keeps their rows, as ours does.
SQL_HELD = tuple(f"t{i}" for i in range(0, 1000, 100))
_NOT_HELD = f"tenant NOT IN ({', '.join(repr(t) for t in SQL_HELD)})"


def sql_single(url: str, table: str, days: str) -> int:
    """One ``DELETE … WHERE created < cutoff`` (held tenants excluded) in one transaction; print the row count."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE created < :cutoff AND {_NOT_HELD}"),
                               {"cutoff": _cutoff(url, days)}).rowcount
    print(deleted)
    return 0


def sql_returning(url: str, table: str, days: str, evidence: str) -> int:
    """One ``DELETE … RETURNING id, created``, every deleted row written to *evidence* and
    fsynced before the commit; print the row count.

    The least any deletion that names what it deleted must do (the evidence floor): the raw
    DELETE plus carrying each row to the client and onto disk.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn, open(evidence, "w", encoding="utf-8") as out:
        rows = conn.execute(sa.text(f"DELETE FROM {table} WHERE created < :cutoff AND {_NOT_HELD} "
                                    "RETURNING id, created"),
                            {"cutoff": _cutoff(url, days)}).all()
        out.writelines(f"{key}\t{created}\n" for key, created in rows)
        out.flush()
        os.fsync(out.fileno())
    print(len(rows))
    return 0


def sql_copy(url: str, table: str, days: str, evidence: str) -> int:
    """PostgreSQL: ``COPY (DELETE … RETURNING id, created) TO STDOUT`` streamed as bytes into
    *evidence*, fsynced before the commit; print the row count. The streamed evidence floor:
    the rows never become Python objects (issue 16)."""
    import psycopg

    cutoff = _cutoff(url, days)
    rows = 0
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, \
            open(evidence, "wb") as out:
        with conn.cursor() as cur, cur.copy(f"COPY (DELETE FROM {table} WHERE created < %s AND {_NOT_HELD} "
                                            "RETURNING id, created) TO STDOUT", (cutoff,)) as copy:
            for block in copy:
                out.write(block)
                rows += 1  # one row per COPY data message
        out.flush()
        os.fsync(out.fileno())
        conn.commit()
    print(rows)
    return 0


def sql_batched(url: str, table: str, days: str) -> int:
    """Nibbling: 10,000 rows per transaction until none is left; print the row count."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    cutoff = _cutoff(url, days)
    if url.startswith("mysql"):
        sql = f"DELETE FROM {table} WHERE created < :cutoff AND {_NOT_HELD} LIMIT 10000"
    else:
        sql = (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE created < :cutoff AND {_NOT_HELD} "
               "LIMIT 10000)")
    deleted = 0
    while True:
        with engine.begin() as conn:
            got = conn.execute(sa.text(sql), {"cutoff": cutoff}).rowcount
        deleted += got
        if got == 0:
            break
    print(deleted)
    return 0


COMMANDS = {"sql-single": sql_single, "sql-returning": sql_returning, "sql-batched": sql_batched, "sql-copy": sql_copy,
            "scandir-unlink": scandir_unlink, "scandir-stat": scandir_stat, "boto3-list": boto3_list,
            "boto3-delete": boto3_delete,
            "boto3-delete-versions": boto3_delete_versions}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m bench.peers {{{'|'.join(COMMANDS)}}} ARGS…", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
