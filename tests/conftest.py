"""Shared test settings. Tests needing a real service use retention_core.testing.require_service."""

from __future__ import annotations

import pytest

#: The plugin kit's fixtures (retention_cli, policy_builder, memory_store …), for every test.
pytest_plugins = ["retention_core.testing.fixtures"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up a developer's config or disabled plugins."""
    monkeypatch.delenv("RETENTION_CONFIG", raising=False)
    monkeypatch.delenv("RETENTION_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("RETENTION_AUDIT_KEY", raising=False)
    monkeypatch.delenv("RETENTION_AUDIT_KEY_FILE", raising=False)
    monkeypatch.setenv("RETENTION_ACTOR", "tester")
