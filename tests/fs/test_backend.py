"""The fs backend never follows a symlink, never leaves root, and reports every outcome."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from retention_core import ConfigError, Options, Problem, Record, Source, Status
from retention_fs.backend import FilesystemBackend

UTC = timezone.utc
SOURCE = Source("files", "fs")


def backend(root: Path, **extra) -> FilesystemBackend:
    return FilesystemBackend(Options({"root": str(root), **extra}, where="sources[0].options"))


def make(path: Path, text: str = "x", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    make(outside / "canary.txt", "precious")
    make(root / "a" / "one.wav", mtime=1_600_000_000)
    make(root / "a" / "b" / "two.wav")
    make(root / "top.txt")
    os.symlink(outside / "canary.txt", root / "a" / "link-to-outside.wav")
    os.symlink(outside, root / "dirlink")
    os.symlink(root / "top.txt", root / "link-inside.txt")
    return root, outside


def locations(b: FilesystemBackend) -> set[str]:
    return {r.location for r in b.scan(SOURCE) if isinstance(r, Record)}


def problems(b: FilesystemBackend) -> dict[str, str]:
    return {p.location: p.reason for p in b.scan(SOURCE) if isinstance(p, Problem)}


@pytest.mark.parametrize("options,message", [
    ({"root": "does-not-exist"}, "expected an existing directory"),
    ({"root": "/"}, "refusing the whole system"),
    ({"root": "."}, "unknown key"),
    ({}, "is required"),
])
def test_option_errors_name_the_key(tmp_path, options, message):
    opts = dict(options)
    if opts.get("root") == ".":
        opts = {"root": str(tmp_path), "rooot": "typo"}
    with pytest.raises(ConfigError, match=message) as err:
        FilesystemBackend(Options(opts, base_dir=tmp_path, where="sources[0].options"))
    assert str(err.value).startswith("sources[0].options.")


def test_a_file_as_root_is_refused(tmp_path):
    make(tmp_path / "f")
    with pytest.raises(ConfigError, match="expected a directory"):
        backend(tmp_path / "f")


def test_scan_lists_regular_files_only_and_never_follows_symlinks(tree):
    root, _ = tree
    b = backend(root)
    assert locations(b) == {"a/one.wav", "a/b/two.wav", "top.txt"}
    one = next(r for r in b.scan(SOURCE) if r.location == "a/one.wav")
    assert one.created == datetime.fromtimestamp(1_600_000_000, UTC) and one.created.tzinfo is not None
    assert one.size == 1 and one.source == "files"


def test_odd_names_round_trip(tmp_path):
    root = tmp_path / "root"
    names = ["with space.wav", "new\nline.wav", "ünïcode ☎.wav", "plus+percent%.wav"]
    for name in names:
        make(root / "d" / name)
    raw = os.path.join(os.fsencode(root / "d"), b"latin1-\xe9.wav")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    b = backend(root)
    found = [r for r in b.scan(SOURCE)]
    assert len(found) == 5
    outcomes = list(b.delete(found))
    assert {o.status for o in outcomes} == {Status.DELETED}
    assert os.listdir(root / "d") == []


def test_delete_removes_exactly_the_targets_and_is_idempotent(tree):
    root, outside = tree
    b = backend(root)
    target = [r for r in b.scan(SOURCE) if r.location == "a/one.wav"]
    assert [o.status for o in b.delete(target)] == [Status.DELETED]
    assert [o.status for o in b.delete(target)] == [Status.ALREADY_GONE]
    assert locations(b) == {"a/b/two.wav", "top.txt"}
    assert (root / "a").is_dir()  # empty directories are left in place
    assert (outside / "canary.txt").read_text() == "precious"


def test_a_file_swapped_for_a_symlink_after_scan_is_refused_not_followed(tree):
    root, outside = tree
    b = backend(root)
    records = [r for r in b.scan(SOURCE) if r.location == "top.txt"]
    (root / "top.txt").unlink()
    os.symlink(outside / "canary.txt", root / "top.txt")
    (outcome,) = b.delete(records)
    assert outcome.status is Status.REFUSED
    assert (outside / "canary.txt").read_text() == "precious"
    assert (root / "top.txt").is_symlink()


def test_a_directory_swapped_for_a_symlink_to_outside_is_refused(tree):
    root, outside = tree
    make(outside / "b" / "two.wav", "precious too")
    b = backend(root)
    records = [r for r in b.scan(SOURCE) if r.location == "a/b/two.wav"]
    (root / "a" / "b" / "two.wav").unlink()
    (root / "a" / "b").rmdir()
    os.symlink(outside / "b", root / "a" / "b")
    (outcome,) = b.delete(records)
    assert outcome.status is Status.REFUSED
    assert (outside / "b" / "two.wav").read_text() == "precious too"


def test_a_file_modified_since_scan_is_not_deleted(tree):
    root, _ = tree
    b = backend(root)
    records = [r for r in b.scan(SOURCE) if r.location == "a/one.wav"]
    os.utime(root / "a" / "one.wav", (1_700_000_000, 1_700_000_000))
    (outcome,) = b.delete(records)
    assert outcome.status is Status.CHANGED and "mtime_ns 1600000000000000000 → 1700000000000000000" in outcome.error
    assert (root / "a" / "one.wav").exists()


def test_files_and_directories_vanishing_mid_scan_are_skipped(tree):
    root, _ = tree
    seen = []
    for record in backend(root).scan(SOURCE):
        seen.append(record.location)
        if record.location == "a/one.wav":  # a/b is listed only after a's own files
            (root / "a" / "b" / "two.wav").unlink()
            (root / "a" / "b").rmdir()
    assert sorted(seen) == ["a/one.wav", "top.txt"]


def test_vanished_directory_at_delete_time_is_already_gone(tree):
    root, _ = tree
    b = backend(root)
    records = [r for r in b.scan(SOURCE) if r.location == "a/b/two.wav"]
    (root / "a" / "b" / "two.wav").unlink()
    (root / "a" / "b").rmdir()
    assert [o.status for o in b.delete(records)] == [Status.ALREADY_GONE]


def test_unreadable_directory_is_a_problem_and_the_rest_is_scanned(tree, monkeypatch):
    root, _ = tree
    real = os.scandir

    def scandir(fd):
        if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}").endswith("/a/b"):
            raise PermissionError(13, "Permission denied")
        return real(fd)

    monkeypatch.setattr("retention_fs.backend.os.scandir", scandir)
    assert locations(backend(root)) == {"a/one.wav", "top.txt"}
    assert problems(backend(root)) == {"a/b": "directory not listed: Permission denied"}


def test_unsafe_locations_are_refused(tree):
    root, outside = tree
    b = backend(root)
    (record,) = [r for r in b.scan(SOURCE) if r.location == "top.txt"]
    from dataclasses import replace
    evil = [replace(record, location="../outside/canary.txt"), replace(record, location="a//one.wav")]
    assert {o.status for o in b.delete(evil)} == {Status.REFUSED}
    assert (outside / "canary.txt").read_text() == "precious"
