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


#: The fs backend's batch size (plugins/retention_fs/backend.py ``FilesystemBackend.batch_size``):
#: the guarded floor journals and fsyncs per batch of this many records, as ours does.
FS_BATCH = 5000


def guarded_floor(root: str, cutoff: str, journal: str, batch: str = str(FS_BATCH)) -> int:
    """The least a Python program must do to delete as retention promises to (issue 16's fs
    floor); print how many files it deleted.

    - scan: ``os.scandir`` with one ``lstat`` per entry; each due file's name and stamp (device,
      inode, size, mtime_ns, ctime_ns) are kept on disk, not in memory: one ``marshal`` chunk
      per directory appended to a temporary file next to *journal*;
    - per batch of *batch* records read back from it: one intent line naming every record
      (hash-chained: SHA-256 of the previous line's hash and this line), written and fsynced;
    - per file: ``fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW)``, the five numbers compared with
      the scan's, then ``unlinkat`` — the guard;
    - the outcome line, one status per record (``d`` deleted, ``c`` changed or not a regular
      file, ``g`` already gone, ``f`` failed), hash-chained, written and fsynced.

    Not done (so it is a floor, not a rival): names are not escaped (no tab or newline in the
    bench's trees), no hold fence, no state store, no safety limits, no descriptor-only walk.
    Written the fastest way found: tuples, one ``marshal`` write per directory, one ``write``
    per journal line, names bound locally.
    """
    import hashlib
    import marshal
    import stat as st_mod
    import struct
    import tempfile

    limit, size = float(cutoff), int(batch)
    is_reg, is_dir = st_mod.S_ISREG, st_mod.S_ISDIR
    base = os.path.dirname(os.path.abspath(journal))
    dumps, loads, pack, unpack = marshal.dumps, marshal.loads, struct.pack, struct.unpack
    with tempfile.TemporaryFile(dir=base) as spool:
        # The scan: one lstat per entry; a directory's due files are one chunk on disk.
        stack = [""]
        prefix_root = root.rstrip("/") + "/"
        while stack:
            rel = stack.pop()
            due = []
            with os.scandir(prefix_root + rel if rel else root) as it:
                for entry in it:
                    s = entry.stat(follow_symlinks=False)
                    mode = s.st_mode
                    if is_reg(mode):
                        if s.st_mtime < limit:
                            due.append((entry.name, (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)))
                    elif is_dir(mode):
                        stack.append(rel + entry.name + "/" if rel else entry.name + "/")
            if due:  # length-prefixed: marshal.load on a file reads it in many small calls
                chunk = dumps((rel, due))
                spool.write(pack("<I", len(chunk)) + chunk)
        spool.seek(0)

        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        out = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        stat_at, unlink, open_, close, write, fsync = os.stat, os.unlink, os.open, os.close, os.write, os.fsync
        dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        sha = hashlib.sha256
        head = b"0" * 64
        deleted = 0
        number = 0

        def line(kind: str, body: str) -> None:
            nonlocal head
            text = f"{kind}\t{number}\t{body}".encode("utf-8", "surrogateescape")
            head = sha(head + text).hexdigest().encode("ascii")
            write(out, text + b"\t" + head + b"\n")
            fsync(out)

        def run(groups: list[tuple[str, list[tuple[str, tuple[int, ...]]]]]) -> None:
            nonlocal deleted
            line("intent", "\t".join([rel + name for rel, rows in groups for name, _ in rows]))
            statuses = []
            add = statuses.append
            for rel, rows in groups:
                try:
                    fd = open_(rel, dir_flags, dir_fd=root_fd) if rel else root_fd
                except FileNotFoundError:
                    statuses.extend("g" * len(rows))
                    continue
                try:
                    for name, seen in rows:
                        try:
                            s = stat_at(name, dir_fd=fd, follow_symlinks=False)
                            if is_reg(s.st_mode) and (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns,
                                                      s.st_ctime_ns) == seen:
                                unlink(name, dir_fd=fd)
                                add("d")
                            else:
                                add("c")
                        except FileNotFoundError:
                            add("g")
                        except OSError:
                            add("f")
                finally:
                    if fd != root_fd:
                        close(fd)
            done = "".join(statuses)
            deleted += done.count("d")
            line("outcome", done)

        try:
            groups: list[tuple[str, list[tuple[str, tuple[int, ...]]]]] = []
            held = 0
            while True:
                length = spool.read(4)
                if not length:
                    break
                rel, rows = loads(spool.read(unpack("<I", length)[0]))
                while rows:
                    take = rows[:size - held]
                    rows = rows[size - held:]
                    groups.append((rel, take))
                    held += len(take)
                    if held == size:
                        number += 1
                        run(groups)
                        groups, held = [], 0
            if groups:
                number += 1
                run(groups)
        finally:
            os.close(out)
            os.close(root_fd)
    print(deleted)
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
            "scandir-unlink": scandir_unlink, "scandir-stat": scandir_stat, "guarded-floor": guarded_floor,
            "boto3-list": boto3_list, "boto3-delete": boto3_delete,
            "boto3-delete-versions": boto3_delete_versions}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m bench.peers {{{'|'.join(COMMANDS)}}} ARGS…", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
