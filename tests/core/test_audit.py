import json

import pytest

from retention_core.audit import AuditTrail, Head, batch_entry, records, verify


@pytest.fixture
def trail(tmp_path):
    t = AuditTrail(tmp_path / "audit.jsonl")
    t.append([{"event": "intent", "location": f"f{i}"} for i in range(3)])
    t.append([{"event": "outcome", "location": f"f{i}", "outcome": "deleted"} for i in range(3)])
    return t


def lines(trail):
    return trail.path.read_text().splitlines(keepends=True)


def test_intact_chain_verifies_and_continues_across_appends(trail):
    result = verify(trail.path)
    assert result.ok and result.lines == 6 and result.head == trail.head()
    entries = [json.loads(x) for x in lines(trail)]
    assert [e["seq"] for e in entries] == list(range(1, 7))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))


def test_an_edit_is_found(trail):
    text = lines(trail)
    text[3] = text[3].replace('"deleted"', '"refused"')
    trail.path.write_text("".join(text))
    result = verify(trail.path)
    assert not result.ok and result.line == 4 and "edited" in result.problem


def test_a_deleted_line_is_found(trail):
    text = lines(trail)
    del text[2]
    trail.path.write_text("".join(text))
    result = verify(trail.path)
    assert not result.ok and result.line == 3


def test_reordering_is_found(trail):
    text = lines(trail)
    text[1], text[2] = text[2], text[1]
    trail.path.write_text("".join(text))
    assert verify(trail.path).line == 2


def test_a_cut_last_line_is_found(trail):
    trail.path.write_text(trail.path.read_text()[:-10])
    result = verify(trail.path)
    assert not result.ok and "truncated" in result.problem


def test_dropping_whole_trailing_lines_is_found_against_the_recorded_head(trail):
    head = trail.head()
    trail.path.write_text("".join(lines(trail)[:4]))
    assert verify(trail.path).ok  # the chain alone cannot tell...
    result = verify(trail.path, expect=head)  # ...the head kept in the state store can
    assert not result.ok and "truncated" in result.problem


def test_rewriting_the_whole_chain_is_found_against_the_recorded_head(trail, tmp_path):
    head = trail.head()
    forged = AuditTrail(tmp_path / "forged.jsonl")
    forged.append([{"event": "intent", "location": f"g{i}"} for i in range(6)])
    assert not verify(forged.path, expect=head).ok
    assert verify(trail.path, expect=Head(head.seq, head.hash)).ok


def test_a_batch_entry_is_one_line_that_expands_to_one_dict_per_record(tmp_path):
    t = AuditTrail(tmp_path / "audit.jsonl")
    rows = [["a/1", None, None, "alice", "call", "expired"], ["b/\\xff", "622fff", "v2", "bob", "call", "erasure"]]
    t.append([batch_entry("intent", "run-1", "calls", "delete", rows)])
    t.append([{"event": "outcome", "run_id": "run-0", "location": "old/1", "outcome": "deleted"}])  # 0.1 format
    assert len(lines(t)) == 2 and verify(t.path).ok
    expanded = list(records(t.path))
    assert [e["location"] for e in expanded] == ["a/1", "b/\\xff", "old/1"]
    assert expanded[1] == {**expanded[1], "event": "intent", "run_id": "run-1", "source": "calls", "action": "delete",
                           "location_hex": "622fff", "version": "v2", "subject": "bob", "reason": "erasure"}
    assert "fields" not in expanded[0] and "records" not in expanded[0] and expanded[0]["seq"] == 1
    assert expanded[2]["outcome"] == "deleted" and expanded[2]["seq"] == 2


def test_editing_one_record_inside_a_batch_line_breaks_the_chain(tmp_path):
    t = AuditTrail(tmp_path / "audit.jsonl")
    t.append([batch_entry("outcome", "run-1", "calls", "delete",
                          [[f"a/{i}", None, None, "alice", "call", "expired", "deleted", None] for i in range(3)])])
    text = lines(t)
    t.path.write_text(text[0].replace('"a/1"', '"a/9"', 1))
    assert not verify(t.path).ok


def test_two_writers_interleaving_appends_keep_one_chain(tmp_path):
    a, b = AuditTrail(tmp_path / "audit.jsonl"), AuditTrail(tmp_path / "audit.jsonl")
    a.append([{"event": "run-start"}])
    b.append([{"event": "hold-placed"}])  # another process, between two of a's batches
    a.append([{"event": "run-end"}])
    result = verify(a.path)
    assert result.ok and result.lines == 3 and result.head == a.head() == b.head()
