"""Item 5 — property-based fuzzing of every input a user hands the tool, through the real CLI.

Policy files (random text, random bytes, and a valid policy with one part mutated), durations,
the subjects CSV, holds, erasure requests, ``--as-of`` dates and the cookie inputs
(declarations, Set-Cookie lines, HAR files). Every answer must be exit 0 or 2 (cookie
checks: 0, 1 or 2), never a traceback or an "internal error", and an error is one line.
An unknown key is never silently ignored: inserting one anywhere must fail validation
and name the key. The fast subset runs a few dozen inputs per target; ``-m slow`` runs
thousands.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import string
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_core.durations import parse_duration

from .fuzzing import Fuzz
from .helpers import DRIVER, SUBJECTS_CSV, cli_env

REPO = Path(__file__).resolve().parents[2]
FAST, SLOW = 15, 600
SIZES = [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="slow", marks=pytest.mark.slow)]


def fuzz_settings(n: int) -> settings:
    # The fast subset gates every CI run, so it replays the same inputs each time; the full
    # suite (tests/reliability/run.py) explores fresh random inputs.
    return settings(max_examples=n, deadline=None, database=None, derandomize=n == FAST,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- a valid policy to mutate --------------------------------------------------------------------------
def base_policy(folder: Path) -> dict[str, Any]:
    (folder / "data" / "ended").mkdir(parents=True, exist_ok=True)
    (folder / "subjects.csv").write_text(SUBJECTS_CSV)
    return {
        "version": 1,
        "state": "sqlite:///state/state.db",
        "audit": "state/audit.jsonl",
        "subjects": {"source": "csv", "path": "subjects.csv"},
        "categories": {"data": {"retain": "90d", "after": "service_end", "action": "delete"},
                       "logs": {"retain": "P1Y6M", "after": "created"}},
        "sources": [{"name": "files", "backend": "fs", "options": {"root": "data"},
                     "match": r"(?P<subject>[^/]+)/.+", "category": "data"}],
        "holds": [{"id": "LH-1", "kind": "legal", "scope": {"subject": "held"}, "reason": "case"}],
        "limits": {"max_deletions": 100, "max_fraction": 0.5},
    }


#: Mappings whose keys are a fixed vocabulary: an extra key there is a typo, never data.
CLOSED_MAPPINGS = [(), ("subjects",), ("categories", "data"), ("categories", "logs"), ("sources", 0),
                   ("sources", 0, "options"), ("holds", 0), ("holds", 0, "scope"), ("limits",)]

scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats()
           | st.text(max_size=30) | st.sampled_from(["90d", "P1Y", "7y", "-1d", "0d", "delete", "anonymize",
                                                      "service_end", "created", "legal", "dispute", "fs", "csv"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=10)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def write(folder: Path, doc: Any) -> Path:
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def _finish(fuzz: Fuzz, figures: Counter[str]) -> None:
    fuzz.record(figures)
    fuzz.check()


# -- policy files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_policy_text_and_bytes_never_crash(tmp_path, n, figures):
    fuzz = Fuzz("policy-text")
    base_policy(tmp_path)
    target = tmp_path / "policy.yaml"

    @fuzz_settings(n)
    @given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                     st.builds(lambda d: yaml.safe_dump(d), values)))
    def check(content: str | bytes) -> None:
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", errors="surrogateescape")
        fuzz.invoke(["validate", "-c", str(target)])

    check()
    _finish(fuzz, figures)


@pytest.mark.parametrize("n", SIZES)
def test_a_mutated_policy_is_accepted_or_refused_in_one_line(tmp_path, n, figures):
    fuzz = Fuzz("policy-mutation")
    base = base_policy(tmp_path)
    spots = paths(base)[1:]

    @fuzz_settings(n)
    @given(st.sampled_from(spots), values, st.sampled_from(["replace", "delete"]))
    def check(spot: tuple[Any, ...], value: Any, how: str) -> None:
        doc = copy.deepcopy(base)
        parent, last = at(doc, spot[:-1]), spot[-1]
        if how == "delete":
            del parent[last]
        else:
            parent[last] = value
        fuzz.invoke(["validate", "-c", str(write(tmp_path, doc))])

    check()
    _finish(fuzz, figures)


@pytest.mark.parametrize("n", SIZES)
def test_an_unknown_key_anywhere_is_refused_and_named(tmp_path, n, figures):
    fuzz = Fuzz("unknown-key")
    base = base_policy(tmp_path)
    silently_ignored: list[str] = []

    @fuzz_settings(n)
    @given(st.sampled_from(CLOSED_MAPPINGS), st.text(string.ascii_letters + string.digits + "_", min_size=1,
                                                     max_size=12), values)
    def check(where: tuple[Any, ...], key: str, value: Any) -> None:
        mapping = at(base, where)
        name = f"zz_{key}"
        if name in mapping:
            return
        doc = copy.deepcopy(base)
        at(doc, where)[name] = value
        result = fuzz.invoke(["validate", "-c", str(write(tmp_path, doc))])
        if result.exit_code != 2 or name not in result.stderr:
            silently_ignored.append(f"{'.'.join(map(str, where)) or '<top>'}.{name}: exit {result.exit_code}")

    check()
    figures["unknown_keys_ignored"] += len(silently_ignored)
    assert not silently_ignored, silently_ignored[:5]
    _finish(fuzz, figures)


DUPLICATES = [
    pytest.param("categories:\n  data: {retain: 1d}\n  data: {retain: 10y}\n", id="category"),
    pytest.param("holds:\n  - {id: H, kind: legal, scope: {subject: a}, scope: {subject: b}, reason: r}\n",
                 id="hold-scope"),
    pytest.param("limits: {max_deletions: 10, max_deletions: 100000}\n", id="limit"),
]


@pytest.mark.parametrize("snippet", DUPLICATES)
def test_a_duplicate_key_is_refused_not_silently_overwritten(tmp_path, snippet):
    base_policy(tmp_path)
    text = ("version: 1\nsubjects: {source: csv, path: subjects.csv}\n"
            "sources: [{name: f, backend: fs, options: {root: data}, match: '(?P<subject>[^/]+)/.+', "
            "category: data}]\n")
    if not snippet.startswith("categories"):
        text += "categories: {data: {retain: 1d}}\n"
    (tmp_path / "policy.yaml").write_text(text + snippet)
    result = Fuzz("dup").invoke(["validate", "-c", str(tmp_path / "policy.yaml")])
    assert result.exit_code == 2 and "duplicate" in result.stderr


@pytest.mark.parametrize("where", ["unknown-key", "category-name"])
def test_a_key_with_a_line_break_gives_a_one_line_error(tmp_path, where):
    doc = base_policy(tmp_path)
    if where == "unknown-key":
        doc["limits"]["max\rforged: line"] = 1
    else:
        doc["categories"]["bad\nname"] = {"retain": "1d"}
    result = Fuzz("raw-key").invoke(["validate", "-c", str(write(tmp_path, doc))])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


# -- durations -----------------------------------------------------------------------------------------
duration_text = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A\s*-?\d{1,25}\s*(d|w|mo|y|h|m|s|D|Y)?\s*\Z"),
    st.from_regex(r"\AP(\d{1,20}Y)?(\d{1,20}M)?(\d{1,20}W)?(\d{1,20}D)?(T(\d{1,20}H)?(\d{1,20}M)?(\d{1,20}S)?)?\Z"),
)


@pytest.mark.parametrize("n", SIZES)
def test_durations_in_a_policy_and_on_the_command_line(tmp_path, n, figures):
    fuzz = Fuzz("durations")
    base = base_policy(tmp_path)

    @fuzz_settings(n)
    @given(duration_text, st.booleans())
    def check(text: str, in_policy: bool) -> None:
        if in_policy:
            doc = copy.deepcopy(base)
            doc["categories"]["data"]["retain"] = text
            fuzz.invoke(["validate", "-c", str(write(tmp_path, doc))])
        else:
            fuzz.invoke(["plan", "-c", str(write(tmp_path, base)), "--as-of", "2026-06-01", "--within", text])

    check()
    _finish(fuzz, figures)


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, 10**5), st.sampled_from(["d", "w", "h", "mo", "y"]))
def test_an_accepted_duration_means_what_it_says(count, unit):
    years = {"d": count / 366, "w": count * 7 / 366, "h": count / 8784, "mo": count / 12, "y": count}[unit]
    if years > 1000:  # beyond the calendar's reach: refused, never silently clamped
        with pytest.raises(ValueError, match="at most 1000 years"):
            parse_duration(f"{count}{unit}")
        return
    parsed = parse_duration(f"{count}{unit}")
    expected = {"d": (0, timedelta(days=count)), "w": (0, timedelta(weeks=count)),
                "h": (0, timedelta(hours=count)), "mo": (count, timedelta(0)), "y": (12 * count, timedelta(0))}
    assert (parsed.months, parsed.delta) == expected[unit]


@pytest.mark.parametrize("text", ["99999999999999d", "P9999999999Y"])
def test_a_huge_duration_is_a_config_error(tmp_path, text):
    doc = base_policy(tmp_path)
    doc["categories"]["data"]["retain"] = text
    result = Fuzz("huge").invoke(["validate", "-c", str(write(tmp_path, doc))])
    assert result.exit_code == 2 and "retain" in result.stderr


def test_a_huge_plan_window_is_a_usage_error(tmp_path):
    policy = write(tmp_path, base_policy(tmp_path))
    result = Fuzz("huge").invoke(["plan", "-c", str(policy), "--as-of", "2026-06-01", "--within", "P99999999Y"])
    assert result.exit_code == 2 and "--within" in result.stderr


def test_a_subjects_csv_that_is_not_utf8_is_a_config_error(tmp_path):
    policy = write(tmp_path, base_policy(tmp_path))
    (tmp_path / "subjects.csv").write_bytes(SUBJECTS_CSV.encode() + "caf\xe9,ctl,,false\n".encode("latin-1"))
    result = Fuzz("latin1").invoke(["validate", "-c", str(policy)])
    assert result.exit_code == 2 and "subjects.csv" in result.stderr


# -- subjects CSV ----------------------------------------------------------------------------------------
cell = st.one_of(st.sampled_from(["ended", "kid", "", "2020-01-01", "2020-02-30", "true", "false", "yes", "0",
                                  "2026-03-29T02:30:00", "2026-03-29T02:30:00+01:00", "9999-12-31", "0001-01-01"]),
                 st.text(max_size=15))
header = st.one_of(st.just(["subject_id", "controller", "service_ended_at", "minor"]),
                   st.lists(st.sampled_from(["subject_id", "controller", "service_ended_at", "minor", "extra", ""]),
                            max_size=5))


@pytest.mark.parametrize("n", SIZES)
def test_subjects_csv_never_crashes(tmp_path, n, figures):
    fuzz = Fuzz("subjects-csv")
    policy = write(tmp_path, base_policy(tmp_path))
    target = tmp_path / "subjects.csv"

    @fuzz_settings(n)
    @given(header, st.lists(st.lists(cell, max_size=5), max_size=6), st.binary(max_size=40), st.booleans())
    def check(head: list[str], rows: list[list[str]], noise: bytes, add_noise: bool) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(head)
        writer.writerows(rows)
        data = buf.getvalue().encode("utf-8", "surrogateescape")
        target.write_bytes(data + noise if add_noise else data)
        fuzz.invoke(["validate", "-c", str(policy)])

    check()
    _finish(fuzz, figures)


# -- holds, erasure requests, dates ---------------------------------------------------------------------------
words = st.one_of(st.sampled_from(["ended", "held", "data", "logs", "files", "LH-1", "H-2", ""]), st.text(max_size=20))


@pytest.mark.parametrize("n", SIZES)
def test_holds_requests_and_dates_never_crash(tmp_path, n, figures):
    fuzz = Fuzz("holds-requests-dates")
    policy = str(write(tmp_path, base_policy(tmp_path)))
    options = {"--subject": words, "--category": words, "--source": words}

    @fuzz_settings(n)
    @given(st.sampled_from(["place", "release", "erase", "as-of"]), words, st.sampled_from(["legal", "dispute", "x"]),
           words, st.fixed_dictionaries({}, optional=options), words)
    def check(what: str, ident: str, kind: str, reason: str, scope: dict[str, str], date: str) -> None:
        if what == "place":
            args = ["holds", "place", "-c", policy, "--id", ident, "--kind", kind, "--reason", reason]
            args += [part for k, v in scope.items() for part in (k, v)]
        elif what == "release":
            args = ["holds", "release", "-c", policy, ident, "--reason", reason]
        elif what == "erase":
            args = ["requests", "erase", "-c", policy, "--subject", ident, "--controller", reason,
                    "--received", date]
        else:
            args = ["run", "-c", policy, "--as-of", date]
        if any("\x00" in a for a in args):  # a NUL cannot reach a real argv
            return
        fuzz.invoke(args)

    check()
    _finish(fuzz, figures)


# -- cookies -------------------------------------------------------------------------------------------------
COOKIE_DECLARATIONS = REPO / "config" / "cookies.yaml"
set_cookie_line = st.one_of(
    st.text(max_size=120),
    st.builds(lambda name, value, attrs: f"{name}={value}; " + "; ".join(attrs),
              st.text(max_size=12), st.text(max_size=12),
              st.lists(st.sampled_from(["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "SameSite=None",
                                        "Max-Age=-1", "Max-Age=99999999999999999999", "Domain=.example.com",
                                        "Expires=Wed, 31 Dec 1969 23:59:59 GMT", "Expires=garbage",
                                        "Expires=Fri, 31 Dec 9999 23:59:59 GMT", "Partitioned"]), max_size=5)),
)


@pytest.mark.parametrize("n", SIZES)
def test_set_cookie_lines_never_crash(tmp_path, n, figures):
    from retention_cookies.setcookie import parse_cookie_date, parse_set_cookie

    fuzz = Fuzz("set-cookie", allowed=frozenset({0, 1, 2}))
    target = tmp_path / "lines.txt"

    @fuzz_settings(n)
    @given(st.lists(set_cookie_line, min_size=1, max_size=5))
    def check(lines: list[str]) -> None:
        for line in lines:  # the parsers themselves never raise
            parse_set_cookie(line)
            parse_cookie_date(line)
        target.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
        fuzz.invoke(["cookies", "check", "-d", str(COOKIE_DECLARATIONS), "--set-cookie-file", str(target),
                     "--format", "json"])

    check()
    _finish(fuzz, figures)


har_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(["log", "entries", "request", "response", "headers",
                                                             "cookies", "url", "name", "value", "startedDateTime",
                                                             "expires", "httpOnly", "secure"]), inner, max_size=4),
                          max_leaves=15)


@pytest.mark.parametrize("n", SIZES)
def test_har_files_never_crash(tmp_path, n, figures):
    fuzz = Fuzz("har", allowed=frozenset({0, 1, 2}))
    target = tmp_path / "capture.har"
    sample = json.loads((REPO / "tests" / "cookies" / "data" / "ordinary.har").read_text())
    spots = paths(sample)[1:]

    @fuzz_settings(n)
    @given(st.one_of(har_values, st.builds(lambda v: {"log": {"entries": v}}, har_values)),
           st.sampled_from(spots), scalars, st.booleans())
    def check(random_doc: Any, spot: tuple[Any, ...], value: Any, mutate: bool) -> None:
        if mutate:
            doc = copy.deepcopy(sample)
            at(doc, spot[:-1])[spot[-1]] = value
        else:
            doc = random_doc
        target.write_text(json.dumps(doc))
        fuzz.invoke(["cookies", "check", "-d", str(COOKIE_DECLARATIONS), "--har", str(target), "--format", "json"])

    check()
    _finish(fuzz, figures)


@pytest.mark.parametrize("n", SIZES)
def test_cookie_declarations_never_crash(tmp_path, n, figures):
    fuzz = Fuzz("cookie-declarations", allowed=frozenset({0, 1, 2}))
    sample = yaml.safe_load(COOKIE_DECLARATIONS.read_text())
    spots = paths(sample)[1:]
    lines = tmp_path / "lines.txt"
    lines.write_text("__Host-session=abc; Path=/; Secure; HttpOnly; SameSite=Lax\n")
    target = tmp_path / "cookies.yaml"

    @fuzz_settings(n)
    @given(st.sampled_from(spots), values, st.sampled_from(["replace", "delete"]))
    def check(spot: tuple[Any, ...], value: Any, how: str) -> None:
        doc = copy.deepcopy(sample)
        parent, last = at(doc, spot[:-1]), spot[-1]
        if how == "delete":
            del parent[last]
        else:
            parent[last] = value
        target.write_text(yaml.safe_dump(doc, allow_unicode=True))
        fuzz.invoke(["cookies", "check", "-d", str(target), "--set-cookie-file", str(lines), "--format", "json"])

    check()
    _finish(fuzz, figures)


@pytest.mark.parametrize("doc", [{"log": 1}, {"log": {"entries": [{"request": 7}]}}])
def test_a_har_of_the_wrong_shape_is_bad_input(tmp_path, doc):
    target = tmp_path / "capture.har"
    target.write_text(json.dumps(doc))
    result = Fuzz("har-shape", allowed=frozenset({0, 1, 2})).invoke(
        ["cookies", "check", "-d", str(COOKIE_DECLARATIONS), "--har", str(target)])
    assert result.exit_code == 2 and "internal error" not in result.stderr


def test_a_declaration_basis_of_the_wrong_type_is_bad_input(tmp_path):
    doc = yaml.safe_load(COOKIE_DECLARATIONS.read_text())
    doc["services"][0]["basis"] = {"a": 1}
    (tmp_path / "cookies.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "lines.txt").write_text("__Host-session=abc; Path=/; Secure; HttpOnly; SameSite=Lax\n")
    result = Fuzz("basis", allowed=frozenset({0, 1, 2})).invoke(
        ["cookies", "check", "-d", str(tmp_path / "cookies.yaml"), "--set-cookie-file", str(tmp_path / "lines.txt")])
    assert result.exit_code == 2 and "basis" in result.stderr


# -- a few through a real process: what cron sees ------------------------------------------------------------
BAD_CONFIGS = ["version: 2\n", "- a list\n", "version: 1\ncategories: {}\nsources: []\n", "\xff\xfe garbage",
               "version: 1\ncategories: {d: {retain: soon}}\nsources: [{name: a, backend: fs, category: d}]\n",
               "version: 1\ncategories: {d: {retain: 1d}}\nsources: [{name: a, backend: nope, category: d}]\n"]


@pytest.mark.parametrize("content", [*BAD_CONFIGS[:2], *(pytest.param(c, marks=pytest.mark.slow)
                                                         for c in BAD_CONFIGS[2:])])
def test_bad_configs_in_a_real_process_exit_2_with_one_line(tmp_path, content, figures):
    path = tmp_path / "policy.yaml"
    path.write_bytes(content.encode("latin-1"))
    done = subprocess.run([sys.executable, str(DRIVER), "run", "-c", str(path)], capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    figures["fuzz_inputs"] += 1
    figures["fuzz_inputs[subprocess]"] += 1
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
