"""Through the command line: one bad entry stops nothing, and a replaced file is kept (issue 15).

Before, a file 1,000 levels deep or an mtime past year 9999 ended ``retention run`` with an
internal error before any deletion, in every source; and a file replaced with its mtime
kept (``cp -p``) between scan and delete was deleted and journalled as deleted.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from retention_core import cli
from retention_core.testing.builders import PolicyBuilder
from retention_fs.backend import FilesystemBackend

from .changes import replace_keeping_mtime
from .trees import tmpfs_root

OLD = 1_577_836_800  # 2020-01-01, long due under 30 days


def run(folder: Path, root: Path) -> tuple[Any, dict[str, Any]]:
    policy = PolicyBuilder(folder).write(categories={"files": {"retain": "30d"}},
                                         sources=[{"name": "files", "backend": "fs",
                                                   "options": {"root": str(root)}, "category": "files"}],
                                         limits={"max_fraction": 1.0})  # these runs delete most of a source on purpose
    report = folder / "report.json"
    result = CliRunner().invoke(cli.cli, ["run", "-c", str(policy), "--report", str(report)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "internal error" not in result.output
    return result, json.loads(report.read_text())


def due(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("due\n")
    os.utime(path, (OLD, OLD))
    return path


def unreadable(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    bad = due(root / "a" / "locked" / "hidden.txt")
    real = os.scandir

    def scandir(fd: Any) -> Any:
        if isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}") == str(bad.parent):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(fd)

    monkeypatch.setattr(os, "scandir", scandir)
    return bad, "a/locked: directory not listed: Permission denied"


def beyond_9999(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    bad = due(root / "a" / "future.txt")
    ns = 400_000_000_000 * 10**9
    os.utime(bad, ns=(ns, ns))
    if os.stat(bad).st_mtime_ns != ns:
        pytest.skip("this filesystem clamps mtimes: not tmpfs")
    return bad, "a/future.txt: modification time"


def thousand_deep(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[None, None]:
    path = str(root)
    for _ in range(1000):
        path += "/d"
        os.mkdir(path)
    due(Path(path) / "deep.txt")
    return None, None  # nothing bad: the deep file is listed, and due like the rest


@pytest.mark.parametrize("bad_entry", [unreadable, beyond_9999, thousand_deep])
def test_a_run_with_one_bad_entry_still_deletes_the_other_due_files(tmp_path, monkeypatch,
                                                                   bad_entry: Callable[..., tuple[Any, Any]]):
    with tmpfs_root() as root:
        others = [due(root / "a" / "one.txt"), due(root / "b" / "two.txt"), due(root / "z" / "three.txt")]
        bad, warning = bad_entry(root, monkeypatch)
        result, report = run(tmp_path, root)
        assert result.exit_code == 0, result.output
        assert [p for p in others if p.exists()] == []
        if bad is None:
            assert report["outcomes"]["deleted"] == 4
            assert "warning" not in result.output
        else:
            assert report["outcomes"]["deleted"] == 3
            assert bad.exists(), "the entry behind a problem must never be deleted"
            assert warning in result.output


def test_a_file_replaced_with_its_mtime_kept_between_scan_and_delete_is_kept_and_reported(tmp_path,
                                                                                           monkeypatch):
    root = tmp_path / "root"
    victim, other = due(root / "victim.txt"), due(root / "other.txt")
    real = FilesystemBackend.delete

    def delete_after_cp_p(self: FilesystemBackend, records: Any) -> Any:
        replace_keeping_mtime(victim, b"new\n")  # cp -p new victim.txt, after the scan
        return real(self, records)

    monkeypatch.setattr(FilesystemBackend, "delete", delete_after_cp_p)
    result, report = run(tmp_path, root)
    assert victim.read_bytes() == b"new\n" and not other.exists()
    assert report["outcomes"]["deleted"] == 1 and report["outcomes"]["changed"] == 1, result.output
    [item] = [i for i in report["items"] if i["location"] == "victim.txt"]
    assert item["outcome"] == "changed"
