"""``register.deferred``: a backend registered by name and imported when a policy first uses it,
and what that buys — a run of the demo (files, SQLite state) imports no heavy library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retention_core import BackendRegistry, ConfigError, PluginError, hookimpl
from retention_core.plugins import load_plugins
from retention_core.testing.memory import InMemoryBackend

ROOT = Path(__file__).resolve().parents[2]


class Deferring:
    def __init__(self, load: Any, hint: str | None = None) -> None:
        self.load, self.hint, self.calls = load, hint, 0

    @hookimpl
    def retention_register_backends(self, register: BackendRegistry) -> None:
        def counted() -> Any:
            self.calls += 1
            return self.load()

        register.deferred("memory", counted, hint=self.hint)


def backends(plugin: Deferring) -> BackendRegistry:
    return load_plugins(extra=[plugin], entry_points=False, disabled=set()).backends()


def test_the_loader_runs_once_on_first_use_not_at_registration() -> None:
    plugin = Deferring(lambda: InMemoryBackend)
    registry = backends(plugin)
    assert "memory" in registry.names() and plugin.calls == 0
    assert registry.get("memory") is InMemoryBackend
    assert registry.get("memory") is InMemoryBackend
    assert plugin.calls == 1
    assert registry.entries["memory"].plugin != "?"


def test_a_loader_missing_its_library_makes_the_backend_unavailable_with_the_hint() -> None:
    def load() -> Any:
        raise ModuleNotFoundError("No module named 'heavylib'", name="heavylib")

    registry = backends(Deferring(load, hint="pip install heavylib"))
    missing = r"backend 'memory' is not installed: heavylib is missing: pip install heavylib"
    with pytest.raises(ConfigError, match=missing):
        registry.get("memory", key="sources[0].backend")


@pytest.mark.parametrize("returned", [object, "InMemoryBackend", None])
def test_a_loader_returning_no_backend_class_is_a_plugin_error(returned: Any) -> None:
    with pytest.raises(PluginError, match="expected a Backend subclass named 'memory'"):
        backends(Deferring(lambda: returned)).get("memory")


def test_a_loader_returning_a_backend_of_another_name_is_a_plugin_error() -> None:
    class Other(InMemoryBackend):
        name = "other"

    with pytest.raises(PluginError, match="registered backend 'memory'"):
        backends(Deferring(lambda: Other)).get("memory")


def test_a_name_taken_by_a_deferred_backend_collides_like_any_other() -> None:
    class Eager:
        @hookimpl
        def retention_register_backends(self, register: BackendRegistry) -> None:
            register(InMemoryBackend)

    with pytest.raises(PluginError, match="registered by both"):
        load_plugins(extra=[Deferring(lambda: InMemoryBackend), Eager()], entry_points=False,
                     disabled=set()).backends()


def test_the_builtin_sql_and_s3_backends_load_on_first_use() -> None:
    registry = load_plugins().backends()
    assert registry.get("sql").__name__ == "SqlBackend"
    assert registry.get("s3").__name__ == "S3Backend"


def test_a_run_on_files_with_sqlite_state_imports_no_heavy_library(tmp_path: Path) -> None:
    """SQLAlchemy alone was half of a dry run's start-up (docs/performance.md): a run whose
    sources and state need none of these must not import them."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("x")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
state: sqlite:///{tmp_path}/state.db
audit: {tmp_path}/audit.jsonl
categories:
  file: {{retain: 365d, after: created}}
sources:
  - {{name: files, backend: fs, options: {{root: {tmp_path / 'files'}}}, category: file}}
""")
    probe = (f"import sys\nsys.argv = ['retention', 'run', '-c', {str(policy)!r}, '--dry-run']\n"
             "from retention_core.cli import main\ntry:\n    main()\nexcept SystemExit as exc:\n"
             "    assert not exc.code, exc.code\n"
             "heavy = ('sqlalchemy', 'boto3', 'botocore', 'prometheus_client', 'pyarrow', 'jinja2', 'distributed')\n"
             "print('IMPORTED', sorted(m for m in heavy if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False)
    assert "IMPORTED []" in done.stdout, done.stdout + done.stderr
