"""Files under one root, listed and deleted without ever following a symlink.

Like GNU rm and CPython's fd-based rmtree: the root is opened once, every descent is an
``openat`` with ``O_NOFOLLOW | O_DIRECTORY`` relative to the parent's descriptor, no other
filesystem is entered (``st_dev``), and files are unlinked relative to their directory's
descriptor. A path swapped for a symlink between scan and delete cannot lead outside root.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from retention_core import Backend, Options, Outcome, Record, Source, Status

log = logging.getLogger("retention.fs")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """The path is not what was scanned (a symlink, another filesystem): never touched."""


class FilesystemBackend(Backend):
    """Regular files under ``root``; location is the ``/``-separated path relative to root."""

    name = "fs"
    batch_size = 1000
    can_refuse = True

    def __init__(self, options: Options) -> None:
        root: Path = options.path("root")
        options.done()
        if not root.exists():
            raise options.error("root", f"expected an existing directory, found {str(root)!r} (does not exist)")
        if not root.is_dir():
            raise options.error("root", f"expected a directory, found {str(root)!r} (not a directory)")
        if root.resolve() == Path("/"):
            raise options.error("root", "expected a directory below '/', found '/' (refusing the whole system)")
        self.root = root
        self._root_fd: int | None = None
        self._mounts: frozenset[str] = frozenset()
        self._dev = 0

    # -- descriptors ---------------------------------------------------------------------------
    def _open_root(self) -> int:
        if self._root_fd is None:
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            self._dev = os.fstat(self._root_fd).st_dev
        return self._root_fd

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def _open_dir(self, name: str, parent: int) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(f"{name!r} is no longer a directory (a symlink or file took its place)") from None
            raise
        if os.fstat(fd).st_dev != self._dev:
            os.close(fd)
            raise Refused(f"{name!r} is on another filesystem")
        return fd

    # -- scan ------------------------------------------------------------------------------------
    def _mounts_below(self, root: int) -> frozenset[str]:
        """Mount points under root, relative to it. A bind mount of a directory on the same
        filesystem keeps its ``st_dev``, so the device check alone cannot see it."""
        try:
            root_path = os.fsencode(os.readlink(f"/proc/self/fd/{root}"))
            with open("/proc/self/mountinfo", "rb") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return frozenset()
        below = set()
        for line in lines:
            fields = line.split(b" ")
            if len(fields) > 4:
                point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
                if point.startswith(root_path + b"/"):
                    below.add(os.fsdecode(point[len(root_path) + 1:]))
        return frozenset(below)

    def scan(self, source: Source) -> Iterator[Record]:
        root = self._open_root()
        self._mounts = self._mounts_below(root)
        # Without a match pattern every file is of the source's category: set it here, so the
        # core need not build each record a second time to fill it in.
        yield from self._walk(root, "", source.name, source.category if source.match is None else None)

    def _walk(self, dir_fd: int, prefix: str, source: str, category: str | None) -> Iterator[Record]:
        subdirs = []
        try:
            entries = list(os.scandir(dir_fd))
        except OSError as exc:
            log.warning("cannot list %s: %s", prefix or ".", exc.strerror or exc)
            return
        # One lstat per entry (the listing gives no mtime); names bound locally because this
        # loop runs once per file and attribute lookups showed in the profile.
        make, stamp, utc, is_reg = Record, datetime.fromtimestamp, timezone.utc, stat.S_ISREG
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since listing
            except OSError as exc:
                log.warning("cannot stat %s%s: %s", prefix, entry.name, exc.strerror or exc)
                continue
            if is_reg(st.st_mode):
                yield make(source, prefix + entry.name, stamp(st.st_mtime, utc), st.st_size, None, None, category)
            elif stat.S_ISDIR(st.st_mode):
                if st.st_dev != self._dev:
                    log.warning("not entering %s%s: another filesystem", prefix, entry.name)
                elif prefix + entry.name in self._mounts:
                    log.warning("not entering %s%s: a mount point", prefix, entry.name)
                else:
                    subdirs.append(entry.name)
        for name in subdirs:
            try:
                fd = self._open_dir(name, dir_fd)
            except FileNotFoundError:
                continue
            except (OSError, Refused) as exc:
                log.warning("cannot enter %s%s: %s", prefix, name, getattr(exc, "strerror", None) or exc)
                continue
            try:
                yield from self._walk(fd, f"{prefix}{name}/", source, category)
            finally:
                os.close(fd)

    # -- delete ------------------------------------------------------------------------------------
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        root = self._open_root()
        self._mounts = self._mounts_below(root)
        opened: dict[str, int] = {}  # directory path -> fd, for this batch only
        try:
            for record in records:
                yield self._delete_one(record, root, opened)
        finally:
            for fd in opened.values():
                os.close(fd)

    def _directory(self, parts: list[str], root: int, opened: dict[str, int]) -> int:
        fd, path = root, ""
        for part in parts:
            path = f"{path}/{part}"
            if path not in opened:
                if path[1:] in self._mounts:
                    raise Refused(f"{path[1:]!r} is a mount point")
                opened[path] = self._open_dir(part, fd)
            fd = opened[path]
        return fd

    def _delete_one(self, record: Record, root: int, opened: dict[str, int]) -> Outcome:
        parts = record.location.split("/")
        if "" in parts or "." in parts or ".." in parts:
            return Outcome(record, Status.REFUSED, f"unsafe path {record.location!r}")
        try:
            dir_fd = self._directory(parts[:-1], root, opened)
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return Outcome(record, Status.REFUSED, "no longer a regular file (a symlink or directory "
                                                       "took its place); not followed")
            if record.created and abs(st.st_mtime - record.created.timestamp()) > 1e-3:
                return Outcome(record, Status.FAILED, "file was modified since it was scanned; not deleted")
            os.unlink(parts[-1], dir_fd=dir_fd)
            return Outcome(record, Status.DELETED)
        except FileNotFoundError:
            return Outcome(record, Status.ALREADY_GONE)
        except Refused as exc:
            return Outcome(record, Status.REFUSED, str(exc))
        except OSError as exc:
            return Outcome(record, Status.FAILED, f"{exc.strerror or exc}")
