"""fs partitions (issue 19): root's own files, then one per top-level directory; together they
scan exactly what ``scan`` does, problems included, and their tokens survive JSON."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from retention_core import Options, Partition, Problem, Record, Source
from retention_fs.backend import FilesystemBackend

SOURCE = Source("files", "fs")
ODD = os.fsdecode(b"caf\xe9")  # not UTF-8: kept with a surrogate escape


def make(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    make(outside / "canary.txt")
    for name in ("top.txt", "a/one", "a/b/two", "a/b/c/three", "z/four", f"{ODD}/five", f"x/{ODD}"):
        make(root / name)
    (root / "empty").mkdir()
    os.symlink(outside, root / "dirlink")  # a symlink to a directory is no partition (never followed)
    os.symlink(root / "top.txt", root / "a" / "link")
    return root


def keyed(items) -> Counter:
    return Counter((r.key, r.stamp, r.created) if isinstance(r, Record) else ("problem", r.location, r.reason)
                   for r in items)


def scan_all(backend: FilesystemBackend, parts: list[Partition]) -> list:
    return [item for part in parts for item in backend.scan_partition(SOURCE, part)]


def test_one_partition_for_root_files_then_one_per_top_level_directory(root):
    backend = FilesystemBackend(Options({"root": str(root)}))
    parts = backend.partitions(SOURCE)
    assert [p.token for p in parts] == [".", "d/a", f"d/{ODD}", "d/empty", "d/x", "d/z"]
    assert {p.source for p in parts} == {"files"}
    assert keyed(scan_all(backend, parts)) == keyed(backend.scan(SOURCE))
    assert [r.location for r in backend.scan_partition(SOURCE, parts[0])] == ["top.txt"]
    assert sorted(r.location for r in backend.scan_partition(SOURCE, parts[1])) == ["a/b/c/three", "a/b/two", "a/one"]


def test_partitions_travel_as_json(root):
    backend = FilesystemBackend(Options({"root": str(root)}))
    parts = [Partition(**json.loads(json.dumps(p.__dict__))) for p in backend.partitions(SOURCE)]
    assert keyed(scan_all(backend, parts)) == keyed(backend.scan(SOURCE))


def test_problems_fall_in_exactly_one_partition(root, monkeypatch):
    real = os.scandir

    def scandir(fd):
        if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}").endswith(("/a/b", "/z")):
            raise PermissionError(13, "Permission denied")
        return real(fd)

    monkeypatch.setattr("retention_fs.backend.os.scandir", scandir)
    backend = FilesystemBackend(Options({"root": str(root)}))
    together = scan_all(backend, backend.partitions(SOURCE))
    assert keyed(together) == keyed(backend.scan(SOURCE))
    assert sorted(p.location for p in together if isinstance(p, Problem)) == ["a/b", "z"]


def test_a_directory_gone_before_its_partition_is_scanned_yields_nothing(root):
    backend = FilesystemBackend(Options({"root": str(root)}))
    parts = {p.token: p for p in backend.partitions(SOURCE)}
    (root / "z" / "four").unlink()
    (root / "z").rmdir()
    assert list(backend.scan_partition(SOURCE, parts["d/z"])) == []


def test_an_unknown_token_is_refused(root):
    backend = FilesystemBackend(Options({"root": str(root)}))
    with pytest.raises(ValueError, match="not a partition"):
        backend.scan_partition(SOURCE, Partition("files", "s3://elsewhere", "?"))
