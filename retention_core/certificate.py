"""A certificate of deletion for one run, or for one erasure request, built from the audit trail alone.

The fields follow the sample "Certificate of Sanitization" of NIST SP 800-88 Rev. 1,
Appendix G (who performed it, what — each location and version —, method type and method,
tool and version, verification method, date, signatures), adapted honestly: what this tool
does is a *logical* deletion through each storage system's API, not the Clear, Purge or
Destroy of storage media that SP 800-88 defines. The certificate carries the hash of the
run's last audit line and of the trail's head, so anyone can later check it against the
trail with ``retention audit verify``. The trail is verified before anything is certified.

A run's certificate lists every record that run deleted, whoever's it was. A request's
certificate (:func:`build_for_request`) is the one to hand a controller: only the records
of the request's subject, from every run that touched them, and the request's own lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import IO, Any

import jinja2

from .audit import Head, Line, TrailKey, expand, records, verify, walk
from .errors import CertificateError, ConfigError
from .model import ErasureRequest, RunStatus

STANDARD = "NIST SP 800-88 Rev. 1, Appendix G (sample Certificate of Sanitization), adapted to logical deletion"

#: How each built-in backend deletes, in words a records manager can check.
METHODS = {
    "fs": "unlink(2) of each file through the operating system (the file system frees the blocks; "
          "their content is not overwritten)",
    "s3": "S3 DeleteObjects by version id for every version of each key (and orphaned delete markers); "
          "the provider reclaims the storage",
    "sql": "SQL DELETE (or, for anonymize, UPDATE) of each row in one short transaction per batch; "
           "the database reclaims the space on its own schedule",
    "memory": "removal from an in-process store (testing only)",
}
LOGICAL = ("Logical deletion through the storage system's API. This is not a media sanitization method "
           "(Clear, Purge or Destroy) in the sense of NIST SP 800-88: the storage system, its replicas, "
           "snapshots and backups may keep the data until their own retention ends.")
VERIFICATION = ("Per-record outcome reported by the storage API for each deletion request (deleted, "
                "already gone, refused, failed), journalled after the call in the hash-chained audit "
                "trail; the trail was verified intact when this certificate was produced. Storage was "
                "not re-read or sampled after deletion. Outcomes marked 'inferred' were not reported by "
                "storage: a run that crashed journalled its intent, and a later run found the record "
                "absent from a complete listing of the same storage (it may have been moved, not deleted).")

#: The certificate's name for a deletion recovery inferred from absence (see :data:`VERIFICATION`).
INFERRED = "deleted (inferred: absent after a crash)"


def certified_outcome(entry: Mapping[str, Any]) -> str:
    """The outcome as the certificate states it: a deletion settled by a later run's recovery
    (its line carries ``settled_by``) is inferred from absence, not reported by storage."""
    status = str(entry.get("outcome"))
    return INFERRED if status == "deleted" and entry.get("settled_by") else status


@dataclass
class Certificate:
    """The header of a certificate; :meth:`records` streams its outcomes from the trail.

    For a run, ``run_id`` is set and every outcome of that run is certified; for an erasure
    request, ``request`` is set and every outcome naming its subject, from any run, is.
    """

    run_id: str | None
    trail: Path
    performed_by: str
    tool: str
    started: str
    finished: str | None
    status: str
    as_of: str | None
    sources: list[str]
    backends: dict[str, str]
    totals: dict[str, int] = field(default_factory=dict)
    intents: int = 0
    run_end: Head | None = None
    last_line: Head | None = None
    head: Head | None = None
    trail_lines: int = 0
    #: Which lines carry an HMAC and whether the key checked them (None: no line is keyed).
    keyed: dict[str, Any] | None = None
    issued: str = ""
    request: ErasureRequest | None = None
    #: The runs whose outcomes are certified (a request's: every run that touched its subject).
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: The request's own lines (erasure-requested, erasure-withdrawn): seq, hash, event, time.
    request_lines: list[dict[str, Any]] = field(default_factory=list)

    def certifies(self, entry: dict[str, Any]) -> bool:
        """Whether a per-record outcome entry belongs on this certificate."""
        if entry.get("event") != "outcome":
            return False
        if self.request is not None:
            return entry.get("subject") == self.request.subject
        return entry.get("run_id") == self.run_id

    @property
    def title(self) -> str:
        if self.request is not None:
            return f"erasure request {self.request.id}"
        return f"run {self.run_id}"

    def records(self) -> Iterator[dict[str, Any]]:
        """Every outcome entry certified, in trail order."""
        for entry in records(self.trail):
            if self.certifies(entry):
                yield {"run_id": entry.get("run_id"), "source": entry.get("source"), "location": entry.get("location"),
                       **({"location_hex": entry["location_hex"]} if entry.get("location_hex") else {}),
                       "version": entry.get("version"), "subject": entry.get("subject"),
                       "category": entry.get("category"), "action": entry.get("action"),
                       "outcome": certified_outcome(entry), "error": entry.get("error"), "time": entry.get("time"),
                       "audit_seq": entry.get("seq"), "audit_hash": entry.get("hash")}

    def header(self) -> dict[str, Any]:
        methods = {s: METHODS.get(b, f"the {b!r} backend's delete operation") for s, b in self.backends.items()}
        header: dict[str, Any] = {
            "title": "Certificate of deletion",
            "standard": STANDARD,
            "run_id": self.run_id,
            "person_performing": {"name": self.performed_by,
                                  "role": "operator of the retention run" + ("s" if self.request else ""),
                                  "title": None, "organization": None, "location": None, "phone": None},
            "media": {"sources": [{"source": s, "backend": self.backends.get(s, "unknown")} for s in self.sources],
                      "media_type": "records in storage systems reached through their APIs (not physical media)",
                      "classification": None, "data_backed_up": "unknown to this tool"},
            "sanitization": {"method_type": "logical deletion (not Clear, Purge or Destroy)",
                             "method_used": LOGICAL, "method_details": methods,
                             "tool": self.tool, "verification_method": VERIFICATION,
                             "post_sanitization_classification": None,
                             "notes": (f"{'Request' if self.request else 'Run'} status: {self.status}. "
                                       f"{self.intents} deletion intents and "
                                       f"{sum(self.totals.values())} outcomes journalled"
                                       ". Records refused or failed were NOT deleted.")},
            "date": {"started": self.started, "finished": self.finished, "evaluated_as_of": self.as_of},
            "totals": self.totals,
            "audit": {"trail": str(self.trail), "verified": True, "lines": self.trail_lines,
                      "run_end": {"seq": self.run_end.seq, "hash": self.run_end.hash} if self.run_end else None,
                      "last_line": {"seq": self.last_line.seq, "hash": self.last_line.hash} if self.last_line else None,
                      "head": {"seq": self.head.seq, "hash": self.head.hash} if self.head else None,
                      "keyed": self.keyed,
                      "check": "retention audit verify TRAIL; the line with last_line.seq must carry last_line.hash"},
            "signatures": {"performed_by": {"name": self.performed_by, "signature": None, "date": None},
                           "validated_by": {"name": None, "title": None, "signature": None, "date": None}},
            "issued": self.issued,
        }
        if self.request is not None:
            header["request"] = _request_json(self.request)
            header["runs"] = self.runs
            header["audit"]["request_lines"] = self.request_lines
            header["audit"]["check"] = ("retention audit verify TRAIL; each line listed under request_lines and each "
                                        "record's audit_seq must carry the hash given")
        return header


def build(trail: Path, run_id: str, *, expect: Head | None = None, actor: str | None = None,
          backends: dict[str, str] | None = None, run_status: str | None = None,
          key: TrailKey | None = None) -> Certificate:
    """Verify *trail* and gather run *run_id*'s evidence; raise if it cannot be certified.

    *run_status* is the state store's word on the run: a run without a ``run-end`` line is
    certified only once a later run has settled it as ``crashed`` (its journalled intents
    then all have outcomes); a run still ``running`` is not. With *key* the HMACs of a keyed
    trail are checked too, and the certificate says whether they were.
    """
    result = verify(trail, expect=expect, key=key)
    if not result.ok:
        raise CertificateError(f"{trail}: line {result.line}: {result.problem}; no certificate issued "
                               "for a trail that fails verification")
    cert: Certificate | None = None
    for line in walk(trail):  # through segments; expand() reads evidence files through
        entry, top = line.entry, line.top
        if entry.get("run_id") != run_id:
            continue
        event = entry.get("event")
        if event == "run-start":
            cert = Certificate(
                run_id=run_id, trail=trail, performed_by=actor or str(entry.get("by") or "unknown (not recorded)"),
                tool=str(entry.get("tool") or "retention (version not recorded)"), started=str(entry.get("time")),
                finished=None, status="unfinished", as_of=entry.get("as_of"), sources=list(entry.get("sources") or []),
                backends=dict(backends or {}))
        elif cert is None:
            continue
        cert.last_line = Head(int(top["seq"]), str(top["hash"]))
        if event == "intent":
            cert.intents += sum(1 for _ in expand(entry, line.base))
        elif event == "outcome":
            for each in expand(entry, line.base):
                status = certified_outcome(each)
                cert.totals[status] = cert.totals.get(status, 0) + 1
        elif event == "run-end":
            cert.finished = str(entry.get("time"))
            cert.status = str(entry.get("status"))
            cert.run_end = Head(int(entry["seq"]), str(entry["hash"]))
    if cert is None:
        raise ConfigError(f"no run {run_id!r} in the audit trail {trail} (dry runs are not journalled)",
                          key="--run")
    if cert.run_end is None:
        if run_status != RunStatus.CRASHED:
            raise CertificateError(f"run {run_id!r} has no run-end line in {trail}: it is still running, or "
                                   "crashed and no later run has settled it yet; no certificate issued")
        cert.status = "crashed (its pending deletions were settled by a later run's scan)"
    cert.head = result.head
    cert.trail_lines = result.lines
    if result.keyed_from is not None:
        cert.keyed = {"from_line": result.keyed_from, "key_id": result.key_id, "hmac_checked": result.hmac_checked}
    cert.issued = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return cert


def build_for_request(trail: Path, request: ErasureRequest, *, expect: Head | None = None,
                      backends: dict[str, str] | None = None, key: TrailKey | None = None,
                      now: datetime | None = None) -> Certificate:
    """Verify *trail* and gather the evidence for *request*: every outcome naming its subject,
    from every run that journalled one, and the request's own lines.

    Only the subject's records are listed (a run's certificate lists every tenant's). A request
    not yet done is certified as it stands: the status says so, and what is listed is what was
    deleted so far. The request's own lines are listed when this trail has them (a request
    stored before the trail was started anew has none here).
    """
    result = verify(trail, expect=expect, key=key)
    if not result.ok:
        raise CertificateError(f"{trail}: line {result.line}: {result.problem}; no certificate issued "
                               "for a trail that fails verification")
    when = now or datetime.now(timezone.utc)
    cert = Certificate(run_id=None, trail=trail, performed_by="", tool="", started="", finished=None,
                       status=request.status(when), as_of=None, sources=[], backends=dict(backends or {}),
                       request=request)
    starts: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for line in walk(trail):  # through segments; expand() reads evidence files through
        entry = line.entry
        event = entry.get("event")
        if event == "run-start":
            starts[str(entry.get("run_id"))] = entry
        elif event in ("erasure-requested", "erasure-withdrawn") and entry.get("request") == request.id:
            cert.request_lines.append({"event": event, "seq": entry.get("seq"), "hash": entry.get("hash"),
                                       "time": entry.get("time")})
        elif event in ("intent", "outcome"):
            _count(cert, line, starts, runs)
    cert.runs = [{**{k: v for k, v in r.items() if k not in ("sources", "last_seq", "last_hash")},
                  "sources": sorted(r["sources"]), "last_line": {"seq": r["last_seq"], "hash": r["last_hash"]}}
                 for r in runs.values()]
    cert.performed_by = ", ".join(sorted({str(r["by"]) for r in cert.runs})) or "nobody (no run touched it yet)"
    tools = sorted({str(r["tool"]) for r in cert.runs})
    cert.tool = ", ".join(tools) or "retention"
    cert.sources = sorted({s for r in cert.runs for s in r["sources"]})
    cert.started = str(cert.runs[0]["started"]) if cert.runs else request.received_at.isoformat()
    cert.finished = request.done_at.isoformat() if request.done_at else None
    cert.head, cert.trail_lines = result.head, result.lines
    if cert.runs:
        last = max((r["last_line"] for r in cert.runs), key=lambda line: int(line["seq"]))
        cert.last_line = Head(int(last["seq"]), str(last["hash"]))
    if result.keyed_from is not None:
        cert.keyed = {"from_line": result.keyed_from, "key_id": result.key_id, "hmac_checked": result.hmac_checked}
    cert.issued = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return cert


def _count(cert: Certificate, line: Line, starts: dict[str, dict[str, Any]],
           runs: dict[str, dict[str, Any]]) -> None:
    """Count a batch line's rows of the request's subject, and note the run that wrote them."""
    entry = line.entry
    subject = cert.request.subject if cert.request is not None else None
    mine = [each for each in expand(entry, line.base) if each.get("subject") == subject]
    if not mine:
        return
    run_id = str(entry.get("run_id"))
    start = starts.get(run_id, {})
    run = runs.setdefault(run_id, {"run_id": run_id, "started": start.get("time"),
                                   "by": start.get("by") or "unknown (not recorded)",
                                   "tool": start.get("tool") or "retention (version not recorded)",
                                   "sources": set(), "records": 0})
    run["sources"].add(entry.get("source"))
    run["last_seq"], run["last_hash"] = line.top.get("seq"), line.top.get("hash")
    if entry.get("event") == "intent":
        cert.intents += len(mine)
        return
    run["records"] += len(mine)
    for each in mine:
        status = certified_outcome(each)
        cert.totals[status] = cert.totals.get(status, 0) + 1


def _request_json(r: ErasureRequest) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": r.id, "subject": r.subject, "controller": r.controller, "ticket": r.ticket,
            "received_at": iso(r.received_at), "due_at": iso(r.due_at), "done_at": iso(r.done_at),
            "done_run": r.done_run, "held_remaining": r.held_remaining, "withdrawn_at": iso(r.withdrawn_at),
            "withdrawn_by": r.withdrawn_by, "withdraw_reason": r.withdraw_reason}


def write_json(cert: Certificate, out: IO[str]) -> None:
    """The certificate as JSON; records are streamed from the trail."""
    head = json.dumps(cert.header(), indent=1, ensure_ascii=False)
    out.write(head[:-2] + ',\n "records": [')
    for n, record in enumerate(cert.records()):
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False))
    out.write("\n ]\n}\n")


def _keyed_text(keyed: dict[str, Any] | None) -> str:
    if keyed is None:
        return "no line is keyed"
    return (f"lines {keyed['from_line']} on, key id {keyed['key_id']}: "
            + ("HMACs checked with the key" if keyed["hmac_checked"] else "HMACs NOT checked (no key given)"))


def write_html(cert: Certificate, out: IO[str]) -> None:
    """The certificate as a printable, self-contained HTML page with signature lines.

    The page is the Jinja2 template ``templates/certificate.html`` with autoescape on; records
    are streamed from the trail into it, never held in memory all at once.
    """
    h = cert.header()
    s = h["sanitization"]
    rows = [
        ("Person performing", cert.performed_by), ("Tool used (version)", cert.tool),
        ("Date started", cert.started), ("Date finished", cert.finished or "—"),
        *_request_rows(cert),
        ("Evaluated as of", cert.as_of or "—"), ("Request status" if cert.request else "Run status", cert.status),
        ("Media / sources", ", ".join(f"{x['source']} ({x['backend']})" for x in h["media"]["sources"])),
        ("Method used", "; ".join(f"{k}: {v}" for k, v in s["method_details"].items()) or "—"),
        ("Verification method", VERIFICATION),
        ("Outcomes", ", ".join(f"{k} {v}" for k, v in sorted(cert.totals.items())) or "none"),
        ("Notes", s["notes"]),
        ("Audit trail", f"{cert.trail} — verified intact, {cert.trail_lines} lines"),
        ("Keyed chain (HMAC-SHA-256)", _keyed_text(cert.keyed)),
        ("Last audit line certified" if cert.request else "Run's last audit line",
         f"seq {cert.last_line.seq if cert.last_line else '—'}, SHA-256 "
         f"{cert.last_line.hash if cert.last_line else '—'}"),
        ("Trail head when issued", f"seq {cert.head.seq if cert.head else '—'}, SHA-256 "
                                   f"{cert.head.hash if cert.head else '—'}"),
        ("Issued", cert.issued),
    ]
    page = _template().generate(
        title=cert.title, heading=cert.title[0].upper() + cert.title[1:], standard=STANDARD, logical=LOGICAL,
        rows=rows, performed_by=cert.performed_by, per_request=cert.request is not None,
        records=(_record_row(r) for r in cert.records()))
    out.writelines(page)
    out.write("\n")


def _record_row(r: dict[str, Any]) -> dict[str, Any]:
    """One certified outcome as the page's records table shows it."""
    version = f" ({r['version']})" if r["version"] else ""
    return {**r, "location": f"{r['location']}{version}",
            "outcome_text": str(r["outcome"]) + (f": {r['error']}" if r["error"] else "")}


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("retention_core", "templates"), autoescape=True,
                             finalize=_finalize, undefined=jinja2.StrictUndefined)
    return env.get_template("certificate.html")


def _finalize(value: object) -> object:
    """A missing value prints as a dash, as the JSON certificate's null reads (then autoescaped)."""
    return "—" if value is None else value


def _request_rows(cert: Certificate) -> list[tuple[str, object]]:
    """The request a request's certificate is for, and the runs that carried it out."""
    r = cert.request
    if r is None:
        return []
    return [("Erasure request", f"{r.id} (ticket {r.ticket or '—'}) for subject {r.subject}, from controller "
                                f"{r.controller}"),
            ("Received / due", f"{r.received_at:%Y-%m-%d} / {r.due_at:%Y-%m-%d}"),
            ("Runs", "; ".join(f"{x['run_id']} by {x['by']}: {x['records']} records" for x in cert.runs) or "none"),
            ("Request's audit lines", "; ".join(f"{x['event']} seq {x['seq']}, SHA-256 {x['hash']}"
                                                for x in cert.request_lines) or "none in this trail")]


__all__ = ["Certificate", "CertificateError", "LOGICAL", "METHODS", "build", "build_for_request", "write_html",
           "write_json"]
