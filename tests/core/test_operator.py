"""The nightly operator (issue 17 #2, #3, #6, #7), each through the command line: quiet unless
something is wrong, the documented cron and systemd recipes run as written, setup checks that
catch mistakes, and the small things an operator tripped over."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core import logs
from retention_core.state import StateStore
from retention_core.testing import memory
from retention_core.testing.builders import PolicyBuilder
from retention_core.testing.services import require_service

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc)
DAY = timedelta(days=1)
SUBJECTS = [{"subject_id": "acme", "controller": "acme-corp", "service_ended_at": "", "minor": False},
            {"subject_id": "initech", "controller": "initech-llc", "service_ended_at": "2024-01-01", "minor": False}]
CATEGORIES = {"voice_recording": {"retain": "90d", "after": "service_end"}}


@pytest.fixture
def retention_entry_points() -> bool:
    return True  # fs, sql and s3 as installed


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    yield
    logs.configure("text", 0)


def memory_policy(folder: Path, store: str, **top: Any) -> Path:
    return PolicyBuilder(folder).write(
        categories=CATEGORIES, subjects=SUBJECTS,
        sources=[{"name": "recordings", "backend": "memory", "options": {"store": store},
                  "match": "(?P<subject>[^/]+)/call-\\d+\\.wav", "category": "voice_recording"}], **top)


def seed_clean(store: str) -> None:
    """Only acme's recordings: acme is active, so nothing is due and nothing is wrong."""
    for n in range(3):
        memory.seed(store, f"acme/call-{n}.wav", NOW - 400 * DAY, size=10)


# -- quiet unless wrong (#2) -----------------------------------------------------------------------
def test_quiet_clean_run_prints_nothing(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    seed_clean(memory_store)
    policy = memory_policy(tmp_path, memory_store)
    for args, env in ((["--quiet"], None), ([], {"RETENTION_QUIET": "1"})):
        result = retention_cli("run", "-c", policy, *args, env=env)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    loud = retention_cli("run", "-c", policy)
    assert loud.stdout.startswith("retention run ")  # without --quiet, the summary as before


def test_json_info_events_only_with_verbose(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    seed_clean(memory_store)
    policy = memory_policy(tmp_path, memory_store)
    quiet = retention_cli("--log-format", "json", "run", "-c", policy, "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    verbose = retention_cli("--log-format", "json", "-v", "run", "-c", policy, "--quiet")
    assert [json.loads(line)["event"] for line in verbose.stderr.splitlines()] == ["run-start", "source-done",
                                                                                   "run-end"]


def test_unknown_subjects_are_counted_and_warned_even_when_quiet(retention_cli: Any, memory_store: str,
                                                                  tmp_path: Path) -> None:
    """88 recordings of a subject the subjects CSV lacks were skipped (kept forever) in silence."""
    seed_clean(memory_store)
    for n in range(88):
        memory.seed(memory_store, f"zed/call-{n}.wav", NOW - 400 * DAY)
    policy = memory_policy(tmp_path, memory_store)
    result = retention_cli("run", "-c", policy, "--quiet")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "retention: warning: recordings: 88 record(s) skipped and kept: their subject is not in the subjects "
        "source (e.g. zed); add the subject there or fix the source's `match`"]
    assert memory.exists(memory_store, "zed/call-0.wav")
    loud = retention_cli("run", "-c", policy, "--dry-run")
    assert "    warning: 88 record(s) skipped and kept" in loud.stdout


def test_overdue_and_held_erasure_requests_are_warned_when_quiet(retention_cli: Any, memory_store: str,
                                                                 tmp_path: Path) -> None:
    seed_clean(memory_store)
    policy = memory_policy(tmp_path, memory_store, holds=[
        {"id": "LH-1", "kind": "legal", "scope": {"subject": "acme"}, "reason": "Smith v. Acme"}])
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.add_request("acme", "acme-corp", NOW - 40 * DAY)
    finally:
        store.close()
    result = retention_cli("run", "-c", policy, "--quiet")
    assert result.exit_code == 0 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(r"retention: warning: erasure request \w+ for acme: held, due \d{4}-\d\d-\d\d, "
                        r"3 records still held", line), line


# -- the documented recipes, run as written ------------------------------------------------------------
def _doc_block(language: str, marker: str) -> str:
    """The fenced ``language`` block of the user guide's nightly section that contains *marker*."""
    text = (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")
    section = text[text.index("### Running nightly"):]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)
    (block,) = [b for b in blocks if marker in b]
    return block


def _nightly_folder(folder: Path) -> Path:
    """/var/lib/retention of the recipes: a policy over fs whose root comes from the env file."""
    (folder / "data" / "acme").mkdir(parents=True)
    (folder / "data" / "acme" / "call-1.wav").write_bytes(b"x")
    PolicyBuilder(folder).write(
        categories=CATEGORIES, subjects=SUBJECTS,
        sources=[{"name": "recordings", "backend": "fs", "options": {"root": "${RECORDINGS_ROOT}"},
                  "match": "(?P<subject>[^/]+)/call-\\d+\\.wav", "category": "voice_recording"}])
    (folder / "retention.env").write_text(f"RECORDINGS_ROOT={folder / 'data'}\nHOME={folder}\n")
    return folder


def _bin_dir() -> str:
    found = shutil.which("retention") or str(Path(sys.executable).parent / "retention")
    assert Path(found).exists(), "the retention console script is installed beside this Python"
    return str(Path(found).parent)


def test_documented_cron_line_is_silent_on_a_clean_night_and_warns_otherwise(tmp_path: Path) -> None:
    folder = _nightly_folder(tmp_path / "var-lib-retention")
    crontab = _doc_block("cron", "retention run")
    (line,) = [x for x in crontab.splitlines() if re.match(r"^[\d*]", x)]
    command = line.split(None, 5)[5].replace("\\%", "%").replace("/var/lib/retention", str(folder))
    env = {"PATH": f"{_bin_dir()}:/usr/bin:/bin"}  # what cron gives a job, and the crontab's PATH=

    def night() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    clean = night()
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")  # cron sends no mail
    assert (folder / "last-run.html").exists()
    assert "retention_last_success_timestamp_seconds" in (folder / "metrics" / "retention.prom").read_text()

    (folder / "data" / "zed").mkdir()
    (folder / "data" / "zed" / "call-1.wav").write_bytes(b"x")
    wrong = night()
    assert wrong.returncode == 0 and wrong.stdout == ""
    assert wrong.stderr.startswith("retention: warning: recordings: 1 record(s) skipped and kept")


def test_documented_systemd_service_runs_with_its_environment_file(tmp_path: Path) -> None:
    folder = _nightly_folder(tmp_path / "var-lib-retention")
    unit = _doc_block("ini", "ExecStart=")
    fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert fields["Type"] == "oneshot" and "EnvironmentFile" in fields

    def local(value: str) -> str:
        return value.replace("/var/lib/retention", str(folder)).replace("/opt/retention/bin", _bin_dir())

    env = dict(line.split("=", 1) for line in Path(local(fields["EnvironmentFile"])).read_text().splitlines())
    proc = subprocess.run(shlex.split(local(fields["ExecStart"])), cwd=local(fields["WorkingDirectory"]), env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (folder / "last-run.html").exists()


def test_unset_variable_is_one_line_naming_it_and_the_key(retention_cli: Any, tmp_path: Path) -> None:
    folder = _nightly_folder(tmp_path)
    result = retention_cli("validate", "-c", folder / "policy.yaml", env={"RECORDINGS_ROOT": None})
    assert result.exit_code == 2
    assert result.stderr == (f"retention: error: {folder / 'policy.yaml'}: sources[0].options.root: environment "
                             "variable RECORDINGS_ROOT is not set (the value uses ${RECORDINGS_ROOT}); set it where "
                             "the run gets its environment (cron: the crontab or an env file; systemd: "
                             "EnvironmentFile=)\n")
    ok = retention_cli("validate", "-c", folder / "policy.yaml", env={"RECORDINGS_ROOT": str(folder / "data")})
    assert ok.exit_code == 0, ok.output


def test_state_url_takes_variables_too(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    seed_clean(memory_store)
    policy = memory_policy(tmp_path, memory_store, state="sqlite:///${STATE_DIR}/state.db")
    (tmp_path / "elsewhere").mkdir()
    result = retention_cli("run", "-c", policy, "--quiet", env={"STATE_DIR": str(tmp_path / "elsewhere")})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "state.db").exists()
    unset = retention_cli("run", "-c", policy, env={"STATE_DIR": None})
    assert unset.exit_code == 2 and "policy.yaml: state: environment variable STATE_DIR is not set" in unset.stderr


# -- setup that catches mistakes (#6) --------------------------------------------------------------------
def sql_policy(folder: Path, url: str) -> Path:
    return PolicyBuilder(folder).write(
        categories={"chat": {"retain": "1y", "after": "created"}},
        sources=[{"name": "transcripts", "backend": "sql",
                  "options": {"url": url, "table": "chats", "key": "id", "subject": "tenant",
                              "created": "created_at", "timezone": "UTC"},
                  "category": "chat"}])


def test_check_storage_catches_an_unreachable_database(retention_cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    policy = sql_policy(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/test")
    offline = retention_cli("validate", "-c", policy)
    assert offline.exit_code == 0, offline.output  # validate alone never touches storage
    checked = retention_cli("validate", "-c", policy, "--check-storage")
    assert checked.exit_code == 2, checked.output
    assert checked.stderr.startswith(f"retention: error: {policy}: sources[0].options.")
    assert len(checked.stderr.splitlines()) == 1 and "Traceback" not in checked.output


def test_check_storage_passes_a_reachable_source(retention_cli: Any, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "chats.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE chats (id INTEGER PRIMARY KEY, tenant TEXT, created_at TIMESTAMP NOT NULL)")
        conn.execute("INSERT INTO chats VALUES (1, 'acme', '2020-01-01 00:00:00')")
    policy = sql_policy(tmp_path, f"sqlite:///{db}")
    result = retention_cli("validate", "-c", policy, "--check-storage")
    assert result.exit_code == 0, result.output
    assert "storage reachable" in result.stdout


@pytest.fixture(scope="module")
def moto_endpoint() -> Any:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require_service(False, "moto server (pip install 'moto[server]')")
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PROFILE": None}


def s3_policy(folder: Path, bucket: str, endpoint: str) -> Path:
    return PolicyBuilder(folder).write(
        categories=CATEGORIES, subjects=SUBJECTS,
        sources=[{"name": "recordings", "backend": "s3",
                  "options": {"bucket": bucket, "region": "us-east-1", "endpoint_url": endpoint},
                  "match": "(?P<subject>[^/]+)/call-\\d+\\.wav", "category": "voice_recording"}])


@pytest.mark.moto_server
def test_check_storage_catches_a_missing_bucket(retention_cli: Any, moto_endpoint: str, tmp_path: Path) -> None:
    policy = s3_policy(tmp_path, "no-such-bucket-here", moto_endpoint)
    assert retention_cli("validate", "-c", policy, env=AWS_ENV).exit_code == 0
    checked = retention_cli("validate", "-c", policy, "--check-storage", env=AWS_ENV)
    assert checked.exit_code == 2
    assert checked.stderr == (f"retention: error: {policy}: sources[0].options.bucket: bucket "
                              "'no-such-bucket-here' does not exist\n")
    enforcing = retention_cli("run", "-c", policy, "--quiet", env=AWS_ENV)  # makes the same check first
    assert (enforcing.exit_code, enforcing.stderr) == (2, checked.stderr)


def test_cron_environment_gets_a_hint_for_aws_credentials(tmp_path: Path) -> None:
    """Under env -i (what cron gives a job) the credential error says where cron gets them."""
    pytest.importorskip("boto3")
    policy = s3_policy(tmp_path, "recordings", "http://127.0.0.1:1")
    proc = subprocess.run(["env", "-i", f"HOME={tmp_path}", "AWS_EC2_METADATA_DISABLED=true",
                           str(Path(_bin_dir()) / "retention"), "run", "-c", str(policy), "--quiet"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "no AWS credentials found" in line and "environment file" in line and "AWS_PROFILE" in line


# -- small items (#7) --------------------------------------------------------------------------------------
def test_report_dash_writes_the_json_report_to_stdout(retention_cli: Any, memory_store: str,
                                                      tmp_path: Path) -> None:
    seed_clean(memory_store)
    result = retention_cli("run", "-c", memory_policy(tmp_path, memory_store), "--dry-run", "--report", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the report alone
    assert report["sources"]["recordings"]["scanned"] == 3 and len(report["items"]) == 3


def test_a_run_that_fails_during_the_scan_still_writes_its_report(retention_cli: Any, memory_store: str,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seed_clean(memory_store)
    real_scan = memory.InMemoryBackend.scan

    def scan_then_fail(self: Any, source: Any) -> Any:
        listing = real_scan(self, source)
        yield next(listing)
        yield next(listing)
        raise ConnectionError("storage went away")

    monkeypatch.setattr(memory.InMemoryBackend, "scan", scan_then_fail)
    out = tmp_path / "report.json"
    result = retention_cli("run", "-c", memory_policy(tmp_path, memory_store), "--report", out, "--quiet")
    assert result.exit_code == 1 and "storage went away" in result.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "failed"
    assert report["sources"]["recordings"]["scanned"] == 2
    assert any("the run stopped early: ConnectionError: storage went away" in w for w in report["warnings"])


def test_the_real_run_keeps_the_erasure_lines_of_the_dry_run(retention_cli: Any, memory_store: str,
                                                             tmp_path: Path) -> None:
    seed_clean(memory_store)
    memory.seed(memory_store, "initech/call-1.wav", NOW - 400 * DAY)
    policy = memory_policy(tmp_path, memory_store)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.add_request("acme", "acme-corp", NOW - 2 * DAY)
    finally:
        store.close()

    def erasure_lines(*args: str) -> list[str]:
        result = retention_cli("run", "-c", policy, "--allow-over-limit", "recordings", *args)
        assert result.exit_code == 0, result.output
        return [line.split(":")[0] for line in result.stdout.splitlines() if "erasure request" in line]

    dry, real = erasure_lines("--dry-run"), erasure_lines()
    assert dry and real == dry


def test_plan_says_size_unknown_for_a_source_without_sizes(retention_cli: Any, tmp_path: Path) -> None:
    """An SQL table has no sizes: plan printed "0 B" as if the rows weighed nothing."""
    import sqlite3

    db = tmp_path / "chats.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE chats (id INTEGER PRIMARY KEY, tenant TEXT, created_at TIMESTAMP NOT NULL)")
        conn.executemany("INSERT INTO chats VALUES (?, 'acme', ?)",
                         [(1, "2020-01-01 00:00:00"), (2, f"{NOW - 362 * DAY:%Y-%m-%d %H:%M:%S}")])
    result = retention_cli("plan", "-c", sql_policy(tmp_path, f"sqlite:///{db}"))
    assert "0 B" not in result.stdout, result.stdout
    assert "due now: 1 records (size unknown)" in result.stdout
    assert "in the window: 1 records (size unknown)" in result.stdout


def test_weeks_are_numbered_alike_in_plan_and_the_html_report(retention_cli: Any, memory_store: str,
                                                              tmp_path: Path) -> None:
    """plan's CSV numbered the first week 0, the HTML report's forecast 1: now both say week 1."""
    memory.seed(memory_store, "acme/chat-1.txt", NOW - 362 * DAY, size=5)  # due in three days
    policy = PolicyBuilder(tmp_path).write(
        categories={"chat": {"retain": "1y", "after": "created"}}, subjects=SUBJECTS,
        sources=[{"name": "chats", "backend": "memory", "options": {"store": memory_store},
                  "match": "(?P<subject>[^/]+)/chat-\\d+\\.txt", "category": "chat"}])
    plan = retention_cli("plan", "-c", policy, "--format", "csv")
    (row,) = [line for line in plan.stdout.splitlines() if line.startswith("week")]
    assert row.startswith("week 1,")
    text = retention_cli("plan", "-c", policy).stdout
    assert re.search(r"^ +1  \d{4}-\d\d-\d\d  \d{4}-\d\d-\d\d  chat ", text, flags=re.MULTILINE), text
    out = tmp_path / "run.html"
    assert retention_cli("run", "-c", policy, "--dry-run", "--report", out).exit_code == 0
    assert re.search(r"<tr><td>1</td><td>\d{4}-\d\d-\d\d</td><td>\d{4}-\d\d-\d\d</td><td>chat</td>",
                     out.read_text())


def test_html_report_sorts_item_numbers_as_numbers(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    for n in (10, 2, 1, 21, 3):
        memory.seed(memory_store, f"acme/call-{n}.wav", NOW - 400 * DAY)
    out = tmp_path / "run.html"
    assert retention_cli("run", "-c", memory_policy(tmp_path, memory_store), "--dry-run",
                         "--report", out).exit_code == 0
    text = out.read_text()
    table = text[text.index('id="items-table"'):]
    assert re.findall(r"acme/call-(\d+)\.wav", table) == ["1", "2", "3", "10", "21"]


# -- holds: the policy file's releasable, unknown subjects refused, columns that line up -----------------
def _trail(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "audit.jsonl").read_text().splitlines()]


def test_a_policy_file_hold_is_released_through_the_cli_with_who_and_why(retention_cli: Any, memory_store: str,
                                                                         tmp_path: Path) -> None:
    memory.seed(memory_store, "initech/call-1.wav", NOW - 400 * DAY)
    policy = memory_policy(tmp_path, memory_store, limits={"max_fraction": 1.0}, holds=[
        {"id": "LH-7", "kind": "legal", "scope": {"subject": "initech"}, "reason": "Doe v. Initech"}])
    retention_cli("run", "-c", policy, "--quiet")
    assert memory.exists(memory_store, "initech/call-1.wav")  # held by the file's hold

    released = retention_cli("holds", "release", "-c", policy, "LH-7", "--reason", "case settled",
                             env={"RETENTION_ACTOR": "counsel"})
    assert released.exit_code == 0, released.output
    assert "released hold LH-7 (defined in" in released.stdout
    (line,) = [e for e in _trail(tmp_path) if e["event"] == "hold-released"]
    assert (line["hold"], line["origin"], line["reason"]) == ("LH-7", "config", "case settled")
    listed = json.loads(retention_cli("holds", "list", "-c", policy, "--json").stdout)
    assert [(h["id"], h["origin"], h["active"], h["release_reason"]) for h in listed] == [
        ("LH-7", "config", False, "case settled")]
    assert "hold LH-7 in the policy file was released" in retention_cli("validate", "-c", policy).stdout
    again = retention_cli("holds", "release", "-c", policy, "LH-7", "--reason", "twice")
    assert again.exit_code == 2 and "already released" in again.stderr

    retention_cli("run", "-c", policy, "--quiet")
    assert not memory.exists(memory_store, "initech/call-1.wav")  # the release is honoured


def test_a_hold_on_an_unknown_subject_needs_force(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    policy = memory_policy(tmp_path, memory_store)
    args = ("holds", "place", "-c", policy, "--id", "LH-1", "--kind", "legal", "--reason", "r", "--subject", "intiech")
    refused = retention_cli(*args)
    assert refused.exit_code == 2
    assert refused.stderr == ("retention: error: --subject: subject 'intiech' is not in the subjects source: the hold "
                              "covers no known subject (check the spelling); give --force to place it anyway\n")
    assert retention_cli("holds", "list", "-c", policy).stdout == "no holds\n"
    forced = retention_cli(*args, "--force")
    assert forced.exit_code == 0 and "not in the subjects source" in forced.stderr


def test_holds_list_columns_line_up(retention_cli: Any, memory_store: str, tmp_path: Path) -> None:
    policy = memory_policy(tmp_path, memory_store, holds=[
        {"id": "LH-2026-0001", "kind": "legal", "scope": {"subject": "acme"}, "reason": "a"}])
    for hold_id, kind, scope in (("D-1", "dispute", ("--subject", "initech", "--category", "voice_recording")),
                                 ("LH-3", "legal", ("--source", "recordings"))):
        placed = retention_cli("holds", "place", "-c", policy, "--id", hold_id, "--kind", kind, "--reason", "r",
                               *scope)
        assert placed.exit_code == 0, placed.output
    lines = retention_cli("holds", "list", "-c", policy).stdout.splitlines()
    assert len(lines) == 3
    for column in ("legal", "dispute"), ("subject=", "source="), ("(config)", "(state)"), ("active",):
        starts = {next(line.index(word) for word in column if word in line) for line in lines}
        assert len(starts) == 1, (column, lines)
