"""`retention audit verify`, `run` and `holds place` against a damaged, tampered or misplaced
trail, through the command line as the issue saw them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from retention_core import cli as cli_module
from retention_core.audit import KEY_ENV, KEY_FILE_ENV, chain_hash, read
from retention_core.state import StateStore

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A private copy of the demo (an enforcing run deletes files)."""
    target = tmp_path / "demo"
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns(".retention"))
    return target / "policy.yaml"


def invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args])


def trail_of(demo: Path) -> Path:
    return demo.parent / ".retention" / "audit.jsonl"


def place(demo: Path, hold_id: str) -> Any:
    return invoke("holds", "place", "-c", demo, "--id", hold_id, "--kind", "legal", "--reason", "case",
                  "--subject", "acme")


def tear(path: Path) -> bytes:
    """Cut the last line in the middle, as a crash or a full disk would; the bytes left over."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = start + (len(data) - start) // 2
    path.write_bytes(data[:cut])
    return data[start:cut]


def test_holds_place_after_a_torn_last_line_repairs_it_and_journals_both_lines(demo: Path) -> None:
    assert invoke("run", "-c", demo).exit_code == 0
    trail = trail_of(demo)
    torn = tear(trail)

    result = place(demo, "LH-9")

    assert result.exit_code == 0, result.output
    assert "placed legal hold LH-9" in result.output
    repaired, placed = list(read(trail))[-2:]
    assert repaired["event"] == "trail-repaired" and placed["event"] == "hold-placed" and placed["hold"] == "LH-9"
    assert repaired["cut_bytes"] == len(torn) and repaired["cut_sha256"] == hashlib.sha256(torn).hexdigest()
    verified = invoke("audit", "verify", trail)
    assert verified.exit_code == 0, verified.output
    assert f"repaired: line {repaired['seq']}" in verified.output and repaired["cut_sha256"] in verified.output


def test_run_after_a_torn_last_line_repairs_it_and_enforces(demo: Path) -> None:
    place(demo, "LH-9")
    tear(trail_of(demo))
    result = invoke("run", "-c", demo)
    assert result.exit_code == 0, result.output
    events = [e["event"] for e in read(trail_of(demo))]
    assert events[:2] == ["trail-repaired", "run-start"] and "outcome" in events and events[-1] == "run-end"
    assert invoke("audit", "verify", "-c", demo).exit_code == 0


def test_verify_with_the_policy_finds_hold_lines_removed_after_the_last_run(demo: Path) -> None:
    assert invoke("run", "-c", demo).exit_code == 0
    trail = trail_of(demo)
    after_run = trail.read_bytes()
    assert place(demo, "LH-9").exit_code == 0
    assert invoke("holds", "release", "-c", demo, "LH-9", "--reason", "settled").exit_code == 0
    assert invoke("audit", "verify", "-c", demo).exit_code == 0

    trail.write_bytes(after_run)  # hold-placed and hold-released removed

    assert invoke("audit", "verify", trail).exit_code == 0  # the chain alone cannot tell
    result = invoke("audit", "verify", "-c", demo)
    assert result.exit_code == 1 and "lines were removed from the end" in result.output


def test_a_duplicate_key_injection_fails_verify_naming_the_line(demo: Path) -> None:
    assert invoke("run", "-c", demo).exit_code == 0
    trail = trail_of(demo)
    lines = trail.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if '"event":"outcome"' in line)
    lines[n] = lines[n].replace('"event":"outcome"', '"event":"outcome","outcome":"refused"', 1)
    trail.write_text("".join(lines))
    result = invoke("audit", "verify", trail)
    assert result.exit_code == 1
    assert f"line {n + 1}: not strict JSON: key 'outcome' appears twice" in result.output


def test_a_keyed_trail_finds_a_rehashed_rewrite(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("4f1c9a0d7e3b5a2c8d6e0f1a2b3c4d5e\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert invoke("run", "-c", demo).exit_code == 0
    trail = trail_of(demo)
    good = invoke("audit", "verify", "-c", demo)
    assert good.exit_code == 0 and "checked with the key" in good.output

    prev, out = "0" * 64, []
    for raw in trail.read_text().splitlines():  # rewrite every outcome as refused, rehash the chain
        body = json.loads(raw)
        body.pop("hash")
        mac = body.pop("hmac")
        if body["event"] == "outcome":
            body["outcome"] = "refused"
        body["prev_hash"] = prev
        prev = chain_hash(prev, body)
        out.append(json.dumps({**body, "hash": prev, "hmac": mac}) + "\n")
    trail.write_text("".join(out))
    with StateStore(f"sqlite:///{demo.parent / '.retention' / 'state.db'}").engine.begin() as conn:
        conn.exec_driver_sql("UPDATE retention_audit_head SET hash = ?", (prev,))  # the forger has the store too
        conn.exec_driver_sql("UPDATE retention_runs SET audit_hash = ?", (prev,))

    forged = invoke("audit", "verify", "-c", demo)
    assert forged.exit_code == 1 and "HMAC does not match" in forged.output
    monkeypatch.delenv(KEY_FILE_ENV)
    unchecked = invoke("audit", "verify", trail)
    assert unchecked.exit_code == 0 and "NOT checked: no key given" in unchecked.output
    assert invoke("audit", "verify", trail, "--key-file", key_file).exit_code == 1


def test_a_trail_keyed_later_verifies_and_says_which_lines_are_keyed(demo: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert place(demo, "LH-1").exit_code == 0
    key_file = tmp_path / "audit.key"
    key_file.write_text("4f1c9a0d7e3b5a2c8d6e0f1a2b3c4d5e")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert place(demo, "LH-2").exit_code == 0
    result = invoke("audit", "verify", "-c", demo)
    assert result.exit_code == 0, result.output
    assert "lines 2–2 keyed" in result.output and "checked with the key" in result.output
    assert "lines 1–1 were written before the key" in result.output
    monkeypatch.delenv(KEY_FILE_ENV)
    refused = place(demo, "LH-3")  # a keyed trail is not extended without its key
    assert refused.exit_code == 2 and "is keyed" in refused.output and "RETENTION_AUDIT_KEY_FILE" in refused.output
    assert "LH-3" not in invoke("holds", "list", "-c", demo).output  # refused before the hold was stored


def test_an_audit_path_that_is_a_directory_is_one_line_exit_2(demo: Path) -> None:
    (demo.parent / ".retention" / "audit.jsonl").mkdir(parents=True)
    for args in (("run", "-c", demo), ("holds", "place", "-c", demo, "--id", "LH-9", "--kind", "legal",
                                       "--reason", "case", "--subject", "acme")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "internal error" not in result.output
        assert f"{trail_of(demo)}: cannot write the audit trail" in result.output
    assert "LH-9" not in invoke("holds", "list", "-c", demo).output  # not stored without its audit line
    verified = invoke("audit", "verify", "-c", demo)
    assert verified.exit_code == 2 and "cannot read the audit trail" in verified.output


def test_a_certificate_of_a_keyed_trail_checks_the_hmacs_and_says_so(demo: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("4f1c9a0d7e3b5a2c8d6e0f1a2b3c4d5e")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    run = invoke("run", "-c", demo)
    assert run.exit_code == 0, run.output
    run_id = run.output.split()[2]
    cert = json.loads(invoke("audit", "certificate", "-c", demo, "--run", run_id).stdout)
    assert cert["audit"]["keyed"] == {"from_line": 1, "key_id": json.loads(
        trail_of(demo).read_text().splitlines()[0])["key_id"], "hmac_checked": True}

    trail = trail_of(demo)
    lines = [json.loads(raw) for raw in trail.read_text().splitlines()]
    last = lines[-1]
    last["status"] = "forged"  # rehashed without the key; the last line, so no later link breaks
    body = {k: v for k, v in last.items() if k not in ("hash", "hmac")}
    last["hash"] = chain_hash(last["prev_hash"], body)
    trail.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with StateStore(f"sqlite:///{demo.parent / '.retention' / 'state.db'}").engine.begin() as conn:
        conn.exec_driver_sql("UPDATE retention_audit_head SET hash = ?", (last["hash"],))
        conn.exec_driver_sql("UPDATE retention_runs SET audit_hash = ?", (last["hash"],))
    refused = invoke("audit", "certificate", "-c", demo, "--run", run_id)
    assert refused.exit_code == 1 and "HMAC does not match" in refused.output
