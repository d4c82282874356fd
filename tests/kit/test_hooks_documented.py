"""Documentation that cannot rot: every hook is documented with its exact signature and tested.

Adding a hookspec without a section in docs/hooks.md, or without a ``test_hook_<name>`` in
tests/kit/test_hooks.py, fails here (datasette does the same for its plugin hooks).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from retention_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS_DOC = ROOT / "docs" / "hooks.md"
HOOK_TESTS = Path(__file__).with_name("test_hooks.py")


def hook_names() -> list[str]:
    return sorted(name for name, fn in vars(hookspecs).items()
                  if name.startswith("retention_") and callable(fn) and hasattr(fn, "retention_spec"))


def signature(name: str) -> str:
    """``retention_x(a: A, b: B) -> None``, annotations exactly as written in hookspecs.py."""
    fn = getattr(hookspecs, name)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in inspect.signature(fn).parameters.values())
    return f"{name}({params}) -> {inspect.signature(fn).return_annotation}"


def test_there_are_hooks_to_check() -> None:
    assert "retention_register_backends" in hook_names()
    assert len(hook_names()) >= 7


@pytest.mark.parametrize("name", hook_names())
def test_hook_signature_is_documented(name: str) -> None:
    assert signature(name) in HOOKS_DOC.read_text(encoding="utf-8"), (
        f"docs/hooks.md must show the exact signature `{signature(name)}`")


def test_docs_name_only_real_hooks() -> None:
    documented = set(re.findall(r"^#+\s*`?(retention_\w+)", HOOKS_DOC.read_text(encoding="utf-8"), re.M))
    assert documented == set(hook_names()), (
        f"headings for hooks that do not exist: {sorted(documented - set(hook_names()))}; "
        f"hooks without a heading: {sorted(set(hook_names()) - documented)}")


@pytest.mark.parametrize("name", hook_names())
def test_hook_has_a_test(name: str) -> None:
    tree = ast.parse(HOOK_TESTS.read_text(encoding="utf-8"))
    tests = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert f"test_hook_{name}" in tests, f"tests/kit/test_hooks.py needs a test_hook_{name}"
