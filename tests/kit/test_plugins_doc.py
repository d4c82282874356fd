"""The complete plugin in docs/plugins.md is real: extracted, loaded, and its tests pass.

Every fenced block written as ```lang file=PATH is written to PATH in a fresh folder; the
plugin's own tests (which subclass the conformance suite) then run in a subprocess.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retention_core.testing.fixtures import plugins_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
BLOCK = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.M | re.S)


@pytest.fixture
def extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert {name for name, _ in files} >= {"setup.cfg", "pyproject.toml", "retention_notes/__init__.py",
                                           "retention_notes/backend.py", "tests/test_notes.py"}
    for name, body in files:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_setup_cfg_declares_the_entry_point(extracted: Path) -> None:
    cfg = configparser.ConfigParser()
    cfg.read(extracted / "setup.cfg")
    entry = cfg["options.entry_points"]["retention"].strip()
    assert entry == "notes = retention_notes"


def test_plugin_registers_its_backend(extracted: Path) -> None:
    import importlib

    module = importlib.import_module("retention_notes")
    try:
        assert plugins_for(module).backends().get("notes").__name__ == "NotesBackend"
    finally:
        for name in [n for n in sys.modules if n.startswith("retention_notes")]:
            del sys.modules[name]


def test_plugin_tests_pass(extracted: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(extracted), *sys.path]))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=extracted, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))  # type: ignore[union-attr]
    assert passed >= 12, result.stdout[-1000:]
