"""Write a policy YAML and its subjects CSV from Python dicts, for tests.

The keys are exactly the policy file's (docs/user-guide.md); the builder only adds
defaults that keep a test self-contained: state and audit files next to the policy.
Needs no pytest, so it also serves scripts and examples.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PolicyBuilder", "SUBJECT_COLUMNS"]

SUBJECT_COLUMNS = ("subject_id", "controller", "service_ended_at", "minor")


class PolicyBuilder:
    """``PolicyBuilder(folder).write(categories=..., sources=..., subjects=[...])`` → policy path.

    ``subjects`` is either a list of rows, written to a CSV next to the policy and referenced
    as ``{source: csv, path: …}``, or a mapping used verbatim as the ``subjects:`` block (for
    another subject source). Rows are dicts with the CSV columns (``subject_id`` required; dates as ISO
    strings or ``date``/``datetime``; ``minor`` as bool). Any other top-level key of the
    policy (``holds``, ``limits``, ``state``, ``audit``, ``version``) is passed through
    unchanged, so a test can also write deliberately invalid policies.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def write(self, *, categories: Mapping[str, Any], sources: Iterable[Mapping[str, Any]],
              subjects: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None, name: str = "policy.yaml",
              **top: Any) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        policy: dict[str, Any] = {"version": 1, "state": "sqlite:///state.db", "audit": "audit.jsonl"}
        if isinstance(subjects, Mapping):
            policy["subjects"] = _plain(subjects)
        elif subjects is not None:
            csv_name = Path(name).stem + "-subjects.csv"
            self.write_subjects(subjects, csv_name)
            policy["subjects"] = {"source": "csv", "path": csv_name}
        policy["categories"] = _plain(categories)
        policy["sources"] = _plain(list(sources))
        policy.update(_plain(top))
        path = self.folder / name
        path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def write_subjects(self, rows: Iterable[Mapping[str, Any]], name: str = "subjects.csv") -> Path:
        path = self.folder / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=SUBJECT_COLUMNS)
            writer.writeheader()
            for row in rows:
                unknown = set(row) - set(SUBJECT_COLUMNS)
                if unknown:
                    raise ValueError(f"unknown subject column {sorted(unknown)[0]!r} "
                                     f"(columns: {', '.join(SUBJECT_COLUMNS)})")
                writer.writerow({column: _cell(row.get(column)) for column in SUBJECT_COLUMNS})
        return path

    __call__ = write


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _plain(value: Any) -> Any:
    """Turn tuples, Paths and other mappings into what yaml.safe_dump accepts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "pattern") and hasattr(value, "flags"):  # a compiled regex
        return value.pattern
    return value
