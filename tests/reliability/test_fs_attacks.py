"""Item 3 — filesystem attacks: nothing outside the root is ever touched.

Outside the root sits a *victim* tree with exactly the names the run is about to delete,
plus canary files; every test compares the whole outside tree byte for byte (contents,
symlink targets, file types) before and after. The swaps happen in the real window: the
driver pauses the run after it scanned and journalled its intent, right before the first
backend call, while the test swaps directories and files for symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import DRIVER, cli_env, retention, start_paused, trail, verify_trail, write_policy

MATCH = r"(?s)(?P<subject>[^/]+)/.+"
NAMES = [f"rec-{i:03d}" for i in range(6)]


def snapshot(top: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under *top*: its type and its bytes (a symlink: its target)."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(top)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(top)))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", b"")
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", fh.read())
    return out


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(policy, root, outside): due records of subject ``ended`` in root, a look-alike victim outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for base, label in ((root / "ended", "data"), (outside / "victim" / "ended", "VICTIM")):
        base.mkdir(parents=True)
        for name in NAMES:
            (base / name).write_bytes(f"{label} {name}\n".encode())
    (outside / "canary.txt").write_bytes(b"canary \x00\xff bytes\n")
    (root / "active").mkdir()
    (root / "active" / "rec-000").write_text("kept\n")
    policy = write_policy(tmp_path / "cfg", [{"name": "files", "backend": "fs", "options": {"root": str(root)},
                                              "match": MATCH, "category": "data"}])
    return policy, root, outside


def _swap_dir_for_symlink(directory: Path, target: Path) -> None:
    directory.rename(directory.with_name(directory.name + ".moved"))
    directory.symlink_to(target, target_is_directory=True)


def attack_during_pause(policy: Path, tmp: Path, attack) -> tuple[int, str]:
    run = start_paused(tmp, "run", "-c", str(policy), before_delete=True)
    assert run.wait_paused() is not None, "the run never reached its first deletion"
    try:
        attack()
    finally:
        code, _, err = run.resume()
    return code, err




def _untouched(outside: Path, before: dict[str, tuple[str, bytes]], figures, known_defect: bool = False) -> None:
    after = snapshot(outside)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    figures["fs_attacks"] += 1
    figures["fs_outside_entries_checked"] += len(before)
    figures["fs_outside_entries_touched_known_defect" if known_defect else "fs_outside_entries_touched"] += \
        len(changed)
    assert not changed, f"outside the root, changed: {changed}"


def _no_crash(code: int, err: str) -> None:
    assert code in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err, err


def test_a_directory_swapped_for_a_symlink_between_scan_and_delete(world, tmp_path, figures):
    policy, root, outside = world
    before = snapshot(outside)
    code, err = attack_during_pause(policy, tmp_path,
                                    lambda: _swap_dir_for_symlink(root / "ended", outside / "victim" / "ended"))
    _no_crash(code, err)
    _untouched(outside, before, figures)
    outcomes = [e for e in trail(policy) if e.get("event") == "outcome"]
    assert outcomes and all(e["outcome"] != "deleted" for e in outcomes), outcomes
    assert verify_trail(policy)


@pytest.mark.slow
def test_the_root_itself_swapped_for_a_symlink(world, tmp_path, figures):
    """The root was opened once: deletions stay in the real (moved) root, never the new target."""
    policy, root, outside = world
    before = snapshot(outside)
    code, err = attack_during_pause(policy, tmp_path, lambda: _swap_dir_for_symlink(root, outside / "victim"))
    _no_crash(code, err)
    _untouched(outside, before, figures)


@pytest.mark.slow
def test_files_swapped_for_symlinks_between_scan_and_delete(world, tmp_path, figures):
    policy, root, outside = world
    before = snapshot(outside)

    def attack() -> None:
        for name in NAMES[:3]:
            (root / "ended" / name).unlink()
            (root / "ended" / name).symlink_to(outside / "victim" / "ended" / name)
        (root / "ended" / NAMES[3]).unlink()
        (root / "ended" / NAMES[3]).symlink_to(outside / "canary.txt")

    code, err = attack_during_pause(policy, tmp_path, attack)
    _no_crash(code, err)
    _untouched(outside, before, figures)
    assert all((root / "ended" / n).is_symlink() for n in NAMES[:4])  # refused, not followed
    assert not any((root / "ended" / n).exists() for n in NAMES[4:])  # the untouched ones were deleted


@pytest.mark.slow
def test_symlinks_present_at_scan_are_never_followed(world, tmp_path, figures):
    policy, root, outside = world
    (root / "ended" / "link-to-canary").symlink_to(outside / "canary.txt")
    (root / "linked").symlink_to(outside / "victim", target_is_directory=True)
    before = snapshot(outside)
    done = retention("run", "-c", str(policy))
    _no_crash(done.returncode, done.stderr)
    _untouched(outside, before, figures)
    assert (root / "ended" / "link-to-canary").is_symlink() and (root / "linked").is_symlink()


def test_hostile_names_are_handled_inside_the_root(world, tmp_path, figures):
    """``..`` in names, newlines, invalid UTF-8: deleted (or refused) exactly, journalled exactly."""
    policy, root, outside = world
    ended = os.fsencode(root / "ended")
    hostile = [b"..", b"...", b"..rec", b"rec-..", b"new\nline", b"bad-\xff\xfe-utf8", b"tab\tand\rcr",
               b"-rf", b" space ", "snowman-\u2603".encode()]
    os.mkdir(os.path.join(ended, b"...dir"))
    made = []
    for name in hostile:
        path = os.path.join(ended, b"...dir" if name == b".." else b"", name)
        if name == b"..":  # a file called ".." cannot exist; put it under a "..." directory instead
            path = os.path.join(ended, b"...dir", b"..x")
        with open(path, "wb") as fh:
            fh.write(b"hostile\n")
        made.append(path)
    before = snapshot(outside)
    done = retention("run", "-c", str(policy))
    _no_crash(done.returncode, done.stderr)
    _untouched(outside, before, figures)
    left = [p for p in made if os.path.lexists(p)]
    assert not left, f"hostile names not deleted: {left}"
    assert verify_trail(policy)
    deleted = {bytes.fromhex(e["location_hex"]) if e.get("location_hex") else os.fsencode(e["location"])
               for e in trail(policy) if e.get("event") == "outcome" and e.get("outcome") == "deleted"}
    expected = {os.path.relpath(p, os.fsencode(root)) for p in made}
    assert expected <= deleted, f"trail does not name exactly: {sorted(expected - deleted)}"
    figures["fs_hostile_names"] += len(made)


def _can_mount() -> str | None:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux and unshare(1)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /mnt && umount /mnt"], capture_output=True)
    return None if probe.returncode == 0 else "cannot mount in a private mount namespace (needs root)"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tmpfs", "bind"])
def test_another_filesystem_inside_the_root_is_not_entered(world, tmp_path, how, figures):
    """Mounted in a private mount namespace, so nothing leaks into the machine's mounts."""
    why = _can_mount()
    if why:
        pytest.skip(why)
    policy, root, outside = world
    mountpoint = root / "ended" / "mounted"
    mountpoint.mkdir()
    seed = outside / "victim" / "ended"
    if how == "tmpfs":
        # a tmpfs holding files named like due records: the run must not enter it
        script = (f"mount -t tmpfs none '{mountpoint}' && mkdir -p '{mountpoint}/d' && "
                  f"echo tmpfs > '{mountpoint}/rec-900' && cp '{seed}/rec-000' '{mountpoint}/d/' && "
                  f"exec '{sys.executable}' '{DRIVER}' run -c '{policy}'; ")
    else:
        script = f"mount --bind '{seed}' '{mountpoint}' && exec '{sys.executable}' '{DRIVER}' run -c '{policy}'"
    before = snapshot(outside)
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    _no_crash(done.returncode, done.stderr)
    _untouched(outside, before, figures)
    deleted = [e["location"] for e in trail(policy) if e.get("outcome") == "deleted"]
    assert not [d for d in deleted if "/mounted/" in d], deleted
