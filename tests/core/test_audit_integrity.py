"""The audit trail's integrity: a torn last line is repaired, not fatal; duplicate keys are
tampering; the keyed chain finds a rehashed rewrite; the head is recorded after every append."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core.audit import (
    KEY_ENV,
    KEY_FILE_ENV,
    AuditError,
    AuditTrail,
    Head,
    TrailKey,
    batch_entry,
    canonical,
    chain_hash,
    load_key,
    read,
    records,
    trail_for,
    verify,
)
from retention_core.errors import ConfigError
from retention_core.state import StateStore
from retention_core.testing import require_service

KEY = TrailKey(b"k" * 32)
POSTGRES = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB = os.environ.get("RETENTION_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def outcome_batch(outcomes: list[str]) -> dict[str, Any]:
    rows = [[f"a/{i}", None, None, "alice", "call", "expired", o, None] for i, o in enumerate(outcomes)]
    return batch_entry("outcome", "run-1", "calls", "delete", rows)


def rehash(path: Path, edit: Any = None, *, drop_keys: bool = False) -> None:
    """What someone without the key can do: edit lines and recompute every hash after them."""
    prev, out = "0" * 64, []
    for raw in path.read_text().splitlines():
        body = json.loads(raw)
        body.pop("hash")
        mac = body.pop("hmac", None)
        if drop_keys:
            body.pop("key_id", None)
            mac = None
        if edit is not None:
            edit(body)
        body["prev_hash"] = prev
        prev = chain_hash(prev, body)
        line = {**body, "hash": prev, **({"hmac": mac} if mac else {})}
        out.append(json.dumps(line, separators=(",", ":")) + "\n")
    path.write_text("".join(out))


# -- a torn last line -------------------------------------------------------------------------
def test_the_next_append_cuts_a_torn_last_line_and_journals_its_hash(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "run-start"}, {"event": "intent"}])
    whole = trail.path.read_bytes()
    torn = b'{"event":"outcome","seq":3,"recor'
    trail.path.write_bytes(whole + torn)
    assert not verify(trail.path).ok

    head = AuditTrail(trail.path).append([{"event": "hold-placed", "hold": "LH-1"}])

    entries = list(read(trail.path))
    assert [e["event"] for e in entries] == ["run-start", "intent", "trail-repaired", "hold-placed"]
    repaired = entries[2]
    assert repaired["cut_bytes"] == len(torn) and repaired["cut_offset"] == len(whole)
    assert repaired["cut_sha256"] == hashlib.sha256(torn).hexdigest()
    assert trail.path.read_bytes().startswith(whole)
    result = verify(trail.path)
    assert result.ok and result.head == head and head.seq == 4
    assert [(r.line, r.cut_bytes, r.cut_sha256) for r in result.repairs] == [
        (3, len(torn), hashlib.sha256(torn).hexdigest())]


def test_a_trail_that_is_only_a_torn_line_restarts_the_chain_with_the_repair(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq":1,"ev')
    AuditTrail(path).append([{"event": "run-start"}])
    assert [e["event"] for e in read(path)] == ["trail-repaired", "run-start"]
    assert verify(path).ok


def test_readers_stop_before_a_torn_last_line(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "run-start"}])
    with trail.path.open("ab") as f:
        f.write(b'{"event":"inte')
    assert [e["event"] for e in read(trail.path)] == ["run-start"]
    assert trail.head().seq == 1


def test_a_complete_last_line_that_is_not_an_entry_stops_the_writer_with_one_line(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "run-start"}])
    with trail.path.open("ab") as f:
        f.write(b"garbage\n")
    with pytest.raises(AuditError, match="the last line is not an audit entry"):
        AuditTrail(trail.path).append([{"event": "run-end"}])


# -- strict JSON ------------------------------------------------------------------------------
def test_a_duplicate_key_that_keeps_the_hash_valid_is_tampering(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "outcome", "location": "a/1", "outcome": "refused"}])
    trail.append([{"event": "run-end"}])
    text = trail.path.read_text().splitlines(keepends=True)
    # Python keeps the last "outcome" (so the hash still matches); a first-key reader sees "deleted".
    text[0] = text[0].replace('"outcome":"refused"', '"outcome":"deleted","outcome":"refused"')
    trail.path.write_text("".join(text))
    result = verify(trail.path)
    assert not result.ok and result.line == 1 and "'outcome' appears twice" in result.problem
    with pytest.raises(AuditError, match="line 1: .*'outcome' appears twice"):
        list(read(trail.path))
    with pytest.raises(AuditError):
        list(records(trail.path))


def test_a_batch_row_field_that_overrides_a_line_key_is_refused(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    entry = outcome_batch(["refused", "refused"])
    assert entry["outcome"] == "refused" and "outcome" not in entry["fields"]
    entry["fields"] = [*entry["fields"], "outcome"]
    entry["records"] = [[*row, "deleted"] for row in entry["records"]]
    trail.append([entry])  # as a rewrite with the hashes recomputed would leave it
    result = verify(trail.path)
    assert not result.ok and result.line == 1 and "'outcome' is both a key of the line" in result.problem
    with pytest.raises(AuditError, match="'outcome' is both"):
        list(records(trail.path))


def test_the_writer_refuses_an_entry_that_sets_the_keys_it_writes(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", key=KEY)
    for key in ("seq", "time", "prev_hash", "hash", "key_id", "hmac"):
        with pytest.raises(ValueError, match=f"may not set \\['{key}'\\]"):
            trail.append([{"event": "hold-placed", key: "x"}])
    assert not trail.path.read_bytes()


# -- the keyed chain --------------------------------------------------------------------------
def test_a_keyed_chain_verifies_with_its_key_and_says_so_without_it(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", key=KEY)
    trail.append([{"event": "run-start"}, outcome_batch(["deleted"])])
    first = json.loads(trail.path.read_text().splitlines()[0])
    assert first["key_id"] == KEY.id and len(first["hmac"]) == 64
    assert "k" * 32 not in trail.path.read_text()
    keyed = verify(trail.path, key=KEY)
    assert keyed.ok and keyed.hmac_checked and keyed.keyed_from == 1 and keyed.key_id == KEY.id
    unkeyed = verify(trail.path)
    assert unkeyed.ok and not unkeyed.hmac_checked and unkeyed.keyed_from == 1


def test_a_fully_rehashed_rewrite_fails_only_with_the_key(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", key=KEY)
    trail.append([{"event": "run-start"}])
    trail.append([{"event": "outcome", "location": "a/1", "outcome": "refused"}])
    trail.append([{"event": "run-end"}])

    def forge(body: dict[str, Any]) -> None:
        if body.get("outcome") == "refused":
            body["outcome"] = "deleted"

    rehash(trail.path, forge)
    assert verify(trail.path).ok  # the plain chain cannot tell a rewrite from the original
    result = verify(trail.path, key=KEY)
    assert not result.ok and result.line == 2 and "HMAC does not match" in result.problem


def test_stripping_every_hmac_and_rehashing_fails_with_the_key(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", key=KEY)
    trail.append([{"event": "run-start"}, {"event": "run-end"}])
    rehash(trail.path, drop_keys=True)
    assert verify(trail.path).ok
    result = verify(trail.path, key=KEY)
    assert not result.ok and "no line is keyed" in result.problem


def test_a_trail_started_without_a_key_then_keyed_verifies_and_says_from_where(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditTrail(path).append([{"event": "run-start"}, {"event": "run-end"}])
    AuditTrail(path, key=KEY).append([{"event": "run-start"}, {"event": "run-end"}])
    result = verify(path, key=KEY)
    assert result.ok and result.keyed_from == 3 and result.lines == 4
    # The unkeyed lines are covered by the first keyed line's HMAC over their hash chain.
    rehash(path, lambda body: body.update(event="forged") if body["seq"] == 1 else None)
    assert not verify(path, key=KEY).ok


def test_an_unkeyed_line_after_keyed_ones_fails_even_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditTrail(path, key=KEY).append([{"event": "run-start"}])
    lines = path.read_text().splitlines(keepends=True)
    body = json.loads(lines[0])
    extra = {"seq": 2, "time": body["time"], "event": "run-end", "prev_hash": body["hash"]}
    path.write_text(lines[0] + canonical({**extra, "hash": chain_hash(body["hash"], extra)}) + "\n")
    result = verify(path)
    assert not result.ok and result.line == 2 and "not keyed" in result.problem


def test_a_keyed_trail_is_not_extended_without_its_key_or_with_another(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditTrail(path, key=KEY).append([{"event": "run-start"}])
    with pytest.raises(AuditError, match="is keyed .* no key is set"):
        AuditTrail(path).append([{"event": "hold-placed"}])
    with pytest.raises(AuditError, match="not with the given key"):
        AuditTrail(path, key=TrailKey(b"x" * 32)).append([{"event": "hold-placed"}])
    with pytest.raises(AuditError, match="is keyed .* no key is set"):
        trail_for(path)  # before the command changes anything
    assert verify(path, key=KEY).ok and verify(path, key=KEY).lines == 1
    result = verify(path, key=TrailKey(b"x" * 32))
    assert not result.ok and "not with the given key" in result.problem


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("0123456789abcdef0123456789abcdef\n")
    from_file = load_key(environ={KEY_FILE_ENV: str(key_file)})
    assert from_file == TrailKey(b"0123456789abcdef0123456789abcdef")
    assert load_key(environ={KEY_ENV: "0123456789abcdef0123456789abcdef"}) == from_file
    assert load_key(environ={}) is None
    with pytest.raises(ConfigError, match="at least 16"):
        load_key(environ={KEY_ENV: "short"})
    with pytest.raises(ConfigError, match="only one of"):
        load_key(environ={KEY_ENV: "x" * 20, KEY_FILE_ENV: str(key_file)})
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}: cannot read the audit key"):
        load_key(environ={KEY_FILE_ENV: str(tmp_path / "nope")})


# -- the recorded head ------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state store on each database the tool supports (a schema or database of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    name = f"audit_head_{uuid.uuid4().hex[:12]}"
    server = POSTGRES if request.param == "postgresql" else MARIADB
    create, drop = ((f"CREATE SCHEMA {name}", f"DROP SCHEMA {name} CASCADE") if request.param == "postgresql"
                    else (f"CREATE DATABASE {name}", f"DROP DATABASE {name}"))
    problem = None
    try:
        engine = sa.create_engine(server, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.exec_driver_sql(create)
    except Exception as exc:  # a missing driver counts as a missing service
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    require_service(problem is None, f"{request.param} at {server} ({problem})")
    try:
        yield (f"{POSTGRES}?options=-csearch_path%3D{name}" if request.param == "postgresql"
               else f"{MARIADB}/{name}")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(drop)
        engine.dispose()


def test_every_synced_append_records_the_head_and_it_only_moves_forward(tmp_path: Path, state_url: str) -> None:
    state = StateStore(state_url)
    try:
        assert state.audit_head() is None
        trail = trail_for(tmp_path / "audit.jsonl", state)
        trail.append([{"event": "run-start"}])
        assert state.audit_head() == (1, trail.head().hash)
        trail.append([{"event": "outcome"}], sync=False)  # not on disk yet: not recorded
        assert state.audit_head()[0] == 1
        head = trail.append([{"event": "hold-placed"}])
        assert state.audit_head() == (head.seq, head.hash) == (3, head.hash)
        state.record_audit_head(2, "f" * 64)  # a slower writer finishing late
        assert state.audit_head() == (3, head.hash)
        state.start_run("r1", datetime.now(timezone.utc), dry_run=False)
        state.finish_run("r1", "ok", 7, "e" * 64)  # a head recorded only at run end still counts
        assert state.audit_head() == (7, "e" * 64)
    finally:
        state.close()


def test_the_recorded_head_finds_lines_removed_after_the_last_run(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "run-end"}])
    head = trail.append([{"event": "hold-placed"}, {"event": "hold-released"}])
    trail.path.write_text(trail.path.read_text().splitlines(keepends=True)[0])
    assert verify(trail.path).ok
    result = verify(trail.path, expect=Head(head.seq, head.hash))
    assert not result.ok and "removed from the end" in result.problem


# -- a path that cannot be a trail ------------------------------------------------------------
def test_a_directory_or_a_path_under_a_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'dir.jsonl'}: cannot write the audit trail.*directory"):
        trail_for(tmp_path / "dir.jsonl")
    with pytest.raises(ConfigError, match="directory"):
        AuditTrail(tmp_path / "dir.jsonl").append([{"event": "run-start"}])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'file'} is not a directory"):
        trail_for(tmp_path / "file" / "sub" / "audit.jsonl")
    with pytest.raises(ConfigError, match="cannot write the audit trail"):
        AuditTrail(tmp_path / "file" / "audit.jsonl").append([{"event": "run-start"}])
    with pytest.raises(ConfigError, match="cannot read the audit trail"):
        verify(tmp_path / "dir.jsonl")
