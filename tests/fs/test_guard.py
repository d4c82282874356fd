"""The guard: fs deletes a file only if it is still the file the scan saw (issue 15, item 6).

A replacement that keeps the mtime (``touch -r``, ``cp -p``, ``rsync -t``) used to pass a
check that compared the mtime alone, and was deleted.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from retention_core import Options, Record, Source, Status
from retention_fs.backend import FilesystemBackend, Stamp

from .changes import identity, modify_in_place, recreate, replace_keeping_mtime

SOURCE = Source("files", "fs")
OLD = 1_600_000_000 * 10**9


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "calls").mkdir(parents=True)
    for name in ("victim.wav", "bystander.wav"):
        path = root / "calls" / name
        path.write_bytes(b"recorded call\n")
        os.utime(path, ns=(OLD, OLD))
    return root


def scanned(root: Path) -> tuple[FilesystemBackend, dict[str, Record]]:
    backend = FilesystemBackend(Options({"root": str(root)}))
    return backend, {r.location: r for r in backend.scan(SOURCE)}


def test_the_scan_stamps_device_inode_size_mtime_and_ctime(root):
    _, records = scanned(root)
    st = os.stat(root / "calls" / "victim.wav")
    assert Stamp.parse(records["calls/victim.wav"].stamp) == (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@pytest.mark.parametrize("change,must_differ", [
    pytest.param(lambda p: replace_keeping_mtime(p, b"replaced call\n"), "inode",
                 id="cp -p or rsync -t over it, same size and mtime"),
    pytest.param(modify_in_place, "ctime_ns", id="written in place, mtime put back"),
    pytest.param(recreate, None, id="deleted and written again, same size and mtime"),
])
def test_a_file_changed_since_the_scan_with_the_same_mtime_is_changed_not_deleted(root, change, must_differ):
    backend, records = scanned(root)
    victim = root / "calls" / "victim.wav"
    change(victim)
    now = identity(victim)
    outcomes = {o.record.location: o for o in backend.delete(list(records.values()))}
    outcome = outcomes["calls/victim.wav"]
    assert outcome.status is Status.CHANGED
    seen = Stamp.parse(records["calls/victim.wav"].stamp)
    assert seen.size == now[2] and seen.mtime_ns == now[3]  # what an mtime-and-size check compares
    assert outcome.error == f"changed since the scan ({', '.join(seen.differences(Stamp(*now)))}); not deleted"
    assert must_differ is None or must_differ in outcome.error
    assert identity(victim) == now, "the changed file was touched"
    assert outcomes["calls/bystander.wav"].status is Status.DELETED  # one changed file does not stop the batch
    assert not (root / "calls" / "bystander.wav").exists()


def test_touch_r_replacement_names_every_field_that_differs(root):
    backend, records = scanned(root)
    victim = root / "calls" / "victim.wav"
    seen = Stamp.parse(records["calls/victim.wav"].stamp)
    replace_keeping_mtime(victim, b"a longer replacement call\n")
    (outcome,) = backend.delete([records["calls/victim.wav"]])
    assert outcome.status is Status.CHANGED
    assert f"size {seen.size} → 26" in outcome.error
    assert "mtime_ns" not in outcome.error  # the mtime was copied: it proves nothing
    assert victim.read_bytes() == b"a longer replacement call\n"


def test_the_next_scan_sees_the_new_file_and_may_delete_it(root):
    backend, records = scanned(root)
    recreate(root / "calls" / "victim.wav")
    assert [o.status for o in backend.delete([records["calls/victim.wav"]])] == [Status.CHANGED]
    _, again = scanned(root)
    assert [o.status for o in backend.delete([again["calls/victim.wav"]])] == [Status.DELETED]


@pytest.mark.parametrize("stamp", [None, "", "not:a:stamp", "1:2:3", "1:2:3:4:5:6"])
def test_without_a_readable_stamp_nothing_is_deleted(root, stamp):
    backend, records = scanned(root)
    record = replace(records["calls/victim.wav"], stamp=stamp)
    (outcome,) = backend.delete([record])
    assert outcome.status is Status.CHANGED and "stamp" in outcome.error
    assert (root / "calls" / "victim.wav").exists()


def test_a_file_that_cannot_be_read_is_still_deleted_when_unchanged(root):
    """The check stats the file without opening it: unlinking needs no read permission, nor does it."""
    os.chmod(root / "calls" / "victim.wav", 0)
    backend, records = scanned(root)
    (outcome,) = backend.delete([records["calls/victim.wav"]])
    assert outcome.status is Status.DELETED


def test_a_fifo_in_place_of_the_file_is_refused_without_blocking(root):
    backend, records = scanned(root)
    victim = root / "calls" / "victim.wav"
    victim.unlink()
    os.mkfifo(victim)
    (outcome,) = backend.delete([records["calls/victim.wav"]])
    assert outcome.status is Status.REFUSED and "no longer a regular file" in outcome.error
    assert victim.exists()


def test_a_batch_across_directories_checks_every_file_on_its_own(root):
    """Records in one directory share its descriptor; each file is still checked by itself,
    and a directory met again after another is entered afresh."""
    for name in ("calls/a.wav", "calls/b.wav", "other/c.wav", "calls/d.wav"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("x")
    backend, records = scanned(root)
    (root / "calls" / "b.wav").write_text("changed since the scan")
    batch = [records[n] for n in ("calls/a.wav", "calls/b.wav", "other/c.wav", "calls/d.wav")]
    assert [o.status for o in backend.delete(batch)] == [Status.DELETED, Status.CHANGED, Status.DELETED,
                                                          Status.DELETED]
    assert (root / "calls" / "b.wav").read_text() == "changed since the scan"
