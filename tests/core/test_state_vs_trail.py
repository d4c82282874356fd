"""A state store that lacks what the audit trail says was put in it is refused (red team, C3/C4).

Emptied or deleted before the first enforcing run, or restored from a backup older than the
last hold: in both, the run saw no hold and deleted the held tenant's due recordings, exit 0.
"""

from __future__ import annotations

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
