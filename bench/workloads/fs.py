"""Filesystem: N files in 1,000 directories, mtimes spread over two years.

Selection for everyone: older than 365 days (``find -mtime +365``; the policy's ``retain:
365d``). No file's age is within two days of the boundary, so find's whole-day rounding and
the policy's exact arithmetic select the same files; each sample's selection is counted.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..measure import Measured, execute
from ..ours import run_cli, version, write_policy
from ..peers import FS_BATCH
from ..results import OURS, Goal, WorkloadResult, alternate, require_same

DAY = 86400.0
DIRS = 1000
SEED = 9


def make_tree(root: Path, n: int, now: float, dirs: int = DIRS) -> int:
    """Create *n* empty files under *root*; return how many are older than 365 days."""
    rng = random.Random(SEED)
    root.mkdir(parents=True)
    due = 0
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dirs = max(1, min(dirs, n))
        for d in range(dirs):
            name = f"d{d:04d}"
            os.mkdir(name, dir_fd=root_fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
            try:
                for i in range(n // dirs + (1 if d < n % dirs else 0)):
                    age = rng.uniform(0, 730)
                    if 363 <= age < 368:
                        age += 5  # keep clear of the boundary (find rounds to whole days)
                    due += age > 365
                    mtime = now - age * DAY
                    fname = f"f{i:05d}.dat"
                    os.close(os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd))
                    os.utime(fname, (mtime, mtime), dir_fd=fd)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return due


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _find_version() -> str:
    out = subprocess.run(["find", "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].replace("find (GNU findutils) ", "GNU findutils ") if out else "unknown"


def policy_for(directory: Path, root: Path) -> Path:
    return write_policy(directory, [{"name": "files", "backend": "fs", "options": {"root": str(root)},
                                     "category": "file"}],
                        {"file": {"retain": "365d", "after": "created"}})


def run_dry(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    """Dry-run: list and decide, delete nothing (find -print is the peer)."""
    now = time.time()
    root = workdir / "fs-dry" / "tree"
    due = make_tree(root, n, now)
    res = WorkloadResult(f"fs dry-run ({n:,} files)", expected=due, check="selected")
    ours = Measured(res.name, OURS, version(), n)
    find = Measured(res.name, "find -mtime +365 -print", _find_version(), n)
    # The floor of any Python dry run: a scandir walk with one lstat per entry, counting.
    py = Measured(res.name, "python scandir+lstat (count)", f"CPython {sys.version.split()[0]}", n)
    res.contenders = [ours, find, py]
    res.goals = [Goal(find.contender, 0.5, "ours ≥ 0.5× find")]
    for r in range(rounds):
        for who in alternate([ours, find, py], r):
            if who is ours:
                sample, got = run_cli(policy_for(workdir / "fs-dry" / f"ours-{r}", root), dry_run=True)
                selected = int(got.get("due", -1))
            elif who is find:
                sample = execute(["find", str(root), "-type", "f", "-mtime", "+365", "-print"])
                selected = sample.stdout.count("\n")
            else:
                sample = execute([sys.executable, "-m", "bench.peers", "scandir-stat", str(root),
                                  str(now - 365 * DAY)])
                selected = int(sample.stdout.strip() or -1)
            who.samples.append(sample)
            who.selected.append(selected)
    require_same(res)
    if count_files(root) != n:
        raise AssertionError("a dry-run changed the tree")
    shutil.rmtree(workdir / "fs-dry")
    return res


def run_enforce(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    """Enforce: delete everything older than 365 days on a fresh identical copy per sample."""
    now = time.time()
    base = workdir / "fs-enforce"
    res = WorkloadResult(f"fs enforce ({n:,} files)", expected=0, check="left afterwards")
    ours = Measured(res.name, OURS, version(), n, note="audit trail fsynced per batch")
    find = Measured(res.name, "find -mtime +365 -delete", _find_version(), n)
    py = Measured(res.name, "python scandir+unlink", f"CPython {sys.version.split()[0]}", n)
    # The floor of our promises in Python (no goal): one lstat per entry, due records spooled to
    # disk, per batch an intent line fsynced, the five-number guard before each unlinkat, the
    # outcome line fsynced (bench.peers guarded_floor).
    floor = Measured(res.name, "python guarded floor", f"CPython {sys.version.split()[0]}", n,
                     note=f"intent + outcome fsynced per {FS_BATCH:,} files, fstatat guard")
    res.contenders = [ours, find, py, floor]
    res.goals = [Goal(find.contender, 0.6, "ours ≥ 0.6× find -delete"),
                 Goal(py.contender, 0.75, "ours ≥ 0.75× the bare Python loop")]
    for r in range(rounds):
        for who in alternate([ours, find, py, floor], r):
            shutil.rmtree(base, ignore_errors=True)
            root = base / "tree"
            due = make_tree(root, n, now)
            res.expected = n - due
            if who is ours:
                sample, got = run_cli(policy_for(base / "ours", root), dry_run=False)
                if int(got.get("deleted", -1)) != due:
                    raise AssertionError(f"retention deleted {got.get('deleted')} of {due} due files")
            elif who is find:
                sample = execute(["find", str(root), "-type", "f", "-mtime", "+365", "-delete"])
            elif who is py:
                sample = execute([sys.executable, "-m", "bench.peers", "scandir-unlink", str(root),
                                  str(now - 365 * DAY)])
            else:
                (base / "floor").mkdir()
                sample = execute([sys.executable, "-m", "bench.peers", "guarded-floor", str(root),
                                  str(now - 365 * DAY), str(base / "floor" / "journal")])
                if int(sample.stdout.strip() or -1) != due:
                    raise AssertionError(f"the guarded floor deleted {sample.stdout.strip()} of {due} due files")
            who.samples.append(sample)
            who.selected.append(count_files(root))
    require_same(res)
    shutil.rmtree(base, ignore_errors=True)
    return res
