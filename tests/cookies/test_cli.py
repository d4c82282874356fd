"""The ``cookies`` group through click's CliRunner: exit codes and output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention_cookies.cli import cookies

REPO = Path(__file__).resolve().parents[2]
DECL = str(REPO / "config" / "cookies.yaml")

pytest.importorskip("tldextract")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cookies, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_compliant_set_cookie_lines_exit_0(data_dir: Path) -> None:
    code, out, _ = run("check", "-d", DECL, "--set-cookie-file", str(data_dir / "set-cookie.txt"))
    assert code == 0, out
    assert "3 observation(s)" in out and "0 error(s)" in out
    assert "csrf" in out  # the stale declaration is reported as info, which does not fail


def test_tracker_in_har_exits_1_with_json(data_dir: Path) -> None:
    code, out, _ = run("check", "-d", DECL, "--har", str(data_dir / "joined.har"), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["summary"]["error"] >= 1
    undeclared = [f for f in report["findings"] if f["rule"] == "CK001"]
    assert [f["subject"] for f in undeclared] == ["cookie _fbp (contact.example.com)"]
    assert "Meta Pixel" in undeclared[0]["message"]
    assert {o["name"] for o in report["observations"]} == {"__Host-session", "cookie_consent", "_fbp"}


def test_sanitized_har_exits_1(data_dir: Path) -> None:
    code, out, _ = run("check", "-d", DECL, "--har", str(data_dir / "sanitized.har"))
    assert code == 1 and "CK016" in out and "sanitized" in out


def test_sarif_output_is_valid_2_1_0(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "cookies.sarif"
    code, out, err = run("check", "-d", DECL, "--har", str(data_dir / "ordinary.har"), "-o", str(target))
    assert code == 1 and out == "" and "report written" in err
    sarif = json.loads(target.read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run_ = sarif["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(r["id"] for r in rules)
    assert run_["results"], "the ordinary HAR has an undeclared _ga"
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none")
        assert result["message"]["text"]
        for location in result.get("locations", []):
            physical = location["physicalLocation"]
            assert physical["artifactLocation"]["uri"]
            assert physical.get("region", {"startLine": 1})["startLine"] >= 1
    ga = next(r for r in run_["results"] if r["ruleId"] == "CK001")
    assert "_ga" in ga["message"]["text"] and ga["level"] == "error"
    stale = [r for r in run_["results"] if r["ruleId"] == "CK014"]
    assert stale and all(r["locations"][0]["physicalLocation"]["region"]["startLine"] > 1 for r in stale)


def test_html_output(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, _, _ = run("check", "-d", DECL, "--har", str(data_dir / "ordinary.har"), "-o", str(target))
    assert code == 1
    page = target.read_text()
    assert page.startswith("<!doctype html>") and "CK001" in page and "&lt;" not in page.split("<table>")[0]


@pytest.mark.parametrize("args", [
    ("check", "-d", "/nonexistent/cookies.yaml"),
    ("check", "-d", DECL, "--har", "/nonexistent.har"),
    ("check", "-d", DECL, "--click", "#accept"),
    ("check", "-d", DECL, "--format", "pdf"),
    ("import", "--from", "klaro", "/nonexistent.js"),
    ("import", "--from", "nothing", DECL),
])
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...]) -> None:
    code, out, err = run(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    assert err.strip().count("\n") <= 3 and "Error" in err


def test_config_error_names_the_key(write_decl) -> None:  # type: ignore[no-untyped-def]
    path = write_decl("version: 1\nclaim: essential-only\nservices:\n"
                      "  - {name: a, category: analytics, cookies: [{name: x, match: glob, lifetime: session}]}\n")
    code, _, err = run("check", "-d", str(path))
    assert code == 2
    expected = "services[0].cookies[0].match: expected one of exact, prefix, regex, found 'glob'"
    assert err.strip() == f"Error: {path}: {expected}"


def test_import_writes_a_draft_the_check_accepts(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "draft.yaml"
    code, _, err = run("import", "--from", "klaro", str(data_dir / "klaro-config.js"), "-o", str(target))
    assert code == 0 and "wrote" in err
    code, out, _ = run("check", "-d", str(target))
    assert code == 1 and "CK017" in out  # loads, but is not yet a reviewed promise
    assert "CK002" not in out  # optional services drafted as claim: consent, which can pass once reviewed


def test_import_to_stdout(data_dir: Path) -> None:
    code, out, _ = run("import", "--from", "cookieconsent", str(data_dir / "cookieconsent-config.js"))
    assert code == 0 and out.startswith("# Drafted by") and "cc_cookie" in out


def test_plugin_hook_registers_the_group() -> None:
    import click

    import retention_cookies

    group = click.Group("retention")
    retention_cookies.retention_register_commands(group)
    assert set(group.commands["cookies"].commands) == {"check", "import"}


def test_sarif_paths_are_relative_to_the_working_directory(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, out, _ = run("check", "-d", "config/cookies.yaml", "--har", str(data_dir / "ordinary.har"),
                       "--format", "sarif")
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"]
            for result in json.loads(out)["runs"][0]["results"] for loc in result.get("locations", [])}
    assert uris == {"config/cookies.yaml", "tests/cookies/data/ordinary.har"}


def test_missing_extra_gives_the_install_hint(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from retention_cookies import domains

    monkeypatch.setitem(sys.modules, "tldextract", None)  # import tldextract -> ImportError
    domains._extractor.cache_clear()
    try:
        code, _, err = run("check", "-d", DECL, "--har", str(data_dir / "ordinary.har"))
    finally:
        domains._extractor.cache_clear()
    assert code == 2 and err.strip() == "Error: the cookie check needs tldextract: pip install 'retention[cookies]'"
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    code, _, err = run("check", "-d", DECL, "--url", "http://127.0.0.1:9/")
    assert code == 2 and "--url needs Playwright: pip install 'retention[cookies]'" in err


def test_loaded_through_the_retention_entry_point() -> None:
    from importlib import metadata

    import click

    from retention_core.plugins import load_plugins

    names = {ep.name: ep.value for ep in metadata.entry_points(group="retention")}
    if "cookies" not in names:
        pytest.skip("the retention distribution is not installed (pip install -e .)")
    assert names["cookies"] == "retention_cookies"
    group = click.Group("retention")
    load_plugins().register_commands(group)
    assert "cookies" in group.commands


def test_ocd_as_extra_knowledge(write_decl) -> None:  # type: ignore[no-untyped-def]
    ocd = REPO / ".." / "shared" / "data" / "open-cookie-database.csv"
    if not ocd.is_file():
        pytest.skip(f"{ocd} is not present (it lives in shared/data beside the repo)")
    path = write_decl("version: 1\nclaim: essential-only\nservices:\n"
                      "  - name: tags\n    category: strictly_necessary\n    basis: security\n"
                      "    justification: j\n    cookies: [{name: td, lifetime: session}]\n")
    code, out, _ = run("check", "-d", str(path))
    assert code == 0 and "CK003" not in out  # the built-in knowledge does not know 'td'
    code, out, _ = run("check", "-d", str(path), "--ocd", str(ocd))
    assert code == 1 and "CK003" in out and "Google Tag Manager" in out


def test_without_declared_domains_the_har_page_is_first_party(write_decl, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    text = ("version: 1\nclaim: essential-only\n{domains}services:\n"
            "  - name: app\n    category: strictly_necessary\n    basis: authentication\n    justification: j\n"
            "    cookies: [{{name: __Host-session, lifetime: session}}]\n")
    code, out, _ = run("check", "-d", str(write_decl(text.format(domains=""))), "--har",
                       str(data_dir / "joined.har"), "--format", "json")
    assert "CK006" not in {f["rule"] for f in json.loads(out)["findings"]}
    elsewhere = write_decl(text.format(domains="first_party_domains: [other.example.org]\n"), "b.yaml")
    code, out, _ = run("check", "-d", str(elsewhere), "--har", str(data_dir / "joined.har"), "--format", "json")
    assert "CK006" in {f["rule"] for f in json.loads(out)["findings"]}


def test_every_sarif_result_has_a_location() -> None:
    from retention_cookies.model import Finding
    from retention_cookies.output import render_sarif

    orphan = Finding(rule="CK015", severity="warning", subject="s", message="m")
    sarif = json.loads(render_sarif([orphan], default_file="config/cookies.yaml"))
    [result] = sarif["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("config/cookies.yaml")


def test_help_works_without_the_cookies_extra() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['playwright'] = sys.modules['tldextract'] = None\n"
            "from click.testing import CliRunner\n"
            "from retention_cookies.cli import cookies\n"
            "for args in (['--help'], ['check', '--help'], ['import', '--help']):\n"
            "    assert CliRunner().invoke(cookies, args).exit_code == 0, args\n"
            "import retention_cookies.checks, retention_cookies.har, retention_cookies.browser\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
