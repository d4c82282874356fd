"""The certificate page is rendered from a Jinja2 template with autoescape: a hostile name in the
trail (a file called `<script>…`) must come out as text, never as markup."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from retention_core.audit import Head
from retention_core.certificate import Certificate, write_html
from retention_core.model import ErasureRequest

HOSTILE = '<script>alert("x")</script> & \'q\''


def _certificate(request: ErasureRequest | None) -> Certificate:
    cert = Certificate(run_id="r1" + HOSTILE, trail=Path("/t/" + HOSTILE), performed_by="op" + HOSTILE,
                       tool="t" + HOSTILE, started="s", finished=None, status="ok" + HOSTILE, as_of=None,
                       sources=["a" + HOSTILE], backends={"a" + HOSTILE: "fs"}, totals={"deleted": 1, HOSTILE: 1},
                       intents=2, last_line=Head(5, "abc"), head=None, trail_lines=9,
                       keyed={"from_line": 2, "key_id": HOSTILE, "hmac_checked": False}, issued="now")
    if request is not None:
        cert.request = request
        cert.runs = [{"run_id": HOSTILE, "by": "b", "records": 1}]
        cert.request_lines = [{"event": "erasure-requested", "seq": 1, "hash": HOSTILE}]
    rows = [{"run_id": HOSTILE, "source": HOSTILE, "location": "loc" + HOSTILE, "version": 'v"1', "action": "delete",
             "outcome": "failed", "error": HOSTILE, "time": None, "audit_seq": 4}]
    cert.records = lambda: iter(rows)  # type: ignore[method-assign]
    return cert


def test_hostile_names_are_escaped_on_both_kinds_of_certificate() -> None:
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    request = ErasureRequest(id="E1" + HOSTILE, subject="s" + HOSTILE, controller="c" + HOSTILE, received_at=day,
                             due_at=day, ticket=HOSTILE)
    for cert in (_certificate(None), _certificate(request)):
        out = io.StringIO()
        write_html(cert, out)
        page = out.getvalue()
        assert "<script>" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;q&#39;" in page
