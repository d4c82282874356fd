"""Evidence lookup (issue 17 #5) through the command line: `retention audit find` over the trail's
batch lines, and `explain` given an absolute path or an s3:// URI, asking only the source that can
hold it and saying, for a record storage no longer holds, when and by which run the trail shows
it deleted."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from retention_core.audit import AuditTrail, batch_entry
from retention_core.evidence import locate
from retention_core.model import Source
from tests.support import demo_copy, invoke, ok

KID = "umbrella-kid"  # a minor in the demo: every record of the kid is due


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A private copy of the fs demo, its limits raised so that an erasure may delete a tenant."""
    return demo_copy(tmp_path)


def enforce(policy: Path) -> str:
    return ok("run", "-c", policy).stdout.split()[2]


def found(policy: Path, *args: str | Path) -> list[dict[str, Any]]:
    return json.loads(ok("audit", "find", "-c", policy, *args, "--format", "json").stdout)


# -- audit find ---------------------------------------------------------------------------------
def test_was_this_file_deleted_when_and_by_which_run(demo: Path) -> None:
    run_id = enforce(demo)
    kid_chat = demo.parent / "data" / "transcripts" / KID / "chat-1.txt"
    assert not kid_chat.exists()

    out = ok("audit", "find", "-c", demo, "--location", f"{KID}/chat-1.txt").stdout.splitlines()
    (line,) = out
    assert "  deleted  " in line and f"transcripts:{KID}/chat-1.txt" in line and f"run {run_id}" in line
    assert f"subject {KID}" in line and "batch " in line and "audit seq " in line

    # The same answer from the absolute path: made relative to the root of the source holding it.
    (by_path,) = found(demo, "--location", kid_chat)
    assert by_path["source"] == "transcripts" and by_path["location"] == f"{KID}/chat-1.txt"
    assert by_path["outcome"] == "deleted" and by_path["run_id"] == run_id and by_path["batch"]
    assert datetime.fromisoformat(by_path["time"]) > datetime.now(timezone.utc) - timedelta(minutes=5)
    assert by_path["subject"] == KID

    every = found(demo, "--subject", KID)
    assert {(f["source"], f["location"]) for f in every} == {
        *(("recordings", f"tenants/{KID}/calls/call-2025-0{n}.wav") for n in (1, 2, 3)),
        *(("transcripts", f"{KID}/chat-{n}.txt") for n in (1, 2, 3)), ("mail", f"{KID}/inbox-1.eml")}
    assert {f["run_id"] for f in every} == {run_id}
    prefix = found(demo, "--location", f"{KID}/chat-*")
    assert {f["location"] for f in prefix} == {f"{KID}/chat-{n}.txt" for n in (1, 2, 3)}
    assert found(demo, "--source", "mail", "--subject", KID)[0]["location"] == f"{KID}/inbox-1.eml"


def test_run_and_since_filters(demo: Path) -> None:
    first = enforce(demo)
    second = enforce(demo)  # nothing left to delete
    assert found(demo, "--run", first) and found(demo, "--run", second) == []
    assert found(demo, "--since", "2999-01-01") == []
    assert len(found(demo, "--since", "2000-01-01")) == len(found(demo))
    nothing = ok("audit", "find", "-c", demo, "--run", second).stdout
    assert nothing == "nothing in the audit trail matches\n"


def test_an_intent_without_an_outcome_shows_as_intent_only(demo: Path) -> None:
    """A run that died after journalling its intent: the trail says the deletion was meant, not done."""
    enforce(demo)
    trail = AuditTrail(demo.parent / ".retention" / "audit.jsonl")
    entry = batch_entry("intent", "run-died", "transcripts", "delete",
                        [["acme/chat-1.txt", None, None, "acme", "chat_transcript", "test"]])
    trail.append([{**entry, "batch": "b-1"}])
    (left,) = found(demo, "--location", "acme/chat-1.txt")
    assert left["outcome"] == "intent-only" and left["run_id"] == "run-died"
    text = ok("audit", "find", "-c", demo, "--location", "acme/chat-1.txt").stdout
    assert "intent journalled, no outcome yet" in text


def test_csv_cells_are_neutralised(demo: Path) -> None:
    """A location or subject someone chose must not run as a formula when the CSV is opened."""
    folder = demo.parent
    with (folder / "subjects.csv").open("a") as fh:
        fh.write("=HYPERLINK(1),evil-ctl,,true\n")
    (folder / "data" / "transcripts" / "=HYPERLINK(1)").mkdir()
    (folder / "data" / "transcripts" / "=HYPERLINK(1)" / "chat-1.txt").write_text("x")
    enforce(demo)
    out = ok("audit", "find", "-c", demo, "--subject", "=HYPERLINK(1)", "--format", "csv").stdout
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["location"] == "'=HYPERLINK(1)/chat-1.txt" and row["subject"] == "'=HYPERLINK(1)"
    assert row["outcome"] == "deleted"


def test_an_earlier_trail_is_searched_too(demo: Path, tmp_path: Path) -> None:
    enforce(demo)
    trail = demo.parent / ".retention" / "audit.jsonl"
    kept = tmp_path / "audit-2025.jsonl"
    trail.rename(kept)  # a trail started anew (a new key); the old one kept as evidence
    AuditTrail(trail).append([{"event": "note"}])
    assert found(demo, "--location", f"{KID}/chat-1.txt") == []
    (old,) = found(demo, "--location", f"{KID}/chat-1.txt", "--trail", kept)
    assert old["trail"] == str(kept)


def test_bad_input_is_one_line_and_exit_2(demo: Path) -> None:
    no_trail = invoke("audit", "find", "-c", demo)
    assert no_trail.exit_code == 2 and "audit trail does not exist" in no_trail.stderr
    enforce(demo)
    outside = invoke("audit", "find", "-c", demo, "--location", "/etc/passwd")
    assert outside.exit_code == 2 and "--location: no source can hold '/etc/passwd'" in outside.stderr
    bad_date = invoke("audit", "find", "-c", demo, "--since", "yesterday")
    unknown = invoke("audit", "find", "-c", demo, "--source", "nope")
    for result in (outside, bad_date, unknown):
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and result.stdout == ""


# -- explain ----------------------------------------------------------------------------------------
@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the sources whose storage was listed."""
    from retention_fs.backend import FilesystemBackend

    names: list[str] = []
    original = FilesystemBackend.scan

    def scan(self: FilesystemBackend, source: Source) -> Any:
        names.append(source.name)
        return original(self, source)

    monkeypatch.setattr(FilesystemBackend, "scan", scan)
    yield names


def test_explain_takes_an_absolute_path_and_lists_only_its_source(demo: Path, scanned: list[str]) -> None:
    path = demo.parent / "data" / "transcripts" / "globex" / "chat-1.txt"
    out = ok("explain", "-c", demo, path).stdout
    assert out.splitlines()[0] == "globex/chat-1.txt — source transcripts (fs)"
    assert "HOLD" in out
    assert scanned == ["transcripts"]
    (as_json,) = json.loads(ok("explain", "-c", demo, path, "--format", "json").stdout)
    assert as_json["source"] == "transcripts" and as_json["location"] == "globex/chat-1.txt"

    # A relative location: only the fs sources that have something there are listed.
    scanned.clear()
    ok("explain", "-c", demo, "globex/chat-1.txt")
    assert scanned == ["transcripts"]


def test_explain_a_deleted_record_says_when_and_by_which_run(demo: Path, scanned: list[str]) -> None:
    run_id = enforce(demo)
    path = demo.parent / "data" / "transcripts" / KID / "chat-2.txt"
    scanned.clear()
    for location in (path, f"{KID}/chat-2.txt"):
        result = ok("explain", "-c", demo, location)
        first, *trail = result.stdout.splitlines()
        assert first.startswith(f"{location} — no record in ")
        assert "the audit trail shows it deleted on " in first and first.endswith(f"by run {run_id}")
        (line,) = trail
        assert "deleted" in line and f"transcripts:{KID}/chat-2.txt" in line
    assert scanned == []  # nothing at that path in any root: no listing needed
    (as_json,) = json.loads(ok("explain", "-c", demo, path, "--format", "json").stdout)
    assert as_json["record"] is None and as_json["deleted"] is True and as_json["deleted_by_run"] == run_id
    assert as_json["sources"] == ["transcripts"]


def test_explain_a_location_never_seen_is_still_an_error(demo: Path) -> None:
    enforce(demo)
    never = invoke("explain", "-c", demo, "nobody/chat-1.txt")
    assert never.exit_code == 2 and "the audit trail shows no deletion of it" in never.stderr
    outside = invoke("explain", "-c", demo, "/etc/passwd")
    assert outside.exit_code == 2 and "no source can hold '/etc/passwd'" in outside.stderr
    s3 = invoke("explain", "-c", demo, "s3://bucket/tenants/acme/calls/x.wav")
    assert s3.exit_code == 2 and "no source can hold 's3://bucket/tenants/acme/calls/x.wav'" in s3.stderr


def test_locate_asks_each_backend_which_location_an_address_is() -> None:
    """Backend.address maps an address people have (an s3:// URI, an absolute path) to the
    location a source lists; locate keeps the sources that can hold it."""

    class Prefixed:
        def __init__(self, scheme_prefix: str, strip: str) -> None:
            self.scheme_prefix, self.strip = scheme_prefix, strip

        def address(self, source: Source, given: str) -> str | None:
            return given[len(self.strip):] if given.startswith(self.scheme_prefix) else None

        def present(self, source: Source, location: str) -> None:
            return None

        def territory(self, source: Source) -> str:
            return self.scheme_prefix

    sources = [Source("calls", "s3"), Source("archive", "s3"), Source("files", "fs")]
    backends = {"calls": Prefixed("s3://media/tenants/", "s3://media/"),
                "archive": Prefixed("s3://media/archive/", "s3://media/"),
                "files": Prefixed("/srv/files/", "/srv/files/")}
    (place,) = locate("s3://media/tenants/acme/calls/1.wav", sources, lambda s: backends[s.name])
    assert (place.source.name, place.location) == ("calls", "tenants/acme/calls/1.wav")
    (place,) = locate("s3://media/archive/2020/x", sources, lambda s: backends[s.name])
    assert (place.source.name, place.location) == ("archive", "archive/2020/x")
    (place,) = locate("/srv/files/a/b.txt", sources, lambda s: backends[s.name])
    assert (place.source.name, place.location) == ("files", "a/b.txt")
    with pytest.raises(Exception, match="no source can hold"):
        locate("s3://other/tenants/x", sources, lambda s: backends[s.name])


def test_an_absolute_path_through_a_symlinked_directory(demo: Path, tmp_path: Path) -> None:
    """The fs root is resolved; a path given through a symlink to it still finds its source."""
    link = tmp_path / "link"
    os.symlink(demo.parent / "data" / "transcripts", link)
    out = ok("explain", "-c", demo, link / "acme" / "chat-1.txt").stdout
    assert out.splitlines()[0] == "acme/chat-1.txt — source transcripts (fs)"


def test_explain_an_s3_uri_asks_only_the_s3_source_holding_it(demo: Path, scanned: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3://bucket/key``: the S3 source whose bucket and prefix contain it is listed, no other
    (moto in-process, no network)."""
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    text = demo.read_text().replace("sources:\n", "sources:\n"
                                    "  - name: archive\n    backend: s3\n"
                                    "    options: {bucket: calls-archive, prefix: tenants}\n"
                                    "    match: 'tenants/(?P<subject>[^/]+)/calls/.+\\.wav'\n"
                                    "    category: voice_recording\n", 1)
    demo.write_text(text)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="calls-archive")
        s3.put_object(Bucket="calls-archive", Key="tenants/globex/calls/old.wav", Body=b"x")
        s3.put_object(Bucket="calls-archive", Key="other/globex.wav", Body=b"x")
        out = ok("explain", "-c", demo, "s3://calls-archive/tenants/globex/calls/old.wav").stdout
        assert out.splitlines()[0] == "tenants/globex/calls/old.wav — source archive (s3)"
        assert scanned == []  # no fs source was listed
        outside = invoke("explain", "-c", demo, "s3://calls-archive/other/globex.wav")
        assert outside.exit_code == 2 and "archive: aws s3://calls-archive/tenants/" in outside.stderr
