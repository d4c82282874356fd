"""The house's layering, read from the source with ``ast`` (nothing is imported).

- ``retention_core`` never imports a plugin: plugins depend on the core, never the reverse.
- No import cycle among ``retention_core``'s modules: none among the imports that run when a
  module loads, and none either when imports inside functions count too (a lazy import is for
  start-up time, not for hiding a cycle). ``if TYPE_CHECKING:`` imports never count.
- No private name (``_x``) is imported from another module: what a module shares is public.
- Every error class of the core lives in ``errors.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "retention_core"
PLUGINS = ("retention_fs", "retention_s3", "retention_sql", "retention_cookies")
#: Where private imports are looked for: the core, the built-in plugins, the bench, the tests.
CHECKED = (CORE, ROOT / "plugins", ROOT / "bench", ROOT / "tests")
FIRST_PARTY = ("retention_", "bench", "tests")

#: Private names still imported across modules, in files other helpers own: each entry is
#: (importing file, module, name). The lead empties this list; an entry that no longer occurs
#: fails the test, so the list cannot go stale.
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str, str]] = set()

#: Error classes still defined outside errors.py, in files other helpers own (lead: move them).
ERRORS_ELSEWHERE_ALLOWED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One ``import``/``from … import`` in a file: the absolute module and the names taken."""

    module: str
    names: tuple[str, ...]
    line: int
    at_load: bool  # runs when the module loads (not in a function, not under TYPE_CHECKING)
    in_function: bool = False  # runs when a function is called


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "plugins" if path.is_relative_to(ROOT / "plugins") else ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(path: Path) -> Iterator[Import]:
    """Every import in *path*, with relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if is_package(path) else here.rpartition(".")[0]

    def walk(node: ast.AST, at_load: bool, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, (), child.lineno, at_load, in_function)
            elif isinstance(child, ast.ImportFrom):
                base = package
                for _ in range(max(child.level - 1, 0)):
                    base = base.rpartition(".")[0]
                module = (f"{base}.{child.module}" if child.module else base) if child.level else child.module or ""
                yield Import(module, tuple(a.name for a in child.names), child.lineno, at_load, in_function)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, False, True)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(ast.Module(body=child.body, type_ignores=[]), False, False)
                yield from walk(ast.Module(body=child.orelse, type_ignores=[]), at_load, in_function)
            else:
                yield from walk(child, at_load, in_function)

    yield from walk(tree, True, False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "build" not in p.parts and ".venv" not in p.parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in files(CORE)}


def import_graph(*, lazy: bool) -> dict[str, set[str]]:
    """Module → the core modules it imports when it loads, and with *lazy* also inside its
    functions (``from .pkg import mod`` counts ``pkg.mod``; TYPE_CHECKING imports never count)."""
    modules = core_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports(path):
            if not (imp.at_load or (lazy and imp.in_function)) or not imp.module.startswith("retention_core"):
                continue
            targets = {imp.module} | {f"{imp.module}.{n}" for n in imp.names}
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def private_imports() -> set[tuple[str, str, str]]:
    found = set()
    for path in files(*CHECKED):
        for imp in imports(path):
            if not imp.module.startswith(FIRST_PARTY):
                continue
            for name in imp.names:
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.add((str(path.relative_to(ROOT)), imp.module, name))
    return found


# -- the tests ---------------------------------------------------------------------------------------


def test_the_core_never_imports_a_plugin() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{imp.line}: {imp.module}" for path in files(CORE)
                 for imp in imports(path) if imp.module.split(".")[0] in PLUGINS]
    assert offenders == []


def test_no_import_cycle_among_core_modules() -> None:
    assert cycles(import_graph(lazy=False)) == []


def test_no_import_cycle_hidden_behind_lazy_imports() -> None:
    assert cycles(import_graph(lazy=True)) == []


def test_no_private_name_is_imported_from_another_module() -> None:
    found = private_imports()
    assert sorted(found - PRIVATE_IMPORTS_ALLOWED) == [], "import a public name, or make it public"
    assert sorted(PRIVATE_IMPORTS_ALLOWED - found) == [], "fixed: remove it from PRIVATE_IMPORTS_ALLOWED"


def test_every_core_error_class_lives_in_errors_py() -> None:
    bases = {"RetentionError", "ConfigError", "PluginError", "BackendError", "LockedError", "ClockError",
             "CertificateError"}
    found = set()
    for path in files(CORE):
        if path.name == "errors.py" or "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in bases for b in node.bases):
                found.add((str(path.relative_to(ROOT)), node.name))
    assert sorted(found - ERRORS_ELSEWHERE_ALLOWED) == [], "define it in retention_core/errors.py"
    assert sorted(ERRORS_ELSEWHERE_ALLOWED - found) == [], "moved: remove it from ERRORS_ELSEWHERE_ALLOWED"


# -- the checks themselves can fail ----------------------------------------------------------------------


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("from .engine import _held\n", [("retention_core.engine", ("_held",), True, False)]),
    ("from . import __version__\n", [("retention_core", ("__version__",), True, False)]),
    ("from ..model import Record\n", [("retention_core.model", ("Record",), True, False)]),
    ("def f():\n    from .plugins import x\n", [("retention_core.plugins", ("x",), False, True)]),
    ("if TYPE_CHECKING:\n    from .runtime import Runtime\n",
     [("retention_core.runtime", ("Runtime",), False, False)]),
    ("import retention_s3.client\n", [("retention_s3.client", (), True, False)]),
], ids=["private", "dunder", "parent", "lazy", "type-checking", "plugin"])
def test_imports_are_read_as_python_runs_them(monkeypatch: pytest.MonkeyPatch, source: str,
                                             expected: list[tuple[str, tuple[str, ...], bool, bool]]) -> None:
    where = CORE / "testing" / "probe.py" if source.startswith("from ..") else CORE / "probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert [(i.module, i.names, i.at_load, i.in_function) for i in imports(where)] == expected


def test_the_cycle_the_issue_found_would_be_caught() -> None:
    """defaults → html_report → plugins → defaults, through imports inside functions (at 7f0cee7)."""
    graph = {"retention_core.defaults": {"retention_core.html_report"},
             "retention_core.html_report": {"retention_core.plugins"},
             "retention_core.plugins": {"retention_core.defaults"}}
    assert cycles(graph) == [sorted(graph)]
