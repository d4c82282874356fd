"""Shared test helpers: services are required (not skipped) when CI=true."""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, what: str) -> None:
    """Skip when a real service is missing, except in CI where that is a failure."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up a developer's config or disabled plugins."""
    monkeypatch.delenv("RETENTION_CONFIG", raising=False)
    monkeypatch.delenv("RETENTION_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("RETENTION_ACTOR", "tester")
