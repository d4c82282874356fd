"""The command line, through click's runner and as a real subprocess."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention_core import cli as cli_module
from retention_core.errors import PluginError
from retention_core.plugins import load_plugins
from retention_core.state import StateStore

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "demo"


@pytest.fixture
def demo(tmp_path) -> Path:
    """A private copy of the demo (an enforcing run deletes files)."""
    target = tmp_path / "demo"
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns(".retention"))
    return target / "policy.yaml"


def invoke(*args: str):
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)


def test_readme_demo_command_runs_as_a_subprocess():
    """README: `retention run -c config/demo/policy.yaml --dry-run` from the repo root."""
    readme = (REPO / "README.md").read_text()
    assert "retention run -c config/demo/policy.yaml --dry-run" in readme
    before = sorted(p.relative_to(DEMO) for p in (DEMO / "data").rglob("*"))
    done = subprocess.run([sys.executable, "-m", "retention_core", "run", "-c", "config/demo/policy.yaml",
                           "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dry-run (nothing deleted)" in done.stdout and "recordings: scanned 15" in done.stdout
    assert sorted(p.relative_to(DEMO) for p in (DEMO / "data").rglob("*")) == before


def test_validate_ok_and_config_errors_are_one_line_exit_2(demo):
    ok = invoke("validate", "-c", str(demo))
    assert ok.exit_code == 0 and "ok — 3 sources" in ok.output
    demo.write_text(demo.read_text().replace("retain: 90d", "retain: 90 days"))
    bad = invoke("validate", "-c", str(demo))
    assert bad.exit_code == 2
    assert bad.output.strip() == (f"retention: error: {demo}: categories.voice_recording.retain: expected a "
                                  "duration like 90d, 12w, 18mo, 7y or P1Y6M, found '90 days'")


def test_bad_backend_option_names_file_and_key(demo):
    demo.write_text(demo.read_text().replace("{root: data/mail}", "{root: data/nope}"))
    result = invoke("validate", "-c", str(demo))
    assert result.exit_code == 2
    assert f"{demo}: sources[2].options.root: expected an existing directory" in result.output


def test_enforcing_demo_run_deletes_what_is_due_and_keeps_holds(demo, tmp_path):
    data = demo.parent / "data"
    report = tmp_path / "out.json"
    result = invoke("run", "-c", str(demo), "--report", str(report))
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert doc["dry_run"] is False and doc["summary"]["delete"] == doc["outcomes"]["deleted"] == 11
    assert set(doc) >= {"run_id", "dry_run", "as_of", "summary", "outcomes", "erasure_requests", "items"}
    assert set(doc["items"][0]) >= {"source", "location", "subject", "category", "decision", "reason", "holds",
                                    "due", "outcome"}
    assert not (data / "recordings/tenants/initech/calls/call-2025-01.wav").exists()   # service ended
    assert not (data / "transcripts/umbrella-kid/chat-1.txt").exists()                  # minor
    assert (data / "recordings/tenants/globex/calls/call-2025-01.wav").exists()         # legal hold
    assert (data / "recordings/tenants/acme/calls/call-2025-01.wav").exists()           # active
    assert (data / "recordings/tenants/README.txt").exists()                            # not matched
    assert invoke("audit", "verify", "-c", str(demo)).exit_code == 0


def test_tampering_with_the_trail_exits_1_naming_the_line(demo):
    invoke("run", "-c", str(demo))
    trail = demo.parent / ".retention" / "audit.jsonl"
    lines = trail.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"deleted"', '"refused"').replace('"intent"', '"intent "')
    trail.write_text("".join(lines))
    result = invoke("audit", "verify", str(trail))
    assert result.exit_code == 1 and "line 3:" in result.output


def test_holds_place_list_release_and_the_next_run_honours_them(demo):
    assert invoke("holds", "place", "-c", str(demo), "--id", "DH-1", "--kind", "dispute", "--reason",
                  "billing dispute", "--subject", "initech").exit_code == 0
    listed = json.loads(invoke("holds", "list", "-c", str(demo), "--json").output)
    assert {h["id"] for h in listed} == {"LH-2026-014", "DH-1"}
    dry = invoke("run", "-c", str(demo), "--dry-run")
    assert "recordings: scanned 15; delete 3, keep 6, hold 6" in dry.output
    assert invoke("holds", "release", "-c", str(demo), "DH-1", "--reason", "resolved").exit_code == 0
    again = json.loads(invoke("holds", "list", "-c", str(demo), "--json").output)
    released = next(h for h in again if h["id"] == "DH-1")
    assert released["active"] is False and released["release_reason"] == "resolved"
    assert released["released_by"] == "tester"
    dup = invoke("holds", "place", "-c", str(demo), "--id", "DH-1", "--kind", "legal", "--reason", "x",
                 "--subject", "acme")
    assert dup.exit_code == 2 and "already exists" in dup.output
    empty = invoke("holds", "place", "-c", str(demo), "--id", "H2", "--kind", "legal", "--reason", "x")
    assert empty.exit_code == 2 and "at least one of" in empty.output


def test_erasure_requests_only_from_the_controller(demo):
    wrong = invoke("requests", "erase", "-c", str(demo), "--subject", "acme", "--controller", "globex-inc")
    assert wrong.exit_code == 2 and "is not the controller of subject 'acme'" in wrong.output
    unknown = invoke("requests", "erase", "-c", str(demo), "--subject", "nobody", "--controller", "x")
    assert unknown.exit_code == 2
    ok = invoke("requests", "erase", "-c", str(demo), "--subject", "acme", "--controller", "acme-corp",
                "--received", "2026-11-20")
    assert ok.exit_code == 0 and "due 2026-12-20" in ok.output
    demo.write_text(demo.read_text().replace("max_fraction: 0.5", "max_fraction: 0.9"))
    assert invoke("run", "-c", str(demo)).exit_code == 0
    (request,) = json.loads(invoke("requests", "list", "-c", str(demo), "--json").output)
    assert request["status"] == "done"
    assert not list((demo.parent / "data" / "transcripts" / "acme").iterdir())


def test_safety_limit_exits_3_and_deletes_nothing(demo):
    demo.write_text(demo.read_text().replace("max_fraction: 0.5", "max_fraction: 0.1"))
    before = sorted((demo.parent / "data").rglob("*"))
    result = invoke("run", "-c", str(demo))
    assert result.exit_code == 3 and "max_fraction" in result.output
    assert sorted((demo.parent / "data").rglob("*")) == before


def test_the_command_line_raises_the_young_gc_threshold_for_its_own_process(demo):
    """The collector re-walked every live object thousands of times per large run (see
    ``cli.GC_YOUNG_THRESHOLD``); the ``retention`` command sets the young generation's
    threshold, leaving the older generations' at CPython's defaults."""
    import gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        assert invoke("run", "-c", str(demo), "--dry-run").exit_code == 0
        assert gc.get_threshold() == (cli_module.GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.set_threshold(*before)


def test_a_second_run_exits_4_while_the_lock_is_held(demo):
    invoke("validate", "-c", str(demo))
    store = StateStore(f"sqlite:///{demo.parent}/.retention/state.db")
    with store.lock("other"):
        result = invoke("run", "-c", str(demo))
    assert result.exit_code == 4 and "holds the lock" in result.output


def test_as_of_implies_dry_run(demo):
    result = invoke("run", "-c", str(demo), "--as-of", "2030-01-01")
    # By 2030 most of the demo is due: the dry run predicts that an enforcing run would trip
    # the safety limits, exit 3 included (issue 17), and still deletes nothing.
    assert result.exit_code == 3 and "dry-run" in result.output and "SAFETY LIMIT" in result.output
    assert (demo.parent / "data/transcripts/acme/chat-1.txt").exists()
    bad = invoke("run", "-c", str(demo), "--as-of", "next tuesday")
    assert bad.exit_code == 2 and "--as-of: expected an ISO date" in bad.output


def test_unknown_report_format_is_a_usage_error(demo, tmp_path):
    result = invoke("run", "-c", str(demo), "--dry-run", "--report", str(tmp_path / "r.xlsx"))
    assert result.exit_code == 2 and "unknown report format 'xlsx'" in result.output


def test_plugins_lists_builtins_with_their_distribution():
    result = invoke("plugins", "--json")
    names = {p["name"]: p for p in json.loads(result.output)}
    assert names["fs"]["distribution"] == "retention" and names["fs"]["provides"]["backends"] == ["fs"]
    assert "retention_register_backends" in names["fs"]["hooks"]


def test_disabled_plugin_leaves_its_backend_unknown(demo, monkeypatch):
    monkeypatch.setenv("RETENTION_DISABLE_PLUGINS", "fs, s3")
    done = subprocess.run([sys.executable, "-m", "retention_core", "validate", "-c", str(demo)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "sources[0].backend: unknown backend 'fs'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_broken_plugin_names_itself_and_its_distribution(monkeypatch):
    class Dist:
        name, version = "retention-broken", "9.9"

    broken = md.EntryPoint("broken", "retention_no_such_module", "retention")
    object.__setattr__(broken, "dist", Dist())
    monkeypatch.setattr(md, "entry_points", lambda group: [broken])
    with pytest.raises(PluginError, match=r"plugin 'broken' \(distribution retention-broken 9.9\) failed to load"):
        load_plugins()


def test_a_misspelt_hook_fails_loudly():
    class Typo:
        from retention_core import hookimpl

        @hookimpl
        def retention_register_backend(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="retention_register_backend"):
        load_plugins(extra=[Typo()], entry_points=False)


def test_every_subcommand_has_help():
    for args in (["--help"], ["run", "--help"], ["validate", "--help"], ["holds", "place", "--help"],
                 ["holds", "release", "--help"], ["holds", "list", "--help"], ["requests", "erase", "--help"],
                 ["requests", "list", "--help"], ["audit", "verify", "--help"], ["plugins", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage: " in result.output


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    command = next(line for line in readme if "python -m pytest" in line)
    assert command in (REPO / ".ci" / "run").read_text().splitlines()


def test_non_utf8_file_names_are_reported_escaped_and_deleted_exactly(tmp_path):
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    raw = os.path.join(os.fsencode(data), b"caf\xe9.wav")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ncategories: {c: {retain: 0d}}\nlimits: {max_fraction: 1.0}\n"
                      "sources: [{name: s, backend: fs, options: {root: data}, category: c}]\n")
    formats = [tmp_path / f"r.{ext}" for ext in ("json", "csv", "html")]
    args = [a for f in formats for a in ("--report", str(f))]
    assert invoke("run", "-c", str(policy), "--dry-run", *args).exit_code == 0
    (item,) = json.loads(formats[0].read_text())["items"]
    assert item["location"] == "a/caf\\xe9.wav"
    assert invoke("run", "-c", str(policy)).exit_code == 0
    assert not os.path.exists(raw)
    assert invoke("audit", "verify", "-c", str(policy)).exit_code == 0
