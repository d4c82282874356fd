"""The benchmark suite runs end to end with tiny N and produces its table.

Nothing here asserts on time: timing goals live in the benchmark (docs/performance.md).
What is asserted is that every expected row is there and that every contender selected (or
left) exactly what the workload expected — the suite itself raises when one does not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the bench package lives at the top of the repository, uninstalled

from bench import motoserver, tools  # noqa: E402
from bench.workloads import sql  # noqa: E402
from retention_core.testing import require_service  # noqa: E402

N = "240"


def bench(tmp_path: Path, suite: str) -> dict[str, list[list[str]]]:
    """Run ``python -m bench`` like a person would; return the table's rows by workload."""
    out = tmp_path / "performance.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--suite", suite, "--n", N, "--rounds", "1",
                           "--write", str(out), "--workdir", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert f"<!-- bench:table:start {suite} -->" in text and f"--suite {suite}" in text
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] not in ("workload", "---"):
            rows.setdefault(cells[0], []).append(cells)
    return rows


def contenders(rows: list[list[str]]) -> list[str]:
    return [r[1].split(" (")[0] for r in rows]


def assert_selections_match(rows: list[list[str]]) -> None:
    for row in rows:
        found = re.search(r": ([\d,/]+) \(expected ([\d,]+)\)$", row[9])
        assert found, row
        assert found.group(1) == found.group(2), row  # one value, the expected one


def test_fs_engine_and_memory_workloads_produce_their_rows(tmp_path: Path) -> None:
    rows = bench(tmp_path, "fs,engine,memory")
    assert set(rows) == {f"fs dry-run ({N} files)", f"fs enforce ({N} files)", f"engine decide() ({N} records)",
                         f"memory: dry-run {N} vs 24 records"}
    assert contenders(rows[f"fs dry-run ({N} files)"]) == ["retention", "find -mtime +365 -print",
                                                          "python scandir+lstat"]
    assert contenders(rows[f"fs enforce ({N} files)"]) == ["retention", "find -mtime +365 -delete",
                                                          "python scandir+unlink", "python guarded floor"]
    for name in (f"fs dry-run ({N} files)", f"fs enforce ({N} files)", f"engine decide() ({N} records)"):
        assert_selections_match(rows[name])
    dry = rows[f"fs dry-run ({N} files)"]
    assert dry[0][9] == dry[1][9]  # retention and find selected the same number of files
    assert [r[3] for r in rows[f"memory: dry-run {N} vs 24 records"]] == [N, "24"]
    assert all(float(r[8]) > 0 for rs in rows.values() for r in rs)  # a peak RSS was measured


@pytest.mark.moto_server
def test_s3_workloads_run_against_a_moto_server(tmp_path: Path) -> None:
    require_service(motoserver.available() is None, "moto server (pip install 'moto[server]')")
    rows = bench(tmp_path, "s3")
    assert contenders(rows[f"s3 dry-run ({N} objects, moto)"]) == ["retention", "boto3 list_objects_v2 paginate",
                                                                   "s5cmd ls"]
    assert contenders(rows[f"s3 enforce ({N} objects, moto)"]) == ["retention", "boto3 list + delete_objects ×1000",
                                                                   "s5cmd rm", "aws s3 rm --recursive"]
    for name in rows:
        # A peer program that is not installed keeps its row, marked as such; ours always runs.
        measured = [r for r in rows[name] if not r[9].startswith(("FAILED", "not run"))]
        assert measured[0][1].startswith("retention")
        assert_selections_match(measured)
    if tools.s5cmd() is None or tools.aws() is None:
        assert any("not installed" in r[9] for rs in rows.values() for r in rs)


@pytest.mark.parametrize("kind", [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
])
def test_sql_workload_leaves_the_same_rows_for_every_contender(tmp_path: Path, kind: str) -> None:
    if kind != "sqlite":
        why = sql.reachable(sql.URLS[kind])
        require_service(why is None, f"{kind} ({why})")
    rows = bench(tmp_path, f"sql-{kind}")
    (name,) = rows
    # ours, the raw DELETE, the evidence floor, the nibbling loop; on PostgreSQL also the streamed COPY floor
    assert contenders(rows[name])[0] == "retention" and len(rows[name]) == (5 if kind == "postgresql" else 4)
    assert any(c.startswith("evidence floor:") for c in contenders(rows[name]))
    assert_selections_match(rows[name])
    assert rows[name][0][9].endswith(f"(expected {sql.kept(int(N)):,})")
