"""One bad item never stops the scan (issue 15, item 9): what cannot be listed is a Problem.

A tree 1,000 levels deep raised RecursionError; an mtime past year 9999 raised from
``datetime``; an unreadable directory or a mount point was only logged, so the core could
not tell a complete listing from a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import retention_fs.backend as fs
from retention_core import BackendError, Options, Problem, Record, Source, Status
from retention_fs.backend import FilesystemBackend

from .trees import remove_tree, tmpfs_root

SOURCE = Source("files", "fs")


def backend(root: Path) -> FilesystemBackend:
    return FilesystemBackend(Options({"root": str(root)}))


def scan(root: Path) -> tuple[set[str], dict[str, str]]:
    """(locations of the records, {problem location: reason})."""
    records, problems = set(), {}
    for item in backend(root).scan(SOURCE):
        if isinstance(item, Problem):
            assert item.source == "files" and item.location not in problems
            problems[item.location] = item.reason
        else:
            assert isinstance(item, Record)
            records.add(item.location)
    return records, problems


def make(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def on_disk(root: Path) -> set[str]:
    return {str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files}


# -- depth ---------------------------------------------------------------------------------------

def test_a_tree_a_thousand_levels_deep_is_listed_and_deleted(tmp_path):
    # Built level by level: pathlib's and os.makedirs' parents=True recurse.
    root = tmp_path / "root"
    levels = [str(root)]
    for _ in range(1000):
        levels.append(levels[-1] + "/d")
    for level in levels:
        os.mkdir(level)
    try:
        for level, name in ((1000, "bottom.txt"), (500, "middle.txt")):
            Path(levels[level], name).write_text("x")
        make(root / "e" / "after.txt")  # a sibling of the deep branch, listed before or after it
        expected = {"d/" * 1000 + "bottom.txt", "d/" * 500 + "middle.txt", "e/after.txt"}
        assert scan(root) == (expected, {})
        b = backend(root)
        outcomes = list(b.delete([r for r in b.scan(SOURCE)]))
        assert {o.record.location for o in outcomes} == expected
        assert {o.status for o in outcomes} == {Status.DELETED}
        assert not any(os.path.exists(levels[level] + "/" + name)
                       for level, name in ((1000, "bottom.txt"), (500, "middle.txt")))
    finally:
        remove_tree(root)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def branching(tmp_path) -> Path:
    """Branches at every level, so the walk must come back up to directories it let go."""
    root = tmp_path / "root"
    for path in ("a/b/c/d/e/deep.txt", "a/b/c/d/e2/x.txt", "a/b/c/side.txt", "a/b/c2/y.txt",
                 "a/a2/z.txt", "top.txt", "f/g/h/i/j/k/l/m.txt"):
        make(root / path)
    return root


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_the_walk_keeps_few_descriptors_open_and_still_lists_and_deletes_everything(branching, monkeypatch,
                                                                                   budget):
    monkeypatch.setattr(fs, "OPEN_DIRS", budget)
    before = _open_fds()
    peak = 0
    b = backend(branching)
    records = []
    for item in b.scan(SOURCE):
        peak = max(peak, _open_fds() - before)
        records.append(item)
    assert all(isinstance(r, Record) for r in records)
    assert {r.location for r in records} == on_disk(branching)
    assert peak <= budget + 1  # the directories kept, plus root (opened on first use)
    assert {o.status for o in b.delete(records)} == {Status.DELETED}
    assert on_disk(branching) == set()
    b.close()
    assert _open_fds() == before


def test_a_directory_replaced_while_its_descriptor_was_let_go_is_a_problem(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make(root / "a" / "b" / "one.txt")
    make(root / "a" / "c" / "two.txt")
    monkeypatch.setattr(fs, "OPEN_DIRS", 1)
    seen, problems = [], {}
    for item in backend(root).scan(SOURCE):
        if isinstance(item, Problem):
            problems[item.location] = item.reason
            continue
        seen.append(item.location)
        if len(seen) == 1:  # inside a/b or a/c; 'a' itself is no longer open
            first = item.location.split("/")[1]
            other = "c" if first == "b" else "b"
            os.rename(root / "a", root / "a-old")
            make(root / "a" / other / "new.txt")
    assert len(seen) == 1
    assert problems == {f"a/{other}": "directory not listed: directory 'a' was replaced since it was first opened"}


def test_a_directory_replaced_mid_batch_is_changed_not_followed(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make(root / "a" / "b" / "one.txt")
    make(root / "a" / "c" / "two.txt")
    monkeypatch.setattr(fs, "OPEN_DIRS", 1)
    b = backend(root)
    records = sorted((r for r in b.scan(SOURCE)), key=lambda r: r.location)
    outcomes = b.delete(records)
    assert next(outcomes).status is Status.DELETED
    os.rename(root / "a", root / "a-old")
    (root / "a" / "c").mkdir(parents=True)
    os.link(root / "a-old" / "c" / "two.txt", root / "a" / "c" / "two.txt")  # the same file, another 'a'
    (second,) = list(outcomes)
    assert second.status is Status.CHANGED and "'a' was replaced" in second.error
    assert (root / "a" / "c" / "two.txt").exists() and (root / "a-old" / "c" / "two.txt").exists()


# -- dates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [400_000_000_000, -100_000_000_000])
def test_an_mtime_no_date_can_hold_is_a_problem_and_the_rest_is_listed(seconds):
    with tmpfs_root() as root:
        far = make(root / "a" / "far.txt")
        make(root / "a" / "near.txt")
        make(root / "b" / "later.txt")
        os.utime(far, ns=(0, seconds * 10**9))
        if os.stat(far).st_mtime_ns != seconds * 10**9:
            pytest.skip("/dev/shm clamped the mtime: not tmpfs")
        records, problems = scan(root)
        assert records == {"a/near.txt", "b/later.txt"}
        assert problems == {"a/far.txt": f"modification time {seconds * 10**9} ns from 1970 is outside the dates "
                                         "this tool can hold (years 1 to 9999); not listed"}


def test_year_9999_is_still_a_date():
    with tmpfs_root() as root:
        f = make(root / "late.txt")
        ns = 253_402_000_000 * 10**9  # 9999-12-31
        os.utime(f, ns=(ns, ns))
        if os.stat(f).st_mtime_ns != ns:
            pytest.skip("/dev/shm clamped the mtime: not tmpfs")
        [record] = backend(root).scan(SOURCE)
        assert record.created.year == 9999


# -- unreadable directories and entries ------------------------------------------------------------

def _fd_path(fd: Any) -> str:
    return os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else os.fspath(fd)


def test_an_unreadable_directory_is_a_problem_naming_it(tmp_path, monkeypatch):
    """chmod 000 as seen by a process without root's bypass (tests run as root)."""
    root = tmp_path / "root"
    make(root / "a" / "b" / "hidden.txt")
    make(root / "a" / "one.txt")
    make(root / "z" / "two.txt")
    real = os.scandir

    def scandir(fd: Any) -> Any:
        if _fd_path(fd) == str(root / "a" / "b"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(fd)

    monkeypatch.setattr(os, "scandir", scandir)
    assert scan(root) == ({"a/one.txt", "z/two.txt"}, {"a/b": "directory not listed: Permission denied"})


def test_an_untraversable_directory_is_a_problem_naming_it(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make(root / "a" / "b" / "hidden.txt")
    make(root / "a" / "one.txt")
    real = os.open

    def open_(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kw: Any) -> int:
        if path == "b" and dir_fd is not None and _fd_path(dir_fd) == str(root / "a"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, flags, *args, dir_fd=dir_fd, **kw)

    monkeypatch.setattr(os, "open", open_)
    assert scan(root) == ({"a/one.txt"}, {"a/b": "directory not listed: Permission denied"})


def _as_nobody(work: Callable[[], Any]) -> Any:
    """Run *work* without root's permission bypass: in a child that gave up root, if we are root."""
    if os.geteuid() != 0:
        return work()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = pickle.dumps(work())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = pickle.dumps(exc)
        with os.fdopen(write, "wb") as fh:
            fh.write(result)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        result = pickle.loads(fh.read())
    os.waitpid(pid, 0)
    if isinstance(result, BaseException):
        raise result
    return result


def test_chmod_000_for_real(monkeypatch):
    top = Path(tempfile.mkdtemp())
    try:
        root = top / "root"
        make(root / "a" / "locked" / "hidden.txt")
        make(root / "a" / "one.txt")
        for d, _, files in os.walk(top):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        os.chmod(root / "a" / "locked", 0)
        assert _as_nobody(lambda: scan(root)) == (
            {"a/one.txt"}, {"a/locked": "directory not listed: Permission denied"})
    finally:
        os.chmod(top / "root" / "a" / "locked", 0o755)
        shutil.rmtree(top)


class _Entry:
    def __init__(self, real: os.DirEntry, fail: bool) -> None:
        self.name, self._real, self._fail = real.name, real, fail

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        if self._fail:
            raise OSError(errno.EIO, "Input/output error")
        return self._real.stat(follow_symlinks=follow_symlinks)


class _Listing:
    """A scandir iterator whose entry *bad* cannot be stat'ed, and that fails after *stop* entries."""

    def __init__(self, real: Any, bad: str | None = None, stop: int | None = None) -> None:
        self._real, self._bad, self._stop, self._n = real, bad, stop, 0

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __iter__(self) -> _Listing:
        return self

    def __next__(self) -> _Entry:
        if self._stop is not None and self._n == self._stop:
            raise OSError(errno.EIO, "Input/output error")
        self._n += 1
        entry = next(self._real)
        return _Entry(entry, entry.name == self._bad)


def test_an_entry_that_cannot_be_stat_ed_is_a_problem(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for name in ("one.txt", "bad.txt", "three.txt"):
        make(root / "d" / name)
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda fd: _Listing(real(fd), bad="bad.txt"))
    assert scan(root) == ({"d/one.txt", "d/three.txt"}, {"d/bad.txt": "cannot stat: Input/output error"})


def test_a_listing_that_fails_part_way_keeps_what_it_read_and_says_so(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for name in ("one.txt", "two.txt", "three.txt"):
        make(root / "d" / name)
    make(root / "e" / "other.txt")
    real = os.scandir
    monkeypatch.setattr(os, "scandir",
                        lambda fd: _Listing(real(fd), stop=1 if _fd_path(fd).endswith("/d") else None))
    records, problems = scan(root)
    assert len(records & {"d/one.txt", "d/two.txt", "d/three.txt"}) == 1 and "e/other.txt" in records
    assert problems == {"d": "directory listed only in part: Input/output error"}


def test_a_directory_swapped_for_a_symlink_mid_scan_is_a_problem(tmp_path):
    root = tmp_path / "root"
    make(root / "a" / "one.txt")
    make(root / "a" / "b" / "two.txt")
    make(tmp_path / "outside" / "secret.txt")
    seen, problems = [], {}
    for item in backend(root).scan(SOURCE):
        if isinstance(item, Problem):
            problems[item.location] = item.reason
            continue
        seen.append(item.location)
        if item.location == "a/one.txt":  # a's own files come before its subdirectories
            shutil.rmtree(root / "a" / "b")
            os.symlink(tmp_path / "outside", root / "a" / "b")
    assert seen == ["a/one.txt"]
    assert problems == {"a/b": "directory not listed: 'a/b' is no longer a directory (a symlink or file took "
                                "its place)"}


def test_a_root_that_cannot_be_listed_raises_naming_it(tmp_path, monkeypatch):
    """Nothing of the source was seen: the core must not take that for an empty source."""
    root = tmp_path / "root"
    make(root / "one.txt")
    real = os.scandir

    def scandir(fd: Any) -> Any:
        if _fd_path(fd) == str(root):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(fd)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(BackendError, match=f"cannot list root '{root}': Permission denied"):
        list(backend(root).scan(SOURCE))


# -- mount boundaries ----------------------------------------------------------------------------

@contextlib.contextmanager
def mounted(args: list[str], point: Path) -> Iterator[None]:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_another_filesystem_below_root_is_a_problem_not_listed(tmp_path):
    root = tmp_path / "root"
    make(root / "local.txt")
    with mounted(["-t", "tmpfs", "none"], root / "mnt"):
        make(root / "mnt" / "elsewhere.txt")
        assert scan(root) == ({"local.txt"}, {"mnt": "mount boundary: not listed (another filesystem)"})


def test_a_bind_mount_of_the_same_filesystem_is_a_problem_not_listed(tmp_path):
    root = tmp_path / "root"
    make(root / "local.txt")
    make(tmp_path / "other" / "bound.txt")
    with mounted(["--bind", str(tmp_path / "other")], root / "bound"):
        assert scan(root) == ({"local.txt"}, {"bound": "mount boundary: not listed (a mount point)"})


def test_a_mount_point_listed_in_mountinfo_is_a_problem_not_listed(tmp_path, monkeypatch):
    """The same, without needing the right to mount: /proc/self/mountinfo names the point."""
    root = tmp_path / "root"
    make(root / "local.txt")
    make(root / "with space" / "bound.txt")
    real = fs._mounts_below
    monkeypatch.setattr(fs, "_mounts_below", lambda fd: real(fd) | {"with space"})
    assert scan(root) == ({"local.txt"}, {"with space": "mount boundary: not listed (a mount point)"})
