"""Tests that need a real service (a database, a moto server, a browser).

On a developer's machine a missing service skips the test; in CI (``CI=true``) it fails it,
so a broken install step can never turn into a green run that tested nothing.
"""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, what: str) -> None:
    """Skip the calling test when *what* is not *available*; fail it instead when ``CI=true``."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available")
