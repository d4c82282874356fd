"""Render findings as text (people), JSON (scripts), SARIF 2.1.0 (CI code scanning), HTML.

SARIF is what makes a CI system show a finding inline on the declarations file, so every
finding that concerns a declaration carries its file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from .model import Finding, Observation, Request, observation_to_dict
from .rules import RULES

FORMATS = ("text", "json", "sarif", "html")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
#: The key of ``partialFingerprints``: bump the version if what is hashed ever changes.
FINGERPRINT = "retentionCookieFinding/v1"
_NUMBER = re.compile(r"\d+")


@lru_cache(maxsize=1)
def project_url() -> str | None:
    """The project's URL from its installed metadata (``url`` / ``project_urls`` in setup.cfg).

    None when the metadata names none: SARIF's ``informationUri`` is optional, and a
    made-up placeholder would send readers to a page that does not exist.
    """
    try:
        from importlib.metadata import metadata

        meta = metadata("retention")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return None
    home = meta["Home-page"] if "Home-page" in meta else None
    if home and home.upper() != "UNKNOWN":
        return str(home)
    for entry in meta.get_all("Project-URL") or []:
        _, _, link = entry.partition(",")
        if link.strip():
            return link.strip()
    return None


def render(fmt: str, findings: Sequence[Finding], observations: Sequence[Observation],
           *, inputs: Sequence[str], version: str = "0", default_file: str | None = None,
           requests: Sequence[Request] = (), visits: Sequence[dict[str, Any]] = ()) -> str:
    """The report in *fmt* (one of FORMATS)."""
    if fmt == "json":
        return render_json(findings, observations, inputs=inputs, requests=requests, visits=visits)
    if fmt == "sarif":
        return render_sarif(findings, version=version, default_file=default_file, visits=visits)
    if fmt == "html":
        return render_html(findings, observations, inputs=inputs, requests=requests)
    return render_text(findings, observations, inputs=inputs, requests=requests)


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """Counts by severity, for the headline and the JSON summary."""
    counts = Counter(f.severity for f in findings)
    return {s: counts.get(s, 0) for s in ("error", "warning", "info")}


def render_text(findings: Sequence[Finding], observations: Sequence[Observation], *,
                inputs: Sequence[str], requests: Sequence[Request] = ()) -> str:
    """For people at a terminal or in a CI log."""
    lines = []
    for f in findings:
        lines.append(f"{f.severity.upper():7} {f.rule} {RULES[f.rule].name}: {f.subject}: {f.message}")
        if f.evidence:
            lines.append(f"        evidence: {f.evidence}")
        lines.append(f"        basis: {f.basis}")
        lines.append(f"        fix: {f.hint}")
    counts = summary(findings)
    third = sum(1 for r in requests if r.third_party)
    seen = f" and {len(requests)} request(s) ({third} third-party)" if requests else ""
    lines.append(f"{len(observations)} observation(s){seen} from {', '.join(inputs) or 'no input'}; "
                 f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding], observations: Sequence[Observation], *,
                inputs: Sequence[str], requests: Sequence[Request] = (),
                visits: Sequence[dict[str, Any]] = ()) -> str:
    """For scripts and cron: findings plus every observation and request they were drawn from."""
    data = {
        "summary": summary(findings),
        "inputs": list(inputs),
        "visits": list(visits),
        "findings": [f.as_dict() | {"rule_name": RULES[f.rule].name, "fingerprint": fingerprint(f)}
                     for f in findings],
        "observations": [observation_to_dict(o) for o in observations],
        "requests": [asdict(r) for r in requests],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_sarif(findings: Sequence[Finding], *, version: str = "0", default_file: str | None = None,
                 visits: Sequence[dict[str, Any]] = ()) -> str:
    """SARIF 2.1.0; a finding without a file of its own is placed on *default_file*
    (the declarations), because code scanning drops results that have no location."""
    rule_ids = list(RULES)
    rules = [{
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": f"{r.summary} Basis: {r.basis}."},
        "help": {"text": r.hint},
        "defaultConfiguration": {"level": _LEVEL[r.severity]},
    } | ({"helpUri": f"{project_url()}#{r.id.lower()}"} if project_url() else {}) for r in RULES.values()]
    results = []
    for f in findings:
        result: dict[str, Any] = {
            "ruleId": f.rule,
            "ruleIndex": rule_ids.index(f.rule),
            "level": _LEVEL[f.severity],
            "message": {"text": f"{f.subject}: {f.message}. Fix: {f.hint}"},
            "properties": {"evidence": f.evidence, "basis": f.basis, "subject": f.subject},
            "partialFingerprints": {FINGERPRINT: fingerprint(f)},
        }
        file = f.file or default_file
        if file:
            location: dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
            if f.line:
                location["region"] = {"startLine": f.line}
            result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "retention-cookies", "version": version, "rules": rules}
                     | ({"informationUri": project_url()} if project_url() else {})},
            "results": results,
        } | ({"properties": {"visits": list(visits)}} if visits else {})],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


def fingerprint(f: Finding) -> str:
    """Stable across runs: the rule, the subject, the file and the message with its numbers
    masked (a lifetime measured a second later must not make a new alert)."""
    text = "|".join((f.rule, f.subject, _NUMBER.sub("#", f.message), f.file or ""))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def render_html(findings: Sequence[Finding], observations: Sequence[Observation], *,
                inputs: Sequence[str], requests: Sequence[Request] = ()) -> str:
    """One self-contained page to attach to an audit or a ticket: the Jinja2 template
    ``templates/cookie_report.html`` with autoescape on, so a hostile cookie name, URL or
    site-controlled text can never become markup."""
    return _html_template().render(
        counts=summary(findings), inputs=list(inputs), findings=findings, observations=observations,
        requests=requests, rule_names={f.rule: RULES[f.rule].name for f in findings})


@lru_cache(maxsize=1)
def _html_template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("retention_cookies", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template("cookie_report.html")


def _uri(file: str) -> str:
    """Relative to the working directory (the repository in CI), so code scanning can place it."""
    path = Path(file)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri() if path.is_absolute() else path.as_posix()
