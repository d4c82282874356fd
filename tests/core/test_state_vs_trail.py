"""A state store that lacks what the audit trail says was put in it is refused (red team, C3/C4).

Emptied or deleted before the first enforcing run, or restored from a backup older than the
last hold: in both, the run saw no hold and deleted the held tenant's due recordings, exit 0.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support import demo_copy, invoke, ok

HELD = "initech"


def _due_of(policy: Path) -> list[Path]:
    return sorted((policy.parent / "data").rglob(f"*{HELD}*"))


def test_a_store_emptied_before_the_first_run_is_refused(tmp_path: Path) -> None:
    policy = demo_copy(tmp_path, max_fraction=1.0)
    ok("holds", "place", "-c", policy, "--id", "CASE-1", "--kind", "legal", "--reason", "Smith v. Initech",
       "--subject", HELD)
    before = _due_of(policy)
    (policy.parent / ".retention" / "state.db").unlink()
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2, result.output
    assert "not the one the audit trail's line" in result.output and "hold-placed" in result.output
    assert _due_of(policy) == before


def test_a_store_restored_from_an_older_backup_is_refused(tmp_path: Path) -> None:
    policy = demo_copy(tmp_path, max_fraction=1.0)
    store = policy.parent / ".retention" / "state.db"
    ok("run", "-c", policy, "--source", "mail")
    shutil.copy(store, tmp_path / "backup.db")
    ok("holds", "place", "-c", policy, "--id", "CASE-9", "--kind", "legal", "--reason", "x", "--subject", HELD)
    shutil.copy(tmp_path / "backup.db", store)
    before = _due_of(policy)
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2, result.output
    assert "lacks hold CASE-9" in result.output
    assert _due_of(policy) == before
    ok("holds", "place", "-c", policy, "--id", "CASE-9b", "--kind", "legal", "--reason", "again", "--subject", HELD)
    ok("holds", "place", "-c", policy, "--id", "CASE-9", "--kind", "legal", "--reason", "again", "--subject", HELD)
    ok("run", "-c", policy)  # placed again: the store holds what the trail says
    assert _due_of(policy) == before


def test_a_store_restored_without_a_withdrawal_is_refused(tmp_path: Path) -> None:
    policy = demo_copy(tmp_path, max_fraction=1.0)
    store = policy.parent / ".retention" / "state.db"
    requested = ok("requests", "erase", "-c", policy, "--subject", HELD, "--controller", "initech-llc")
    shutil.copy(store, tmp_path / "backup.db")
    request_id = requested.output.split()[2]
    ok("requests", "withdraw", "-c", policy, request_id, "--reason", "sent in error")
    shutil.copy(tmp_path / "backup.db", store)
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2, result.output
    assert f"the withdrawal of erasure request {request_id}" in result.output


def test_a_new_line_in_an_emptied_store_does_not_make_it_the_trails(tmp_path: Path) -> None:
    """An erasure request written to an emptied store would name it in the trail's newest line,
    and the next run would take the store for the trail's own: the writing commands check too."""
    policy = demo_copy(tmp_path, max_fraction=1.0)
    ok("holds", "place", "-c", policy, "--id", "CASE-1", "--kind", "legal", "--reason", "r", "--subject", HELD)
    (policy.parent / ".retention" / "state.db").unlink()
    for command in (["requests", "erase", "--subject", "acme", "--controller", "acme-corp"],
                    ["holds", "place", "--id", "CASE-2", "--kind", "legal", "--reason", "r", "--subject", "acme"]):
        result = invoke(command[0], command[1], "-c", policy, *command[2:])
        assert result.exit_code == 2 and "not the one the audit trail's line" in result.output, result.output
    assert invoke("run", "-c", policy).exit_code == 2


def _files_policy(folder: Path, **extra: str) -> Path:
    """The red team's second-round policy: one fs source of logs, four due files."""
    data = folder / "data"
    data.mkdir(parents=True)
    for i in range(4):
        (data / f"f{i}").write_text("x")
        os.utime(data / f"f{i}", (1_577_836_800, 1_577_836_800))  # 2020: long due
    policy = folder / "policy.yaml"
    policy.write_text("version: 1\nstate: sqlite:///st/state.db\naudit: st/audit.jsonl\n"
                      "categories:\n  logs: {retain: 30d, after: created}\n  other: {retain: 1d, after: created}\n"
                      "sources:\n  - {name: logs, backend: fs, options: {root: data}, category: logs}\n"
                      "limits: {}\n" + "".join(extra.values()))
    return policy


HEADER = "id,kind,scope_subject,scope_category,scope_source,reason,status\n"


def test_a_restored_store_lacking_a_hold_sources_vanished_hold_is_refused(tmp_path: Path) -> None:
    """Round 2, critical 1: a source's hold that vanished from its export lived only in the
    store's memory; a store restored from before it appeared deleted what it held."""
    policy = _files_policy(tmp_path, holds="hold_sources: [{source: csv, name: legal, path: holds.csv}]\n")
    holds = tmp_path / "holds.csv"
    holds.write_text(HEADER)
    assert invoke("run", "-c", policy, "--max-delete", "0").exit_code == 3  # a run, deleting nothing
    shutil.copy(tmp_path / "st" / "state.db", tmp_path / "backup.db")
    holds.write_text(HEADER + "LH-9,legal,,,logs,Smith v Acme,active\n")
    ok("holds", "list", "-c", policy)
    holds.write_text(HEADER)  # vanished: still in force, from the store's memory
    assert "LH-9" in ok("holds", "list", "-c", policy, "--active").output
    shutil.copy(tmp_path / "backup.db", tmp_path / "st" / "state.db")
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2 and "lacks hold LH-9 of hold source legal" in result.output, result.output
    assert len(list((tmp_path / "data").iterdir())) == 4


def test_a_store_deleted_with_only_hold_source_lines_in_the_trail_is_refused(tmp_path: Path) -> None:
    policy = _files_policy(tmp_path, holds="hold_sources: [{source: csv, name: legal, path: holds.csv}]\n")
    (tmp_path / "holds.csv").write_text(HEADER + "LH-1,legal,,,logs,r,active\n")
    ok("holds", "list", "-c", policy)  # the source's hold journalled, naming the store
    (tmp_path / "holds.csv").write_text(HEADER)
    (tmp_path / "st" / "state.db").unlink()
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2 and "not the one the audit trail's line" in result.output, result.output
    assert len(list((tmp_path / "data").iterdir())) == 4


def test_a_policy_file_hold_reusing_a_released_id_is_refused(tmp_path: Path) -> None:
    """Round 2, critical 3: the released record was applied to the file's new hold of that id."""
    old = "holds: [{id: LH-1, kind: legal, scope: {category: other}, reason: old case}]\n"
    policy = _files_policy(tmp_path, holds=old)
    ok("holds", "release", "-c", policy, "LH-1", "--reason", "case closed")
    policy.write_text(policy.read_text().replace(old, "holds: [{id: LH-1, kind: legal, scope: {source: logs}, "
                                                      "reason: NEW case}]\n"))
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2 and "reuses the id of a hold released on" in result.output, result.output
    assert len(list((tmp_path / "data").iterdir())) == 4


def test_a_restored_store_is_checked_against_a_rotated_trail(tmp_path: Path) -> None:
    """Round 2: after `audit:` moved to a new file the recorded head (forward-only, by seq)
    stayed the old trail's, so the new trail's lines were never checked against a restored
    store, and `audit verify -c` said lines were removed from the new trail's end."""
    policy = _files_policy(tmp_path)
    for i in range(3):
        assert invoke("run", "-c", policy, "--max-delete", "0").exit_code == 3
        ok("holds", "place", "-c", policy, "--id", f"X{i}", "--kind", "legal", "--reason", "r", "--source", "logs")
        ok("holds", "release", "-c", policy, f"X{i}", "--reason", "done")
    shutil.copy(tmp_path / "st" / "state.db", tmp_path / "backup.db")
    (tmp_path / "st" / "audit.jsonl").rename(tmp_path / "st" / "audit-2026.jsonl")
    policy.write_text(policy.read_text().replace("st/audit.jsonl", "st/audit2.jsonl"))
    assert invoke("run", "-c", policy, "--max-delete", "0").exit_code == 3
    assert "head: matches" in ok("audit", "verify", "-c", policy).output
    ok("holds", "place", "-c", policy, "--id", "LH-1", "--kind", "legal", "--reason", "Smith", "--source", "logs")
    shutil.copy(tmp_path / "backup.db", tmp_path / "st" / "state.db")
    result = invoke("run", "-c", policy)
    assert result.exit_code == 2 and "lacks hold LH-1" in result.output, result.output
    assert len(list((tmp_path / "data").iterdir())) == 4


def test_holds_place_waits_for_a_locked_trail_no_longer_than_wait(tmp_path: Path) -> None:
    """Round 2 (high): a run stopped while appending kept the trail's lock, and `holds place
    --wait 5` hung for minutes; now it exits 1 after the wait, the hold stored and in force."""
    import fcntl
    import time

    policy = _files_policy(tmp_path)
    assert invoke("run", "-c", policy, "--max-delete", "0").exit_code == 3
    with (tmp_path / "st" / "audit.jsonl").open("a") as locked:
        fcntl.flock(locked, fcntl.LOCK_EX)  # as a writer stopped mid-append holds it
        started = time.monotonic()
        result = invoke("holds", "place", "-c", policy, "--id", "LH-1", "--kind", "legal", "--reason", "r",
                        "--source", "logs", "--wait", "1")
        assert time.monotonic() - started < 10
    assert result.exit_code == 1 and "stored and in force" in result.output, result.output
    assert "LH-1" in ok("holds", "list", "-c", policy, "--active").output
