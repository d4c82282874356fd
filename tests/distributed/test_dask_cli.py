"""`retention run --executor dask` and `executor:` from the command line, as a newcomer runs them:
a SQLite state store refused in one line, a local run that never imports Dask, and a run on a
LocalCluster the command starts itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import audit
from retention_core.testing.builders import PolicyBuilder

OLD = (datetime.now(timezone.utc) - timedelta(days=100)).timestamp()


def fs_policy(folder: Path, **top: Any) -> Path:
    root = folder / "data"
    for subject in ("alice", "bob", "carol"):
        for i in range(3):
            path = root / subject / f"rec-{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            if i < 2:
                os.utime(path, (OLD, OLD))
    return PolicyBuilder(folder).write(
        categories={"data": {"retain": "30d"}},
        sources=[{"name": "files", "backend": "fs", "options": {"root": str(root)}, "category": "data",
                  "match": "(?P<subject>[^/]+)/rec-.+"}],
        subjects=[{"subject_id": s, "controller": "acme"} for s in ("alice", "bob", "carol")],
        limits={"max_fraction": 1.0}, **top)


def retention(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "retention_core", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RETENTION_LOG_FORMAT": "text"})


def test_a_distributed_run_on_a_sqlite_state_store_is_refused(tmp_path: Path) -> None:
    policy = fs_policy(tmp_path)  # the builder's default state: SQLite next to the policy
    done = retention("run", "-c", policy, "--executor", "dask")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "PostgreSQL" in lines[0] and "state" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert len(list((tmp_path / "data").rglob("*.bin"))) == 9  # nothing deleted


def test_scheduler_needs_the_dask_executor(tmp_path: Path) -> None:
    done = retention("run", "-c", fs_policy(tmp_path), "--executor", "local", "--scheduler", "tcp://127.0.0.1:1")
    assert done.returncode == 2 and "--scheduler needs --executor dask" in done.stderr


@pytest.mark.parametrize("address", ["garbage://x", "", "tcp://", "tcp://host:99999", "host:8786 extra"])
def test_a_scheduler_address_that_is_not_one_is_a_one_line_error(tmp_path: Path, address: str) -> None:
    """F09: ``--scheduler garbage://x`` was an internal ValueError, ``--scheduler ''`` a local run."""
    done = retention("run", "-c", fs_policy(tmp_path), "--scheduler", address)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--scheduler" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert len(list((tmp_path / "data").rglob("*.bin"))) == 9  # nothing deleted
    assert not (tmp_path / "audit.jsonl").exists()  # found before a run starts


@pytest.mark.parametrize("address", ["garbage://x", "", "tcp://h:0"])
def test_a_policy_scheduler_address_that_is_not_one_is_a_one_line_error(tmp_path: Path, address: str) -> None:
    policy = fs_policy(tmp_path, executor={"kind": "dask", "scheduler": address})
    done = retention("run", "-c", policy)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "executor.scheduler" in lines[0] and str(policy) in lines[0], done.stderr
    assert len(list((tmp_path / "data").rglob("*.bin"))) == 9


def test_a_local_run_imports_nothing_of_dask(tmp_path: Path) -> None:
    policy = fs_policy(tmp_path)
    probe = ("import sys\n"
             "from retention_core.cli import cli\n"
             f"try:\n    cli.main(['run', '-c', {str(policy)!r}, '-q'], standalone_mode=False)\n"
             "except SystemExit:\n    pass\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(list((tmp_path / "data").rglob("*.bin"))) == 3  # the run did enforce


def test_executor_from_the_policy_runs_on_a_local_cluster(tmp_path: Path, pg_state: str) -> None:
    policy = fs_policy(tmp_path, state=pg_state, executor={"kind": "dask", "workers": 2})
    done = retention("run", "-c", policy, "--report", tmp_path / "run.json")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.bin")) == ["rec-2.bin"] * 3
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["outcomes"]["deleted"] == 6
    trail = tmp_path / "audit.jsonl"
    assert audit.verify(trail).ok
    assert sum(e.get("outcome") == "deleted" for e in audit.records(trail)) == 6
    assert not list(trail.parent.glob("audit.jsonl.segments/*.work")), "the work dir (plan files) is removed"


def test_scheduler_runs_on_an_existing_cluster(tmp_path: Path, pg_state: str, cluster: Any) -> None:
    """--scheduler ADDRESS: the command connects to a running cluster (this module's) instead of
    starting one, and leaves it running."""
    address = cluster.cluster.scheduler_address
    policy = fs_policy(tmp_path, state=pg_state)
    done = retention("run", "-c", policy, "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.bin")) == ["rec-2.bin"] * 3
    assert audit.verify(tmp_path / "audit.jsonl").ok
    assert [e for e in audit.read(tmp_path / "audit.jsonl") if e["event"] == "segment"]
    assert cluster.client.scheduler_info()["workers"], "the cluster is still there"


def test_the_documented_demo_command_runs_as_written(tmp_path: Path, pg_state: str) -> None:
    """docs/scaling.md's one command (and the user guide's copy of it), with only the PostgreSQL
    URL (a schema of this test's own) and /tmp/demo (this test's folder) swapped in."""
    root = Path(__file__).resolve().parents[2]
    commands = []
    for doc in ("scaling.md", "user-guide.md"):
        text = (root / "docs" / doc).read_text(encoding="utf-8")
        [command] = [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
                     if "--executor dask" in b and "config/demo" in b]
        commands.append(command)
    assert commands[0] == commands[1], "the two docs give the same command"
    documented = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert documented in commands[0]
    command = commands[0].replace(documented, pg_state).replace("/tmp/demo", str(tmp_path / "demo"))
    done = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RETENTION_LOG_FORMAT": "text"})
    assert done.returncode == 0, done.stderr
    assert "outcomes: deleted 11, anonymized 0, already_gone 0, refused 0, failed 0, changed 0" in done.stdout
    assert audit.verify(tmp_path / "demo" / ".retention" / "audit.jsonl").ok


def test_make_executor_refuses_a_bad_address_before_it_imports_dask() -> None:
    from retention_core.errors import ConfigError
    from retention_core.executors import make_executor

    with pytest.raises(ConfigError, match=r"executor\.scheduler: unknown scheme 'garbage'"):
        make_executor("dask", "garbage://x")
