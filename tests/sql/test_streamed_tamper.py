"""An evidence file altered or lost while a crashed run's batch is open (adversarial review,
issue 16): recovery never believes rows whose file does not match its line, never invents a
deletion from them, and is not blocked by them either — the batch is journalled unknown, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention_core.audit import read, records, verify

from .conftest import Database, records_table
from .test_streamed import due, policy, retention, seed


def open_batch_file(tmp_path: Path) -> Path:
    """The evidence file of the intent the killed run left without an outcome."""
    lines = list(read(tmp_path / "audit.jsonl"))
    closed = {e["batch"] for e in lines if e.get("event") == "outcome"}
    [intent] = [e for e in lines if e.get("event") == "intent" and e["batch"] not in closed]
    return tmp_path / intent["evidence"]["file"]


@pytest.mark.parametrize("tamper", ["forged-row", "lost"])
def test_a_crashed_batchs_altered_or_lost_evidence_is_journalled_unknown_never_inferred(
        db: Database, tmp_path: Path, tamper: str) -> None:
    table = records_table(db)
    seed(table)
    path = policy(tmp_path, table)
    assert retention(path, kill_at="after-backend:3").returncode == -9  # a batch committed, no outcome line
    victim = open_batch_file(tmp_path)
    original = victim.read_bytes()
    if tamper == "forged-row":
        victim.write_bytes(original + b"99999\tacme\n")  # a record that never existed
    else:
        victim.unlink()

    rerun = retention(path)
    assert rerun.returncode == 0, rerun.stderr
    assert "cannot be believed" in rerun.stdout + rerun.stderr
    trail = tmp_path / "audit.jsonl"
    unreadable = [e for e in read(trail) if e.get("event") == "batch-unreadable"]
    assert len(unreadable) == 1 and unreadable[0]["outcome"] == "unknown" and unreadable[0]["file"] in str(victim)
    assert table.keys() == {str(i) for i in range(1, 46)} - due(table)  # everything due is gone, nothing held
    if tamper == "forged-row":
        assert not verify(trail).ok
        victim.write_bytes(original)  # hiding the forgery: the trail never named 99999
    else:
        assert not verify(trail).ok and victim.name in (verify(trail).problem or "")
        return
    assert verify(trail).ok
    located = {e.get("location") for e in records(trail)}
    assert "99999" not in located
    again = retention(path)  # and later runs go on
    assert again.returncode == 0, again.stderr
