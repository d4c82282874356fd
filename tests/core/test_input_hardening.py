"""Bad input through the command line: one line naming what is wrong and exit 2 — never a
traceback, an "internal error", a false check or a silent no-op (issue 15, items 12–14 and
the subjects CSV of item 9)."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from retention_core import cli as cli_module
from retention_core.errors import ConfigError
from retention_core.model import HoldScope
from retention_core.policy import MAX_YAML_DEPTH, load_yaml
from retention_core.state import StateStore
from retention_core.testing import memory, require_service
from retention_core.testing.fixtures import plugins_for

from .conftest import NOW

POSTGRES = os.environ.get("RETENTION_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _with_memory_backend() -> Iterator[None]:
    """The built-in plugins plus the reference ``memory`` backend, which only tests load."""
    with cli_module.use_plugins(plugins_for(None, entry_points=True)):
        yield


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)


def one_error_line(result: Result, *needles: str, code: int = 2) -> str:
    """The single stderr line of a refused command, checked to name every *needle*."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("retention: error: ") and "internal error" not in line, line
    for needle in needles:
        assert needle in line, line
    return line


# -- dates whose arithmetic would overflow (item 13) ----------------------------------------------
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1969-12-31", "9001-01-01"])
@pytest.mark.parametrize("command", [("run",), ("plan",), ("explain", "alice/x")], ids=lambda c: c[0])
def test_as_of_outside_1970_to_9000_is_refused(make_policy, command, day):
    policy = make_policy()
    line = one_error_line(invoke(*command, "-c", str(policy), "--as-of", day), "--as-of", day)
    assert "1970-01-01 to 9000-12-31" in line


@pytest.mark.parametrize("day", ["1970-01-01", "9000-12-31"])
def test_as_of_at_the_ends_of_the_range_runs(make_policy, store_name, day):
    memory.seed(store_name, "alice/a", NOW - timedelta(days=400))
    result = invoke("run", "-c", str(make_policy()), "--as-of", day)
    assert result.exit_code == 0, result.output
    assert f"as of {day} 00:00 UTC" in result.stdout


def test_a_date_with_an_offset_past_the_end_of_time_is_an_error_line(make_policy):
    one_error_line(invoke("run", "-c", str(make_policy()), "--as-of", "9999-12-31T23:00:00-05:00"), "--as-of")


def test_erasure_request_received_at_the_end_of_time_is_refused(make_policy):
    result = invoke("requests", "erase", "-c", str(make_policy()), "--subject", "alice", "--controller", "ctl-a",
                    "--received", "9999-12-31")
    one_error_line(result, "--received", "9999-12-31")


# -- YAML nested thousands deep (item 13) -----------------------------------------------------------
@pytest.mark.parametrize("nest", [lambda n: "[" * n + "]" * n, lambda n: "{a: " * n + "1" + "}" * n,
                                  lambda n: "".join(f"{' ' * 2 * i}- \n" for i in range(n)).rstrip() + " 1"],
                         ids=["flow-list", "flow-map", "block-list"])
def test_policy_nested_5000_deep_names_the_file(tmp_path, nest):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nholds:\n  " + nest(5000).replace("\n", "\n  ") + "\n")
    one_error_line(invoke("validate", "-c", str(policy)), str(policy), "nested deeper than 100 levels")


def test_nesting_up_to_the_limit_loads():
    assert load_yaml("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH, "f.yaml") is not None
    with pytest.raises(ConfigError, match=r"^f\.yaml: line 1: invalid YAML: nested deeper"):
        load_yaml("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "f.yaml")


# -- a report path that cannot be written: refused before anything is deleted (item 13) -----------
def test_report_under_a_file_is_refused_before_the_run_deletes(make_policy, store_name, tmp_path):
    memory.seed(store_name, "alice/old", NOW - timedelta(days=400))
    (tmp_path / "plain-file").write_text("")
    target = tmp_path / "plain-file" / "report.json"
    result = invoke("run", "-c", str(make_policy()), "--report", str(target))
    one_error_line(result, f"--report {target}", "is not a directory")
    assert memory.exists(store_name, "alice/old"), "nothing may be deleted by a run that cannot report"
    assert not [call for call in memory.get_store(store_name).calls if call[0] != "list"]


def test_report_in_a_directory_still_to_be_created_is_written(make_policy, store_name, tmp_path):
    memory.seed(store_name, "alice/old", NOW - timedelta(days=400))
    target = tmp_path / "new" / "dir" / "report.csv"
    result = invoke("run", "-c", str(make_policy()), "--dry-run", "--report", str(target))
    assert result.exit_code == 0, result.output
    assert target.exists()


# -- lengths the state store cannot hold (item 13) ------------------------------------------------
@pytest.fixture
def postgres_state() -> Iterator[str]:
    """A state-store URL on PostgreSQL in a schema of its own (dropped afterwards)."""
    schema = f"hardening_{uuid.uuid4().hex[:12]}"
    problem = None
    try:
        engine = sa.create_engine(POSTGRES, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # a missing driver counts as a missing service
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    require_service(problem is None, f"PostgreSQL at {POSTGRES} ({problem})")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.mark.postgres
def test_overlong_hold_id_on_postgresql_is_one_line(make_policy, postgres_state):
    policy = make_policy(state=postgres_state)
    result = invoke("holds", "place", "-c", str(policy), "--id", "H" * 300, "--kind", "legal", "--reason", "r",
                    "--subject", "alice")
    one_error_line(result, "--id", "1 to 64")


@pytest.mark.postgres
def test_overlong_actor_on_postgresql_is_one_line_and_places_nothing(make_policy, postgres_state, monkeypatch):
    policy = make_policy(state=postgres_state)
    monkeypatch.setenv("RETENTION_ACTOR", "a" * 300)
    result = invoke("holds", "place", "-c", str(policy), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                    "--subject", "alice")
    one_error_line(result, "RETENTION_ACTOR", "at most 200 printable characters, found 300")
    assert StateStore(postgres_state).holds() == []


@pytest.mark.postgres
def test_overlong_subject_on_postgresql_is_one_line(make_policy, postgres_state):
    policy = make_policy(state=postgres_state)
    result = invoke("holds", "place", "-c", str(policy), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                    "--subject", "s" * 600)
    one_error_line(result, "--subject", "at most 500 characters, found 600")


def test_actor_with_a_newline_is_refused(make_policy, monkeypatch):
    monkeypatch.setenv("RETENTION_ACTOR", "alice\nretention: hold released by admin")
    result = invoke("holds", "place", "-c", str(make_policy()), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                    "--subject", "alice")
    one_error_line(result, "RETENTION_ACTOR", "control characters")


# -- ids and scopes (item 14) ----------------------------------------------------------------------
@pytest.mark.parametrize("hold_id", ["LH-1\nforged  legal    subject=x", "", "-starts-with-dash", "a b", "é", "H" * 65])
def test_cli_hold_ids_are_validated(make_policy, hold_id):
    policy = make_policy()
    result = invoke("holds", "place", "-c", str(policy), "--id", hold_id, "--kind", "legal", "--reason", "r",
                    "--subject", "alice")
    one_error_line(result, "--id")
    assert invoke("holds", "list", "-c", str(policy)).stdout == "no holds\n"


def test_policy_file_hold_ids_are_validated(make_policy):
    policy = make_policy(holds=[{"id": "H" * 65, "kind": "legal", "scope": {"subject": "alice"}, "reason": "r"}])
    one_error_line(invoke("validate", "-c", str(policy)), str(policy), "holds[0].id")


def test_a_stored_hold_id_with_a_newline_cannot_forge_lines(make_policy, tmp_path):
    """Holds placed before ids were checked (or by a hold source) print on one line each."""
    policy = make_policy()
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.place_hold("OLD\nLH-9  legal    subject=bob", "legal", HoldScope(subject="alice\nx"), "a\nreason")
    store.close()
    listed = invoke("holds", "list", "-c", str(policy))
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.count("\n") == 1 and "OLD\\x0aLH-9" in listed.stdout
    run = invoke("run", "-c", str(policy), "--dry-run")
    assert run.exit_code == 0, run.output
    assert [line for line in run.stdout.splitlines() if "hold OLD" in line] == [
        "  hold OLD\\x0aLH-9  legal    subject=bob (legal, subject=alice\\x0ax): protected 0 records"]
    assert not any(line.startswith("LH-9") for line in run.stdout.splitlines())


@pytest.mark.parametrize("option", ["--subject", "--category", "--source"])
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_scope_values_are_refused(make_policy, option, value):
    policy = make_policy()
    result = invoke("holds", "place", "-c", str(policy), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                    option, value)
    one_error_line(result, option, "non-empty")


def test_hold_on_an_unknown_subject_warns_and_is_marked_in_the_listing(make_policy):
    policy = make_policy()
    placed = invoke("holds", "place", "-c", str(policy), "--id", "LH-1", "--kind", "legal", "--reason", "r",
                    "--subject", "alcie", "--force")  # without --force: refused (tests/core/test_operator.py)
    assert placed.exit_code == 0, placed.output
    assert placed.stderr.splitlines() == ["retention: warning: subject 'alcie' is not in the subjects source: the "
                                          "hold covers no known subject (check the spelling)"]
    known = invoke("holds", "place", "-c", str(policy), "--id", "LH-2", "--kind", "legal", "--reason", "r",
                   "--subject", "alice")
    assert known.exit_code == 0 and known.stderr == ""
    listed = invoke("holds", "list", "-c", str(policy)).stdout.splitlines()
    assert "covers no known subject" in listed[0] and "covers no known subject" not in listed[1]


def test_static_hold_on_an_unknown_subject_is_a_validate_warning(make_policy):
    policy = make_policy(holds=[{"id": "LH-1", "kind": "legal", "scope": {"subject": "alcie"}, "reason": "r"}])
    result = invoke("validate", "-c", str(policy))
    assert result.exit_code == 0, result.output
    assert "warning: hold LH-1: subject 'alcie' is not in the subjects source" in result.stdout


def test_erasure_request_for_an_unknown_or_empty_subject_is_refused(make_policy):
    policy = make_policy()
    for subject in ("nobody", ""):
        result = invoke("requests", "erase", "-c", str(policy), "--subject", subject, "--controller", "ctl-a")
        one_error_line(result, "--subject", "unknown subject")


# -- action: anonymize where the backend cannot (item 14) ------------------------------------------
def _fs_policy(make_policy, tmp_path: Path, action: str) -> Path:
    root = tmp_path / "files"
    (root / "alice").mkdir(parents=True)
    old = root / "alice" / "old.txt"
    old.write_text("x")
    os.utime(old, (0, 0))
    return make_policy(categories={"profile": {"retain": "1d", "after": "created", "action": action}},
                       sources=[{"name": "profiles", "backend": "fs", "options": {"root": str(root)},
                                 "match": r"(?P<subject>[^/]+)/.+", "category": "profile"}])


@pytest.mark.parametrize("command", [("validate",), ("run", "--dry-run"), ("run",)], ids=" ".join)
def test_anonymize_on_a_backend_that_cannot_is_refused(make_policy, tmp_path, command):
    policy = _fs_policy(make_policy, tmp_path, "anonymize")
    result = invoke(*command, "-c", str(policy))
    one_error_line(result, str(policy), "sources[0].category", "'profile'", "'profiles'", "cannot anonymize")
    assert (tmp_path / "files" / "alice" / "old.txt").exists()


def test_anonymize_on_a_backend_that_can_is_accepted(make_policy, store_name):
    policy = make_policy(categories={"call": {"retain": "90d", "action": "anonymize"}})
    result = invoke("validate", "-c", str(policy))
    assert result.exit_code == 0, result.output


# -- subjects CSV (item 14, and item 9's year 9999) ------------------------------------------------
HEADER = "subject_id,controller,service_ended_at,minor\n"


@pytest.mark.parametrize(("text", "line", "says"), [
    (HEADER + 'alice,"ctl-a,,false\nbob,ctl-b,,false\n', 2, "quote opened and never closed"),
    (HEADER + 'alice,"ctl"-a,,false\n', 2, "expected after '\"'"),
    ("subject_id,controller,controller,minor\nalice,a,b,false\n", 1, "column 'controller' appears twice"),
    (HEADER + "alice,ctl-a,,false\nbob,ctl-b,,false,surplus\n", 3, "expected 4 fields as in the header, found 5"),
    (HEADER + 'alice,ctl-a,,false\n"bob\nretention: error: x",ctl-b,,false\n', 3, "subject_id: expected printable"),
], ids=["unclosed-quote", "stray-quote", "duplicate-header", "extra-field", "newline-in-id"])
def test_malformed_subjects_csv_names_file_and_line(make_policy, tmp_path, text, line, says):
    policy = make_policy(subjects_csv=text)
    one_error_line(invoke("validate", "-c", str(policy)), f"{tmp_path / 'subjects.csv'}: line {line}:", says)


def test_service_end_in_year_9999_is_accepted_by_the_subjects_loader(make_policy):
    """Dates are the engine's business; the loader must not be the part that crashes."""
    policy = make_policy(subjects_csv=HEADER + "alice,ctl-a,9999-12-31,false\n")
    result = invoke("validate", "-c", str(policy))
    assert result.exit_code == 0, result.output
    assert "1 subjects" in result.stdout


def test_service_end_past_the_end_of_time_in_utc_names_the_line(make_policy, tmp_path):
    policy = make_policy(subjects_csv=HEADER + "alice,ctl-a,9999-12-31T23:00:00-05:00,false\n")
    one_error_line(invoke("validate", "-c", str(policy)), f"{tmp_path / 'subjects.csv'}: line 2:",
                   "service_ended_at")


# -- CSV reports cannot carry spreadsheet formulas (item 12) ---------------------------------------
FORMULAS = ["=HYPERLINK(\"evil.example\",\"x\")", "+1+2", "-1-1", "@SUM(A1)", "\tx", "\rx"]


def _cells(path: Path) -> Iterator[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            yield from row


def test_run_csv_report_neutralises_formula_cells(make_policy, store_name, tmp_path):
    for n, start in enumerate(FORMULAS):
        memory.seed(store_name, f"{start}/rec-{n}", NOW - timedelta(days=400))
    report = tmp_path / "items.csv"
    result = invoke("run", "-c", str(make_policy()), "--dry-run", "--report", str(report))
    assert result.exit_code == 0, result.output
    cells = list(_cells(report))
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], cells
    for n, start in enumerate(FORMULAS):
        assert f"'{start}/rec-{n}" in cells  # the location, kept whole behind the quote
        assert f"'{start}" in cells          # the subject


def test_plan_csv_neutralises_formula_cells(make_policy, store_name):
    memory.seed(store_name, "alice/old", NOW - timedelta(days=400))
    policy = make_policy(categories={"-1-1": {"retain": "1d"}},
                         sources=[{"name": "calls", "backend": "memory", "options": {"store": store_name},
                                   "match": r"(?P<subject>[^/]+)/.+", "category": "-1-1"}])
    result = invoke("plan", "-c", str(policy), "--format", "csv", "--as-of", "2026-06-01")
    assert result.exit_code == 0, result.output
    assert "due_now,2026-06-01,2026-06-01,'-1-1,1,0" in result.stdout.splitlines()


def test_erasure_request_received_in_the_future_is_refused(make_policy):
    """Adversarial review round 2: a request received in 9000 could never be proven done."""
    result = invoke("requests", "erase", "-c", str(make_policy()), "--subject", "alice", "--controller", "ctl-a",
                    "--received", "9000-12-31")
    one_error_line(result, "--received", "in the future")
