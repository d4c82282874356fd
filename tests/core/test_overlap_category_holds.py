"""A category hold on one source's records holds them in a source declared to overlap it too
(red team, issue 16, round 2: the outer source deleted the inner source's held files)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import ok

OLD = 1_577_836_800  # 2020-01-01


def test_a_category_hold_reaches_the_overlapping_source(tmp_path: Path) -> None:
    for name in ("inner/a", "inner/b", "inner/c", "own/d"):
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, (OLD, OLD))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nstate: sqlite:///st/state.db\naudit: st/audit.jsonl\n"
        "categories:\n  logs: {retain: 30d, after: created}\n  inner: {retain: 30d, after: created}\n"
        "sources:\n"
        "  - {name: inner, backend: fs, options: {root: data/inner}, category: inner}\n"
        "  - {name: outer, backend: fs, options: {root: data}, category: logs, overlaps: [inner]}\n"
        "holds: [{id: H-IN, kind: legal, scope: {category: inner}, reason: case}]\nlimits: {}\n")
    ok("run", "-c", policy)
    assert sorted(p.name for p in (tmp_path / "data" / "inner").iterdir()) == ["a", "b", "c"]
