"""Places to build test trees, and removing them without recursion (trees here are 1,000 deep).

This Python's ``shutil.rmtree`` and ``os.walk`` recurse once per level, and fail on the deep
trees the walk tests build before the backend under test is even involved.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def remove_tree(top: str | Path) -> None:
    """``rm -rf top``, level by level, with ``os.listdir`` (tests may have patched ``os.scandir``)."""
    pending, directories = [os.fspath(top)], []
    while pending:
        directory = pending.pop()
        directories.append(directory)
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if stat.S_ISDIR(os.lstat(path).st_mode):
                pending.append(path)
            else:
                os.unlink(path)
    for directory in reversed(directories):
        os.rmdir(directory)


@contextlib.contextmanager
def tmpfs_root() -> Iterator[Path]:
    """A root on tmpfs, which stores any 64-bit mtime (ext4 stops at year 2446)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm (tmpfs) on this machine")
    path = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        yield path
    finally:
        remove_tree(path)
