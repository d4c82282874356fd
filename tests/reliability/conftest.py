"""Fixtures of the reliability suite: services, a tally of the published figures, slow gating.

Tests marked ``slow`` are the long reliability suite: they run with ``-m slow`` (``tox -e
reliability``) or through ``python tests/reliability/run.py``; a plain ``pytest`` runs only
the fast subset of this folder. Every test adds what it measured to the session's
:class:`Figures`; ``run.py`` turns that tally into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retention_core.testing import require_service

from .helpers import MARIADB_URL, POSTGRES_URL, moto_server_process, postgres_problem

FIGURES_ENV = "RELIABILITY_FIGURES"
FULL_ENV = "RELIABILITY_FULL"
HERE = Path(__file__).resolve().parent


class Figures(Counter[str]):
    """Counts the suite publishes: trials, kills, fuzzed inputs, violations found."""

    def add(self, name: str, n: int = 1) -> None:
        self[name] += n


_FIGURES = Figures()
_STARTED = time.monotonic()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def _wants_slow(config: pytest.Config) -> bool:
    marker = config.getoption("markexpr", "") or ""
    return os.environ.get(FULL_ENV) == "1" or ("slow" in marker and "not slow" not in marker)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep this folder's slow tests out of a plain ``pytest`` (the normal suite stays fast)."""
    if _wants_slow(config):
        return
    skip = pytest.mark.skip(reason="long reliability suite: run with -m slow or tests/reliability/run.py")
    for item in items:
        if item.get_closest_marker("slow") and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


_RESULTS: Counter[str] = Counter()
_XFAILED: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tally this folder's test results for the figures (and the known defects behind xfails)."""
    if not report.nodeid.startswith("tests/reliability/"):
        return
    if hasattr(report, "wasxfail"):
        _RESULTS["xfailed" if report.skipped else "xpassed"] += 1
        if report.skipped:
            _XFAILED[report.nodeid] = str(report.wasxfail).removeprefix("reason: ")
    elif report.when == "call" or report.outcome != "passed":
        _RESULTS[report.outcome] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get(FIGURES_ENV)
    if not out:
        return
    data: dict[str, Any] = {"figures": dict(_FIGURES), "results": dict(_RESULTS), "xfailed": _XFAILED,
                            "seconds": round(time.monotonic() - _STARTED, 1), "exitstatus": int(exitstatus)}
    Path(out).write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach real AWS: fake keys for every client, in this process and in subprocesses."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "RETENTION_TEST_KILL_AT", "RETENTION_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server in its own process (so a SIGKILLed client cannot take it down)."""
    with moto_server_process() as endpoint:
        require_service(endpoint is not None, "moto server (pip install 'moto[server]')")
        yield endpoint  # type: ignore[misc]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    problem = postgres_problem()
    require_service(problem is None, f"PostgreSQL at {POSTGRES_URL} ({problem})")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    problem = postgres_problem(MARIADB_URL)
    require_service(problem is None, f"MariaDB at {MARIADB_URL} ({problem})")
    return MARIADB_URL
