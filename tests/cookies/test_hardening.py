"""Hostile declarations and HAR files through ``retention cookies check``: one line naming the
file and exit 2, never a check silently turned off or an internal error (issue 15 #11, #13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from retention_cookies import declarations
from retention_cookies.cli import cookies
from retention_core import policy

pytest.importorskip("tldextract")

REPO = Path(__file__).resolve().parents[2]
DECL = REPO / "config" / "cookies.yaml"


def check(*args: str) -> Result:
    return CliRunner().invoke(cookies, ["check", *args], catch_exceptions=False)


def one_error_line(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


ANALYTICS = """
  - name: analytics
    category: analytics
    cookies:
      - name: _ga
        lifetime: 2y
"""


def test_a_second_claim_cannot_turn_the_essential_only_check_off(tmp_path: Path, data_dir: Path) -> None:
    """With PyYAML's default the last ``claim`` won: ``none`` silently disabled the check."""
    lines = str(data_dir / "set-cookie.txt")
    declared = tmp_path / "cookies.yaml"
    declared.write_text(DECL.read_text(encoding="utf-8") + ANALYTICS, encoding="utf-8")
    refused = check("-d", str(declared), "--set-cookie-file", lines)
    assert refused.exit_code == 1 and "1 error(s)" in refused.stdout  # an analytics service breaks the claim
    declared.write_text(declared.read_text(encoding="utf-8") + "claim: none\n", encoding="utf-8")
    line_no = declared.read_text(encoding="utf-8").count("\n")
    one_error_line(check("-d", str(declared), "--set-cookie-file", lines), str(declared), f"line {line_no}",
                   "duplicate key claim")


def test_a_duplicate_key_inside_a_service_is_named(write_decl: Callable[..., Path]) -> None:
    path = write_decl("""\
        version: 1
        claim: essential-only
        services:
          - name: app
            category: strictly_necessary
            basis: authentication
            justification: sign-in
            category: marketing
            cookies: []
        """)
    one_error_line(check("-d", str(path)), str(path), "line 8", "duplicate key category")


def test_declarations_share_the_policy_loader() -> None:
    """One loader rejects duplicates for every configuration file: a fix there serves both."""
    assert issubclass(declarations._LineLoader, policy.StrictLoader)


@pytest.mark.parametrize("nest", [lambda n: "[" * n + "]" * n, lambda n: "{a: " * n + "1" + "}" * n],
                         ids=["list", "map"])
def test_declarations_nested_5000_deep_name_the_file(tmp_path: Path, nest: Callable[[int], str]) -> None:
    path = tmp_path / "cookies.yaml"
    path.write_text(f"version: 1\nclaim: none\nservices: {nest(5000)}\n", encoding="utf-8")
    one_error_line(check("-d", str(path)), str(path), "nested deeper than 100 levels")


def test_har_nested_5000_deep_names_the_file(tmp_path: Path) -> None:
    har = tmp_path / "deep.har"
    har.write_text('{"log": {"entries": ' + "[" * 5000 + "]" * 5000 + "}}", encoding="utf-8")
    one_error_line(check("-d", str(DECL), "--har", str(har)), str(har), "nested too deeply")


def test_declarations_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cookies.yaml"
    path.write_bytes(b"version: 1\nclaim: \xff\n")
    one_error_line(check("-d", str(path)), str(path), "expected UTF-8")
