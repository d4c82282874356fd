"""Fixtures of the cookie plugin's tests: the data folder and a declarations writer."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def write_decl(tmp_path: Path) -> Callable[[str], Path]:
    """Write a declarations YAML (dedented) and return its path."""

    def write(text: str, name: str = "cookies.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
