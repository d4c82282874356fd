"""Everything the inputs showed, gathered once: what the checks judge and what a saved visit holds.

A live visit is slow and, on racy sites, not repeatable; saving what it observed
(``--save-observations``) and judging that file again (``--observations``) gives every
format the same evidence and lets CI re-check a recorded visit without a network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from retention_core import ConfigError

from .model import Finding, Observation, Request, observation_from_dict, observation_to_dict

FORMAT = "retention-cookies-observations"


@dataclass(slots=True)
class Evidence:
    """Observations, requests and input findings (parse anomalies, sanitized HARs) of a run."""

    observations: list[Observation] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    storages: set[str] = field(default_factory=set)  # storages the inputs could see
    first_party_hosts: list[str] = field(default_factory=list)  # always first-party (the --url host)
    page_hosts: list[str] = field(default_factory=list)  # first-party only when none are declared
    visits: list[dict[str, Any]] = field(default_factory=list)  # browser, settle time, cookie mode

    def add(self, other: Evidence) -> None:
        """Merge *other* into this evidence."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, set):
                value |= getattr(other, f.name)
            else:
                value += getattr(other, f.name)


def save(evidence: Evidence, path: Path) -> None:
    """Write *evidence* as JSON (OSError is the caller's to report)."""
    data = {
        "format": FORMAT, "version": 1,
        "inputs": evidence.inputs, "visits": evidence.visits,
        "storages": sorted(evidence.storages),
        "first_party_hosts": evidence.first_party_hosts, "page_hosts": evidence.page_hosts,
        "observations": [observation_to_dict(o) for o in evidence.observations],
        "requests": [asdict(r) for r in evidence.requests],
        "findings": [asdict(f) for f in evidence.findings],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load(path: Path) -> Evidence:
    """Read a file written by ``save``; anything else is one ConfigError naming the file."""
    name = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read observations: {exc.strerror or exc}", file=name) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"not a saved observations file: invalid JSON ({exc})", file=name) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"not a saved observations file: expected format {FORMAT!r} "
                          "(written by --save-observations)", file=name, key="format")
    if data.get("version") != 1:
        raise ConfigError(f"expected version 1, found {data.get('version')!r}", file=name, key="version")
    key = "observations"
    try:
        evidence = Evidence(
            inputs=[f"{i} (saved in {name})" for i in data.get("inputs", [])],
            visits=list(data.get("visits", [])), storages=set(data.get("storages", [])),
            first_party_hosts=list(data.get("first_party_hosts", [])), page_hosts=list(data.get("page_hosts", [])))
        evidence.observations = [observation_from_dict(o) for o in data.get(key, [])]
        key = "requests"
        evidence.requests = [Request(**r) for r in data.get(key, [])]
        key = "findings"
        evidence.findings = [Finding(**f) for f in data.get(key, [])]
    except (TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"expected the entries written by --save-observations ({exc})", file=name,
                          key=key) from None
    return evidence
