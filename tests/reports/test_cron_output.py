"""Output under cron: quiet plain lines by default, JSON lines on request, a progress bar on a TTY."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retention_core import logs
from retention_core.testing.builders import PolicyBuilder


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    yield
    logs.configure("text", 0)


def test_default_is_quiet_when_not_a_tty(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("run", "-c", demo.policy, "--dry-run")
    assert result.exit_code == 0
    # Nothing for cron to mail but the summary on stdout and the one thing wrong: dana's overdue request.
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("retention: warning: erasure request ") and ": overdue, due 2026-05-22" in warning
    assert "\r" not in result.output
    assert result.stdout.startswith("retention run ")


def test_summary_says_what_each_hold_protected(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("run", "-c", demo.policy, "--as-of", "2026-06-01T12:00:00Z")
    assert "  hold LH-2026-014 (legal, subject=globex): protected 4 records" in result.stdout.splitlines()


def test_json_log_format_is_one_object_per_line(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("--log-format", "json", "-v", "run", "-c", demo.policy, "--dry-run")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events] == ["run-start", "source-done", "source-done", "warning", "run-end"]
    assert all({"time", "level", "event", "message"} <= set(e) for e in events)
    assert events[1]["source"] == "recordings" and events[1]["scanned"] == 18
    end = events[-1]
    assert end["exit_code"] == 0 and end["dry_run"] is True and end["summary"]["hold"] == 4


def test_json_errors_are_json_too(retention_cli: Any, tmp_path: Path) -> None:
    result = retention_cli("--log-format", "json", "run", "-c", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    error = json.loads(line)
    assert error["level"] == "error" and error["exit_code"] == 2 and "config file not found" in error["message"]


def test_log_format_from_the_environment(retention_cli: Any, demo: Any) -> None:
    result = retention_cli("-v", "run", "-c", demo.policy, "--dry-run", env={"RETENTION_LOG_FORMAT": "json"})
    assert json.loads(result.stderr.splitlines()[0])["event"] == "run-start"


def test_plugin_loggers_follow_the_format() -> None:
    stream = io.StringIO()
    logs.configure("json", 0, stream)
    logging.getLogger("retention.fs").warning("cannot list %s: %s", "a/b", "Permission denied")
    line = json.loads(stream.getvalue())
    assert line == {**line, "level": "warning", "logger": "retention.fs", "event": "log",
                    "message": "cannot list a/b: Permission denied"}
    stream = io.StringIO()
    logs.configure("text", 0, stream)
    logging.getLogger("retention.fs").info("not shown without -v")
    logging.getLogger("retention.fs").warning("shown")
    assert stream.getvalue() == "retention: warning: shown\n"


def test_progress_bar_shows_counts_and_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: True)  # click draws only on a terminal
    bar = logs.ProgressBar(["calls", "chats"], stream)
    bar("calls", 1000)
    bar("calls", 2500)
    bar("chats", 40)
    bar.deleted("calls", 1000, 2000)
    bar.deleted("calls", 1000, 2000)
    bar.finish()
    frames = stream.getvalue().split("\r")
    assert any("scanning" in f and "0/2" in f and "calls: 2,500 records" in f and "/s" in f for f in frames)
    assert any("1/2" in f and "chats: 40 records · 2,540 in all" in f for f in frames)  # calls done
    assert any("deleting calls" in f and "1000/2000" in f and "50%" in f and "1,000 records" in f for f in frames)
    assert any("deleting calls" in f and "2000/2000" in f and "100%" in f for f in frames)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a pseudo-terminal")
def test_a_terminal_gets_the_progress_bar(tmp_path: Path) -> None:
    """A real TTY on stdout and stderr (a pty), the installed CLI in a subprocess, fs storage:
    a bar while scanning, then one per source while deleting (counts, rate, ETA)."""
    for n in range(5):
        path = tmp_path / "data" / f"s{n}" / "note.txt"
        path.parent.mkdir(parents=True)
        path.write_text("x")
        os.utime(path, (0, 0))  # 1970: long due
    policy = PolicyBuilder(tmp_path).write(
        categories={"note": {"retain": "1y"}},
        sources=[{"name": "notes", "backend": "fs", "options": {"root": "data"},
                  "match": "(?P<subject>[^/]+)/.+", "category": "note"}])
    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-c", "from retention_core.cli import main; main()", "run", "-c",
                           str(policy), "--allow-over-limit", "notes"], stdin=follower, stdout=follower,
                          stderr=follower,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60, check=False)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed and drained
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "scanning" in out and "1/1" in out and "notes: 5 records · 5 in all" in out
    assert "deleting notes" in out and "5/5" in out and "100%" in out and "5 records · " in out
    assert "retention run " in out and "deleted 5" in out
    assert not list((tmp_path / "data").rglob("*.txt"))
