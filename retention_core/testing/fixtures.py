"""pytest fixtures for plugin authors. Opt in from a conftest.py or test module::

    pytest_plugins = ["retention_core.testing.fixtures"]

    @pytest.fixture
    def retention_plugin():
        import retention_jsonl
        return retention_jsonl          # the module (or object) holding your hookimpls

Then ``retention_plugins`` is a freshly loaded plugin manager with your plugin registered,
``retention_cli`` runs ``retention …`` in-process with exactly those plugins, and
``policy_builder`` writes a policy YAML and subjects CSV into ``tmp_path``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..plugins import Plugins, load_plugins
from . import memory
from .builders import PolicyBuilder

__all__ = [
    "CliInvoker",
    "memory_store",
    "policy_builder",
    "retention_cli",
    "retention_entry_points",
    "retention_plugin",
    "retention_plugins",
]


@pytest.fixture
def retention_plugin() -> Any:
    """Override: the plugin under test (a module or object with hookimpls), a list, or None."""
    return None


@pytest.fixture
def retention_entry_points() -> bool:
    """Override to return True to also load every installed ``retention`` entry point.

    Off by default so a test sees the core plus your plugin only, whatever else is installed.
    (Do not also return an entry-point-installed plugin from ``retention_plugin``: pluggy
    refuses to register one object twice.)
    """
    return False


def plugins_for(plugin: Any, *, entry_points: bool = False) -> Plugins:
    """A fresh :class:`Plugins` with *plugin* (module, object, list or None) registered.

    The reference ``memory`` backend is always there (the :mod:`.memory` module is a plugin),
    so a test policy can use it.
    """
    extra: list[Any] = [] if plugin is None else list(plugin) if isinstance(plugin, (list, tuple)) else [plugin]
    return load_plugins(extra=[memory, *extra], entry_points=entry_points, disabled=set())


@pytest.fixture
def retention_plugins(retention_plugin: Any, retention_entry_points: bool) -> Plugins:
    """A freshly loaded plugin manager (``.pm``) and registries, with your plugin in it.

    Loading runs ``check_pending``, so a misspelt hook name fails here, loudly.
    """
    return plugins_for(retention_plugin, entry_points=retention_entry_points)


@dataclass
class CliInvoker:
    """Runs the ``retention`` command line in-process with a given set of plugins."""

    plugins: Plugins

    def invoke(self, *args: str | Path, input: str | None = None,
               env: dict[str, str] | None = None, catch_exceptions: bool = True) -> Any:
        """``retention ARGS…``; returns click's ``Result`` (``exit_code``, ``output``, ``stderr``)."""
        from click.testing import CliRunner

        from ..cli import cli

        return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env,
                                  catch_exceptions=catch_exceptions)

    __call__ = invoke


@pytest.fixture
def retention_cli(retention_plugins: Plugins) -> Iterator[CliInvoker]:
    """Invoke ``retention …`` (click's CliRunner) with exactly ``retention_plugins`` loaded.

    Your ``retention_register_commands`` hook runs, so your commands are there; everything
    is restored after the test.
    """
    from ..cli import use_plugins

    with use_plugins(retention_plugins):
        yield CliInvoker(retention_plugins)


@pytest.fixture
def policy_builder(tmp_path: Path) -> PolicyBuilder:
    """Write a policy YAML (and subjects CSV) into ``tmp_path``; returns the policy's path.

    ``policy_builder.write(categories={...}, sources=[...], subjects=[{...}], holds=[...],
    limits={...})`` — the keys of the policy file, state and audit kept in ``tmp_path``.
    """
    return PolicyBuilder(tmp_path)


@pytest.fixture
def memory_store() -> Iterator[str]:
    """A fresh, uniquely named store of the ``memory`` backend, forgotten after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    memory.reset(name)

