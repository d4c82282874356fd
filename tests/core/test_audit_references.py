"""Files a trail line refers to (interfaces.md part B): evidence files hold a batch's rows,
segments hold a partition's whole trail. Readers read through both; ``verify`` checks both
(existence, SHA-256, row or line count; segments as trails, with the same key) and names the file."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from retention_core.audit import (
    KEY_ENV,
    KEY_FILE_ENV,
    STREAMED_FIELDS,
    AuditError,
    AuditTrail,
    EvidenceWriter,
    TrailKey,
    batch_entry,
    copy_text_row,
    evidence_dir,
    evidence_ref,
    expand,
    file_sha256,
    parse_copy_text,
    read,
    records,
    verify,
    walk,
)
from retention_core.cli import cli as main
from retention_core.journal import row as journal_row
from retention_core.model import Action, Decision, Record

KEY = TrailKey(b"k" * 32)
#: Values COPY text format must carry exactly: NULL vs '', backslashes, tabs, newlines, a literal \N.
AWKWARD = [("1", None), ("2", ""), ("3", "a\tb"), ("4", "line\nbreak\r"), ("5", "back\\slash"), ("6", "\\N"),
           ("é-7", "ünï"), ("8", "\b\f\v")]


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def write_evidence(trail: Path, name: str, rows: list[tuple[str | None, ...]]) -> dict[str, Any]:
    writer = EvidenceWriter(evidence_dir(trail, "run-1") / name)
    for row in rows:
        writer.write(copy_text_row(row))
    count, digest = writer.finish()
    return evidence_ref(trail.parent, writer.path, count, digest)


def streamed_line(event: str, ref: dict[str, Any]) -> dict[str, Any]:
    line = {"event": event, "run_id": "run-1", "source": "calls", "action": "delete", "version": None,
            "category": "call", "reason": "expired", "fields": list(STREAMED_FIELDS), "evidence": ref, "batch": "b1"}
    if event == "outcome":
        line.update(outcome="deleted", error=None)
    return line


def classic_lines(rows: list[tuple[str | None, ...]]) -> list[dict[str, Any]]:
    when = datetime(2020, 1, 1, tzinfo=timezone.utc)
    decision = Decision(Action.DELETE, "expired")
    intent = [journal_row(Record("calls", str(loc), when, None, None, subject, "call"), decision)
              for loc, subject in rows]
    lines = [batch_entry("intent", "run-1", "calls", "delete", intent),
             batch_entry("outcome", "run-1", "calls", "delete", [[*r, "deleted", None] for r in intent])]
    for line in lines:
        line["batch"] = "b1"
    return lines


def without_line_keys(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("seq", "time", "hash", "prev_hash")} for e in entries]


def test_copy_text_rows_round_trip_byte_exact() -> None:
    for row in AWKWARD:
        data = copy_text_row(row)
        assert data.count(b"\n") == 1
        assert parse_copy_text(data[:-1], 2) == list(row)
    # what PostgreSQL writes for octal and hex escapes reads too
    assert parse_copy_text(b"\\101\\x42\tc", 2) == ["AB", "c"]


def test_streamed_lines_read_back_identical_to_classic_batch_lines(tmp_path: Path) -> None:
    trail_a, trail_b = tmp_path / "a" / "audit.jsonl", tmp_path / "b" / "audit.jsonl"
    AuditTrail(trail_a).append(classic_lines(AWKWARD))
    ref = write_evidence(trail_b, "000001.tsv", AWKWARD)
    AuditTrail(trail_b).append([streamed_line("intent", ref), streamed_line("outcome", ref)])
    classic, streamed = list(records(trail_a)), list(records(trail_b))
    assert len(streamed) == 2 * len(AWKWARD)
    assert without_line_keys(streamed) == without_line_keys(classic)
    assert verify(trail_b).ok
    # expand() needs the trail's directory to find the file, and says so
    entry = next(read(trail_b))
    with pytest.raises(AuditError, match="000001.tsv"):
        list(expand(entry))
    assert len(list(expand(entry, trail_b.parent))) == len(AWKWARD)


@pytest.mark.parametrize("damage", ["tampered", "missing", "truncated", "extended"])
@pytest.mark.parametrize("keyed", [False, True])
def test_verify_fails_naming_a_damaged_evidence_file(tmp_path: Path, damage: str, keyed: bool) -> None:
    trail = tmp_path / "audit.jsonl"
    ref = write_evidence(trail, "000001.tsv", AWKWARD)
    AuditTrail(trail, key=KEY if keyed else None).append([streamed_line("intent", ref), streamed_line("outcome", ref)])
    assert verify(trail, key=KEY if keyed else None).ok
    path = tmp_path / ref["file"]
    data = path.read_bytes()
    if damage == "tampered":
        path.write_bytes(data.replace(b"\\N", b"x", 1))
    elif damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])
    else:
        path.write_bytes(data + b"9\tmallory\n")
    result = verify(trail, key=KEY if keyed else None)
    assert not result.ok and result.line == 1
    assert str(path) in (result.problem or "")
    # and the CLI: one line naming the file, non-zero exit, no traceback
    out = CliRunner().invoke(main, ["audit", "verify", str(trail)],
                             env={KEY_ENV: (KEY.secret.decode() if keyed else "")})
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "000001.tsv" in out.output


def test_a_line_whose_evidence_reference_was_rewritten_fails_with_the_key(tmp_path: Path) -> None:
    """Someone without the key swaps in another file and fixes the line's sha256: the line's
    hash changes, so the chain (and with a key, the HMAC) catches it."""
    trail = tmp_path / "audit.jsonl"
    ref = write_evidence(trail, "000001.tsv", AWKWARD[:2])
    AuditTrail(trail, key=KEY).append([streamed_line("intent", ref)])
    other = tmp_path / ref["file"]
    other.write_bytes(copy_text_row(("1", None)))
    digest, rows = file_sha256(other)
    text = trail.read_text().replace(ref["sha256"], digest).replace('"rows":2', f'"rows":{rows}')
    trail.write_text(text)
    assert not verify(trail, key=KEY).ok


def test_evidence_outside_the_trails_directory_is_refused(tmp_path: Path) -> None:
    trail = tmp_path / "t" / "audit.jsonl"
    ref = write_evidence(trail, "000001.tsv", AWKWARD[:1])
    AuditTrail(trail).append([streamed_line("intent", {**ref, "file": "../elsewhere.tsv"})])
    result = verify(trail)
    assert not result.ok and "not inside the trail's directory" in (result.problem or "")


def test_a_stream_cut_mid_row_is_refused_by_the_writer(tmp_path: Path) -> None:
    writer = EvidenceWriter(tmp_path / "e" / "1.tsv")
    writer.write(b"1\talice\n2\tbo")
    with pytest.raises(AuditError, match="no newline"):
        writer.finish()
    writer.abandon()
    with pytest.raises(FileExistsError):  # never overwritten
        EvidenceWriter(tmp_path / "e" / "1.tsv")


# -- segments ---------------------------------------------------------------------------------------
def make_segment(trail: Path, key: TrailKey | None) -> tuple[Path, dict[str, Any]]:
    segment = trail.parent / "audit.jsonl.segments" / "run-1" / "p0.jsonl"
    ref = write_evidence(segment, "000001.tsv", AWKWARD)
    head = AuditTrail(segment, key=key).append([streamed_line("intent", ref), streamed_line("outcome", ref)])
    digest, lines = file_sha256(segment)
    return segment, {"file": str(segment.relative_to(trail.parent)), "lines": lines, "head": head.hash,
                     "sha256": digest}


@pytest.mark.parametrize("keyed", [False, True])
def test_segments_read_through_and_verify_as_trails(tmp_path: Path, keyed: bool) -> None:
    key = KEY if keyed else None
    trail = tmp_path / "audit.jsonl"
    segment, ref = make_segment(trail, key)
    AuditTrail(trail, key=key).append([{"event": "run-start", "run_id": "run-1"},
                                       {"event": "segment", "run_id": "run-1", "segment": ref},
                                       {"event": "run-end", "run_id": "run-1"}])
    assert verify(trail, key=key).ok
    got = list(records(trail))
    assert [e["event"] for e in got] == ["run-start", *["intent"] * len(AWKWARD), *["outcome"] * len(AWKWARD),
                                         "run-end"]
    lines = list(walk(trail))
    assert lines[1].top["event"] == "segment" and lines[1].base == segment.parent
    # an altered evidence file inside the segment is named through the segment
    evidence = segment.parent / next(read(segment))["evidence"]["file"]
    evidence.write_bytes(evidence.read_bytes()[:-3] + b"z\n")
    result = verify(trail, key=key)
    assert not result.ok and str(segment) in (result.problem or "") and "000001.tsv" in (result.problem or "")


def test_a_segment_keyed_otherwise_than_its_trail_fails(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    _, ref = make_segment(trail, None)
    AuditTrail(trail, key=KEY).append([{"event": "segment", "run_id": "run-1", "segment": ref}])
    result = verify(trail, key=KEY)
    assert not result.ok and "keyed" in (result.problem or "")


def test_a_segment_with_a_line_removed_fails(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    segment, ref = make_segment(trail, None)
    AuditTrail(trail).append([{"event": "segment", "run_id": "run-1", "segment": ref}])
    segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[:1]))
    result = verify(trail)
    assert not result.ok and str(segment) in (result.problem or "")
    segment.unlink()
    assert "missing" in (verify(trail).problem or "")


def test_streamed_rows_hash_what_was_written(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    ref = write_evidence(trail, "x.tsv", AWKWARD)
    data = (tmp_path / ref["file"]).read_bytes()
    assert ref["sha256"] == hashlib.sha256(data).hexdigest() and ref["rows"] == len(AWKWARD)


def test_a_file_where_the_trail_keeps_its_evidence_is_a_config_error_before_the_run(tmp_path):
    """Adversarial review F09: `<trail>.evidence` as a regular file was a NotADirectoryError mid-run."""
    from retention_core.audit import check_writable
    from retention_core.errors import ConfigError

    trail = tmp_path / "audit.jsonl"
    for suffix in (".evidence", ".segments"):
        beside = tmp_path / f"audit.jsonl{suffix}"
        beside.write_text("not a directory")
        try:
            check_writable(trail)
        except ConfigError as exc:
            assert str(beside) in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{beside} as a file was accepted")
        beside.unlink()
    check_writable(trail)


def test_a_trail_that_cannot_be_written_is_one_line_never_an_internal_error(tmp_path, monkeypatch):
    """Adversarial review round 2 (F07): a full disk was 'internal error: OSError [Errno 28]';
    a device as the trail passed validate."""
    import errno
    import os

    from retention_core.audit import AuditTrail, check_writable
    from retention_core.errors import AuditError, ConfigError

    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append([{"event": "first"}])
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(AuditError) as raised:
        trail.append([{"event": "second"}])
    monkeypatch.setattr(os, "write", real_write)
    assert "cannot write the audit trail" in str(raised.value) and "No space left" in str(raised.value)
    assert "\n" not in str(raised.value)
    if os.path.exists("/dev/full"):
        with pytest.raises(ConfigError, match="not a regular file"):
            check_writable(Path("/dev/full"))
