"""Out-of-band changes that keep a file's mtime, as ``touch -r``, ``cp -p`` and ``rsync -t`` do.

Each helper makes sure the change is one a guard can see at all: a kernel without
fine-grained timestamps stamps ctime from a clock that moves every few milliseconds, and
ext4 hands a freed inode number to the next file, so a change made within one tick of the
last could leave every field equal. The helpers wait out the tick rather than let a test
pass or fail on timing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: The fields the fs guard compares.
FIELDS = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")


def identity(path: Path) -> tuple[int, ...]:
    st = os.stat(path, follow_symlinks=False)
    return tuple(getattr(st, field) for field in FIELDS)


def _until_different(path: Path, before: tuple[int, ...], change) -> None:
    for _ in range(1000):
        change()
        if identity(path) != before:
            return
        time.sleep(0.001)
    raise AssertionError(f"{path}: the change left device, inode, size, mtime and ctime as they were")


def replace_keeping_mtime(path: Path, data: bytes | None = None) -> None:
    """``cp -p new path`` / rsync: a new file renamed over *path*, with *path*'s mtime."""
    before = identity(path)
    mtime_ns = before[3]
    data = path.read_bytes() if data is None else data
    staged = path.with_name(path.name + ".rsync-tmp")

    def change() -> None:
        staged.write_bytes(data)
        os.utime(staged, ns=(mtime_ns, mtime_ns))
        os.replace(staged, path)

    _until_different(path, before, change)


def modify_in_place(path: Path) -> None:
    """Overwrite *path*'s bytes in place (same size), then put its mtime back (``touch -r``)."""
    before = identity(path)
    mtime_ns = before[3]

    def change() -> None:
        data = path.read_bytes()
        with open(path, "r+b") as fh:
            fh.write(bytes(b ^ 0xFF for b in data))
        os.utime(path, ns=(mtime_ns, mtime_ns))

    _until_different(path, before, change)


def recreate(path: Path, mtime_ns: int | None = None, data: bytes | None = None) -> None:
    """Delete *path* and write a new file there, with the old mtime unless *mtime_ns* is given."""
    before = identity(path)
    mtime_ns = before[3] if mtime_ns is None else mtime_ns
    data = path.read_bytes() if data is None else data

    def change() -> None:
        path.unlink()
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    _until_different(path, before, change)
