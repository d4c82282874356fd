"""The built-in ``fs`` backend passes the conformance suite, checked with plain ``os`` calls."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import Backend, Options, Source, Status
from retention_core.testing import BackendConformanceTests
from retention_fs.backend import FilesystemBackend

from .changes import recreate


class TestFilesystemBackend(BackendConformanceTests):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        self.root = tmp_path / "root"
        self.outside = tmp_path / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        with FilesystemBackend(Options({"root": str(self.root)})) as backend:
            yield backend

    def to_location(self, name: str) -> str | None:
        # A file cannot be called "x/": a trailing slash names a directory.
        return None if name.endswith("/") else name

    def seed(self, location: str, created: datetime) -> None:
        path = self.root / location
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"seeded by the conformance suite\n")
        ns = int(created.timestamp()) * 1_000_000_000
        os.utime(path, ns=(ns, ns), follow_symlinks=False)

    def recreate(self, location: str, created: datetime) -> None:
        ns = int(created.timestamp()) * 1_000_000_000
        recreate(self.root / location, ns, b"re-created out of band by the conformance suite\n")

    def modify(self, location: str) -> None:
        # One more byte, then the old mtime back, as `touch -r` would put it.
        path = self.root / location
        st = os.stat(path, follow_symlinks=False)
        with open(path, "ab") as fh:
            fh.write(b"+")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def seed_problem(self, location: str) -> None:
        """A directory that cannot be listed (what chmod 000 does, simulated: tests run as root)."""
        path = self.root / location
        path.mkdir(parents=True)
        (path / "inside").write_bytes(b"never listed\n")
        real = os.scandir

        def scandir(fd: Any) -> Any:
            if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}") == str(path):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(fd)

        self.monkeypatch.setattr(os, "scandir", scandir)

    def exists(self, location: str) -> bool:
        return os.path.lexists(self.root / location)

    def lock(self, location: str) -> None:
        # What fs refuses: a path that became a symlink after the scan (it is never followed).
        path = self.root / location
        target = self.outside / "precious"
        os.replace(path, target)
        os.symlink(target, path)

    def fault(self, location: str) -> None:
        name = os.path.basename(location)
        real_unlink = os.unlink
        tripped = []

        def unlink_failing_once(path: Any, *args: Any, **kwargs: Any) -> None:
            if not tripped and os.fsdecode(path) == name:
                tripped.append(path)
                raise OSError(errno.EIO, "injected I/O error", name)
            real_unlink(path, *args, **kwargs)

        self.monkeypatch.setattr(os, "unlink", unlink_failing_once)

    def test_fault_helper_really_faults(self, backend: Backend, source: Source) -> None:
        """fs does not retry, so the injected fault must surface as ``failed`` (not a no-op)."""
        self.seed("f/one", datetime(2020, 1, 1, tzinfo=timezone.utc))
        [record] = backend.scan(source)
        self.fault("f/one")
        [outcome] = backend.delete([record])
        assert outcome.status is Status.FAILED and "injected" in (outcome.error or "")
        assert self.exists("f/one")
