"""docs/cookies.md cannot rot: every rule, schema key and CLI option is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention_cookies.cli import cookies
from retention_cookies.declarations import BASES, CATEGORIES
from retention_cookies.rules import RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "cookies.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_rule_is_in_the_rules_table(doc: str) -> None:
    for rule in RULES.values():
        assert f"{rule.id} | {rule.name} | {rule.severity} |" in doc, rule.id


def test_every_schema_key_basis_and_category(doc: str) -> None:
    for key in ("version", "claim", "policy_text", "first_party_domains", "services", "name", "description",
                "category", "basis", "justification", "purposes", "third_party", "cookies", "match",
                "storage", "domain", "path", "lifetime", "attributes", "secure", "http_only", "same_site"):
        assert f"`{key}`" in doc, key
    for word in (*BASES, *CATEGORIES, "unreviewed"):
        assert f"`{word}`" in doc, word


def test_every_cli_option(doc: str) -> None:
    for command in cookies.commands.values():
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in doc, f"{command.name} {opt}"
