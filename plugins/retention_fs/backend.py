"""Files under one root, listed and deleted without ever following a symlink.

Like GNU rm and CPython's fd-based rmtree: the root is opened once, every descent is an
``openat`` with ``O_NOFOLLOW | O_DIRECTORY`` relative to the parent's descriptor, no other
filesystem is entered (``st_dev``), and files are unlinked relative to their directory's
descriptor. A path swapped for a symlink between scan and delete cannot lead outside root.

A file is deleted only if it is still the file the scan saw: the scan stamps each record
with the file's device, inode, size, mtime and ctime (nanoseconds), and the deletion stats
the file without following it (``fstatat`` with ``AT_SYMLINK_NOFOLLOW`` relative to the
directory's descriptor), compares the five and only then unlinks it (docs/fs.md).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from retention_core import Backend, BackendError, Options, Outcome, Partition, Problem, Record, Source, Status, Tally
from retention_core.text import printable

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Directory descriptors one walk keeps open at most; deeper trees reopen from an ancestor.
OPEN_DIRS = 64


class Refused(Exception):
    """The path is not what was scanned (a symlink, another filesystem): never touched."""


class Replaced(Exception):
    """A directory opened again (see :class:`_Dirs`) is not the one first opened there."""


class Stamp(NamedTuple):
    """What the scan saw of a file: enough to tell it from any file that took its place.

    The inode alone is not enough (ext4 often gives a freed inode number to the next file),
    nor is the mtime (``touch -r``, ``cp -p`` and ``rsync -t`` copy it): a replacement gets
    a new ctime, which no unprivileged call can set, and a write in place changes it too.
    ``scan`` writes the same five numbers, ``:``-separated, into ``Record.stamp``.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @classmethod
    def parse(cls, text: str | None) -> Stamp | None:
        """The stamp a scan wrote into ``Record.stamp``; ``None`` if absent or unreadable."""
        try:
            return cls(*map(int, text.split(":"))) if text else None
        except (TypeError, ValueError):
            return None

    def differences(self, now: Stamp) -> list[str]:
        """Each field that differs, as ``name seen → now``."""
        return [f"{name} {was} → {is_}" for name, was, is_ in zip(self._fields, self, now, strict=True) if was != is_]


class FilesystemBackend(Backend):
    """Regular files under ``root``; location is the ``/``-separated path relative to root.

    ``can_anonymize`` stays false: a file has no fields to strip, only bytes to delete.
    """

    name = "fs"
    #: Each batch costs a fixed amount whatever its size — the hold fence's registration and
    #: release, holds re-read, the intent and outcome lines fsynced, the trail head recorded:
    #: about ten fsyncs. At 1,000 files that fixed part was a third of an enforcing run's wall
    #: time (200,000 files, ``strace -c``: 1,284 fdatasync + 322 journal unlinks ≈ 3.4 s of
    #: 14 s). 5,000 files take a fraction of a second to delete, so a hold placed meanwhile
    #: still waits only that long for the batch in flight.
    batch_size = 5000
    can_refuse = True
    #: A dry run counts a source without ``match`` in :meth:`tally`, not Record by Record.
    can_tally = True

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
        self._dev = 0

    def territory(self, source: Source) -> str:
        """The root as the file system knows it: its device and its path inside the mounted
        file system, so a root reached through a bind mount or a symlink is the same root, and a
        root inside another source's lists the same files."""
        resolved = os.fsencode(self.root.resolve())
        mount = _mount_of(resolved)
        if mount is None:
            return os.fsdecode(resolved).rstrip("/") + "/"
        device, mount_root, point = mount
        inside = mount_root.rstrip(b"/") + resolved[len(point.rstrip(b"/")):]
        return f"dev {device} " + os.fsdecode(inside).rstrip("/") + "/"

    def address(self, source: Source, given: str) -> str | None:
        """An absolute path under the root, relative to it (the path's directory resolved like
        the root; the last part is not followed: a symlink is listed as itself)."""
        if not os.path.isabs(given):
            return None
        root = os.path.realpath(self.root).rstrip("/") + "/"
        plain = os.path.abspath(given)
        resolved = os.path.join(os.path.realpath(os.path.dirname(plain)), os.path.basename(plain))
        for candidate in (plain, resolved):
            if candidate.startswith(root) and len(candidate) > len(root):
                return candidate[len(root):]
        return None

    def present(self, source: Source, location: str, version: str | None = None) -> bool:
        return os.path.lexists(os.path.join(self.root, location))

    def fingerprint(self, source: Source) -> str:
        """The root and its device and inode: an unmounted volume's empty mount point, or another
        directory put in the root's place, is not the storage an earlier intent was made in."""
        info = os.stat(self.root)
        return f"{self.territory(source)} dev={info.st_dev} ino={info.st_ino}"

    # -- descriptors ---------------------------------------------------------------------------
    def _open_root(self) -> int:
        if self._root_fd is None:
            try:
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
            except OSError as exc:
                raise BackendError(f"cannot open root {str(self.root)!r}: {exc.strerror or exc}") from None
            self._dev = os.fstat(self._root_fd).st_dev
        return self._root_fd

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def _dirs(self) -> _Dirs:
        root = self._open_root()
        return _Dirs(root, self._dev, _mounts_below(root))

    # -- scan ------------------------------------------------------------------------------------
    def scan(self, source: Source) -> Iterator[Record | Problem]:  # type: ignore[override]
        """Yield every regular file below root, and a Problem for whatever cannot be listed.

        The walk is depth-first with an explicit stack, so depth costs memory, not recursion.
        Only the root being unlistable raises: then nothing of the source was seen.
        """
        dirs = self._dirs()
        try:
            listing = self._read_root(dirs)
            yield from self._walk(listing, [], "", dirs, source)
        finally:
            dirs.close()

    def tally(self, source: Source, cutoff: datetime, on_problem: Callable[[Problem], None]) -> Tally:
        """Count what :meth:`scan` lists, and what of it is due at *cutoff*, on the scan's own
        walk: the same entries, the same Problems, one ``lstat`` each — but no Record, stamp
        or date per file (a dry run without report items of a plain source)."""
        counts = _Counts(cutoff)
        dirs = self._dirs()
        try:
            listing = self._read_root(dirs)
            for problem in self._walk(listing, [], "", dirs, source, counts):
                on_problem(problem)  # type: ignore[arg-type]  # counting, the walk yields only Problems
        finally:
            dirs.close()
        return Tally(counts.total, counts.due)

    def partitions(self, source: Source) -> list[Partition]:
        """One partition for the files directly in root (with the root listing's problems: a
        mount boundary, an entry that cannot be stat'ed), then one per top-level directory.

        Tokens: ``"."`` for root's own files, ``"d/" + name`` for a top-level directory. A name
        that is not UTF-8 stays in the token as Python keeps it (surrogate escapes), which JSON
        carries as ``\\udcXX`` escapes."""
        dirs = self._dirs()
        try:
            entries, _ = self._read_root(dirs)
            names = []
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # the root partition reports it
                if stat.S_ISDIR(st.st_mode) and st.st_dev == dirs.dev and entry.name not in dirs.mounts:
                    names.append(entry.name)
        finally:
            dirs.close()
        return [Partition(source.name, ".", "files directly in the root"),
                *(Partition(source.name, "d/" + name, f"directory {printable(name)}/") for name in sorted(names))]

    def scan_partition(self, source: Source, partition: Partition) -> Iterator[Record | Problem]:
        """Yield one partition's records: root's own files, or everything below one top-level
        directory (walked exactly as :meth:`scan` walks it)."""
        if partition.token == "":
            return self.scan(source)
        if partition.token != "." and not partition.token.startswith("d/"):
            raise ValueError(f"not a partition of fs source {source.name!r}: {partition.token!r}")
        return self._scan_part(source, partition.token)

    def _scan_part(self, source: Source, token: str) -> Iterator[Record | Problem]:
        dirs = self._dirs()
        try:
            listing = self._read_root(dirs)
            if token == ".":
                # root's files and problems only; its subdirectories are the other partitions
                yield from self._listing(listing, "", dirs, source.name, self._category(source))
                return
            name = token[2:]
            listing = yield from self._open_listing([name], f"{name}/", dirs, source.name)
            yield from self._walk(listing, [name], f"{name}/", dirs, source)
        finally:
            dirs.close()

    @staticmethod
    def _category(source: Source) -> str | None:
        # Without a match pattern every file is of the source's category: set it here, so the
        # core need not build each record a second time to fill it in.
        return source.category if source.match is None else None

    def _read_root(self, dirs: _Dirs) -> _Listing:
        try:
            return _read(os.scandir(dirs.root))
        except OSError as exc:
            raise BackendError(f"cannot list root {str(self.root)!r}: {exc.strerror or exc}") from None

    def _walk(self, listing: _Listing, parts: list[str], prefix: str, dirs: _Dirs,
              source: Source, counts: _Counts | None = None) -> Iterator[Record | Problem]:
        """Yield the files of the directory at *parts* (already read: *listing*) and of every
        directory below it, depth-first."""
        category = self._category(source)
        # Each listed directory with subdirectories: its path as names and as a prefix
        # of locations ("a/b/"), and the subdirectories not walked yet.
        stack: list[tuple[list[str], str, Iterator[str]]] = []
        while True:
            subdirs = yield from self._listing(listing, prefix, dirs, source.name, category, counts)
            if subdirs:
                stack.append((parts, prefix, iter(subdirs)))
            while stack:
                parent, parent_prefix, todo = stack[-1]
                name = next(todo, None)
                if name is not None:
                    parts, prefix = [*parent, name], f"{parent_prefix}{name}/"
                    break
                stack.pop()
            else:
                return
            listing = yield from self._open_listing(parts, prefix, dirs, source.name)

    def _open_listing(self, parts: list[str], prefix: str, dirs: _Dirs,
                      source: str) -> Generator[Problem, None, _Listing]:
        """Read the directory at *parts*; a Problem and no entries if it cannot be."""
        where = prefix[:-1]
        try:
            return _read(os.scandir(dirs.fd(parts)))
        except FileNotFoundError:
            pass  # removed since its parent was listed: nothing left to see
        except (Refused, Replaced) as exc:
            yield Problem(source, where, f"directory not listed: {exc}")
        except OSError as exc:
            yield Problem(source, where, f"directory not listed: {exc.strerror or exc}")
        return [], None

    def _listing(self, listing: _Listing, prefix: str, dirs: _Dirs, source: str,
                 category: str | None, counts: _Counts | None = None
                 ) -> Generator[Record | Problem, None, list[str]]:
        """Yield the directory's files (or their Problems); return its subdirectories to walk.

        One ``lstat`` per entry: the listing gives no mtime. Names are bound locally because
        this loop runs once per file. With *counts* (:meth:`tally`) files are counted into it,
        not yielded: only Problems are.
        """
        entries, error = listing
        subdirs: list[str] = []
        make, from_ts, utc, is_reg, is_dir = Record, datetime.fromtimestamp, timezone.utc, stat.S_ISREG, stat.S_ISDIR
        dev, mounts = dirs.dev, dirs.mounts
        total = due = 0
        if counts is not None:
            cutoff, first, due_below, keep_above, last = counts.bounds
        for entry in entries:
            location = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
                if is_reg(st.st_mode):
                    if counts is None:
                        created = from_ts(st.st_mtime, utc)
                        yield make(source, location, created, st.st_size, None, None, category,
                                   f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
                    else:
                        mtime = st.st_mtime
                        if first < mtime < due_below:
                            due += 1
                        elif not keep_above < mtime < last:  # near the cutoff or the calendar's ends:
                            due += from_ts(mtime, utc) <= cutoff  # compared as the scan's created is
                        total += 1
                elif is_dir(st.st_mode):
                    if st.st_dev != dev:
                        yield Problem(source, location, "mount boundary: not listed (another filesystem)")
                    elif location in mounts:
                        yield Problem(source, location, "mount boundary: not listed (a mount point)")
                    else:
                        subdirs.append(entry.name)
            except FileNotFoundError:
                continue  # vanished since listing
            except OSError as exc:
                yield Problem(source, location, f"cannot stat: {exc.strerror or exc}")
            except (OverflowError, ValueError):
                yield Problem(source, location, f"modification time {st.st_mtime_ns} ns from 1970 is outside "
                                                "the dates this tool can hold (years 1 to 9999); not listed")
        if error is not None:
            yield Problem(source, prefix[:-1] or ".", f"directory listed only in part: {error.strerror or error}")
        if counts is not None:
            counts.total += total
            counts.due += due
        return subdirs

    # -- delete ------------------------------------------------------------------------------------
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        """Unlink each file only if it is still what the scan stamped (the guard, docs/fs.md).

        Per file: ``fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW)``, compare, ``unlinkat`` — the
        two last system calls with nothing in between. Consecutive records in one directory
        share its descriptor (the spool hands them over in scan order). This loop runs once per
        deleted file, so it is written out in one function with its names bound locally.
        """
        dirs = self._dirs()
        stat_at, unlink, is_reg = os.stat, os.unlink, stat.S_ISREG
        deleted, gone = Status.DELETED, Status.ALREADY_GONE
        last_dir: str | None = None
        dir_fd = -1
        try:
            for record in records:
                location = record.location
                parts = location.split("/")
                if "" in parts or "." in parts or ".." in parts:
                    yield Outcome(record, Status.REFUSED, f"unsafe path {location!r}")
                    continue
                name = parts[-1]
                parent = location[:len(location) - len(name)]
                if parent != last_dir:
                    last_dir = None
                    try:
                        dir_fd = dirs.fd(parts[:-1])
                    except FileNotFoundError:
                        yield Outcome(record, gone)
                        continue
                    except Refused as exc:
                        yield Outcome(record, Status.REFUSED, str(exc))
                        continue
                    except Replaced as exc:
                        yield Outcome(record, Status.CHANGED, f"{exc}; not deleted")
                        continue
                    except OSError as exc:
                        yield Outcome(record, Status.FAILED, f"{exc.strerror or exc}")
                        continue
                    last_dir = parent
                seen = record.stamp  # read before the check: nothing between it and the unlink
                try:
                    st = stat_at(name, dir_fd=dir_fd, follow_symlinks=False)
                    if not is_reg(st.st_mode):
                        yield Outcome(record, Status.REFUSED, "no longer a regular file (a symlink, directory or "
                                                              "special file took its place); not followed")
                        continue
                    # The five numbers written as the scan writes them and compared with its text:
                    # equal text, equal numbers. Any other text (unreadable, or spelled otherwise) is
                    # parsed and compared as numbers. Formatting once cost less than parsing.
                    if f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" != seen:
                        parsed = _parse_stamp(seen)
                        if parsed is None:
                            yield Outcome(record, Status.CHANGED, "the scan's stamp is missing or unreadable, so "
                                                                  "nothing proves this is the file it saw; not "
                                                                  "deleted")
                            continue
                        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != parsed:
                            yield Outcome(record, Status.CHANGED, "changed since the scan (" + ", ".join(
                                Stamp(*parsed).differences(Stamp.of(st))) + "); not deleted")
                            continue
                    unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    yield Outcome(record, gone)
                    continue
                except OSError as exc:
                    yield Outcome(record, Status.FAILED, f"{exc.strerror or exc}")
                    continue
                yield Outcome(record, deleted)
        finally:
            dirs.close()


def _parse_stamp(text: str | None) -> tuple[int, ...] | None:
    """:meth:`Stamp.parse` as a plain tuple (it runs once per deleted file); None if absent or
    unreadable."""
    if not text:
        return None
    try:
        seen = tuple(map(int, text.split(":")))
    except ValueError:
        return None
    return seen if len(seen) == 5 else None


class _Counts:
    """A tally's running counts, and its cutoff as bounds on ``st_mtime``.

    More than a millisecond from the cutoff (and inside the years a datetime holds), comparing
    the float ``st_mtime`` decides as comparing the scan's ``created`` would — that rounds it to
    the microsecond. Nearer, or outside, ``created`` is made and compared exactly as the scan
    makes it (and an mtime no date can hold raises as there, for the same Problem)."""

    _FIRST = datetime(1, 1, 2, tzinfo=timezone.utc).timestamp()
    _LAST = datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp()

    def __init__(self, cutoff: datetime) -> None:
        at = cutoff.timestamp()
        self.bounds = (cutoff, self._FIRST, at - 0.001, at + 0.001, self._LAST)
        self.total = 0
        self.due = 0


class _Dirs:
    """Descriptors of the directories along one path below root, for one walk or batch.

    Each directory is entered with ``openat(parent, name, O_NOFOLLOW | O_DIRECTORY)``, must
    be on root's device and must not be a mount point. Consecutive paths share their common
    part. At most :data:`OPEN_DIRS` descriptors stay open, so a tree thousands of levels deep
    needs no more: a directory whose descriptor was let go is opened again from its nearest
    open ancestor, the same way, and must then be the directory it was (device and inode).
    """

    def __init__(self, root: int, dev: int, mounts: frozenset[str]) -> None:
        self.root, self.dev, self.mounts = root, dev, mounts
        self._names: list[str] = []
        self._fds: list[int | None] = []
        self._ids: list[tuple[int, int]] = []
        self._open = 0
        self._lo = 0  # no descriptor below this index is open

    def fd(self, parts: Sequence[str]) -> int:
        """The descriptor of the directory at *parts* (relative to root)."""
        common = 0
        for have, want in zip(self._names, parts, strict=False):
            if have != want:
                break
            common += 1
        self._truncate(common)
        self._reopen()
        for part in parts[common:]:
            self._enter(part)
        return self._fds[-1] if self._fds else self.root  # type: ignore[return-value]

    def close(self) -> None:
        self._truncate(0)

    def _truncate(self, length: int) -> None:
        while len(self._names) > length:
            self._names.pop()
            self._ids.pop()
            fd = self._fds.pop()
            if fd is not None:
                os.close(fd)
                self._open -= 1
        self._lo = min(self._lo, length)

    def _reopen(self) -> None:
        """Open again the deepest directory if its descriptor was let go (see the class)."""
        if not self._fds or self._fds[-1] is not None:
            return
        start = len(self._fds) - 1
        while start > 0 and self._fds[start - 1] is None:
            start -= 1
        for i in range(start, len(self._fds)):
            parent = self._fds[i - 1] if i else self.root
            fd, ident = self._open_dir(self._names[i], parent, i)  # type: ignore[arg-type]
            if ident != self._ids[i]:
                os.close(fd)
                raise Replaced(f"directory {'/'.join(self._names[:i + 1])!r} was replaced since it was first opened")
            self._fds[i] = fd
            self._open += 1
            self._lo = min(self._lo, i)
            self._spare()

    def _enter(self, name: str) -> None:
        parent = self._fds[-1] if self._fds else self.root
        fd, ident = self._open_dir(name, parent, len(self._names))  # type: ignore[arg-type]
        self._names.append(name)
        self._fds.append(fd)
        self._ids.append(ident)
        self._open += 1
        self._spare()

    def _spare(self) -> None:
        """Let go of the shallowest open descriptors beyond the budget (never the deepest)."""
        i = self._lo
        while self._open > OPEN_DIRS and i < len(self._fds) - 1:
            fd = self._fds[i]
            if fd is not None:
                os.close(fd)
                self._fds[i] = None
                self._open -= 1
            i += 1
        self._lo = i

    def _open_dir(self, name: str, parent: int, depth: int) -> tuple[int, tuple[int, int]]:
        """Enter *name* (at *depth* below root) from *parent*; its descriptor and identity."""
        def path() -> str:
            return "/".join([*self._names[:depth], name])

        if self.mounts and path() in self.mounts:
            raise Refused(f"{path()!r} is a mount point")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(f"{path()!r} is no longer a directory (a symlink or file took its place)") from None
            raise
        st = os.fstat(fd)
        if st.st_dev != self.dev:
            os.close(fd)
            raise Refused(f"{path()!r} is on another filesystem")
        return fd, (st.st_dev, st.st_ino)


#: A directory's entries, and the error that stopped reading it part-way (if any).
_Listing = tuple[list[os.DirEntry[str]], OSError | None]


def _read(listing: os._ScandirIterator[str]) -> _Listing:
    """Read a directory in full, then close it, before any entry is stat'ed or yielded.

    So one directory stream is open at a time however deep the walk, and none stays open
    while the core works on a record. Entries read before an error are kept.
    """
    read: list[os.DirEntry[str]] = []
    with listing:
        try:
            read.extend(listing)
        except OSError as exc:
            return read, exc
    return read, None


def _mounts_below(root: int) -> frozenset[str]:
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


def _mount_of(path: bytes) -> tuple[str, bytes, bytes] | None:
    """(device, root inside its file system, mount point) of the mount holding *path*, from
    /proc/self/mountinfo (the longest mount point that is *path* or above it); None elsewhere."""
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    best: tuple[str, bytes, bytes] | None = None
    for line in lines:
        fields = line.split(b" ")
        if len(fields) <= 4:
            continue
        root, point = (re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), f) for f in fields[3:5])
        inside = point == b"/" or path == point or path.startswith(point.rstrip(b"/") + b"/")
        if inside and (best is None or len(point) >= len(best[2])):
            best = (fields[2].decode(), root, point)
    return best
