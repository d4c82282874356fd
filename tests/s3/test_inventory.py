"""S3 Inventory as the scan (issue 19), on a moto server with reports written in AWS's layout.

The inventory scan must give exactly the records a live listing gives (so the delete guard
works unchanged), in all three formats, on versioned and unversioned buckets; an object
changed since the report is ``changed``, an Object Lock refuses as after a live listing; a
report too old, incomplete or unreadable is refused or reported in one line, never a
traceback and never a deletion it was not sure of; a dry run makes no LIST of the source.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import retention_s3
import retention_s3.backend
from retention_core import ConfigError, Options, Partition, Problem, Record, Source

from .conftest import all_versions, make_bucket
from .inventories import FORMATS, listed, rewrite_manifest, write_inventory

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.moto_server

CATEGORIES = {"voice_recording": {"retain": "90d", "after": "service_end"}}
MATCH = r"tenants/(?P<subject>[^/]+)/calls/.+"
SUBJECTS = [{"subject_id": "acme", "controller": "ctl", "service_ended_at": "2020-01-01"},
            {"subject_id": "dave", "controller": "ctl", "service_ended_at": ""}]
NO_LIMIT = {"max_fraction": 1.0}  # these runs delete most of the bucket on purpose
#: Keys a CSV report URL-encodes: spaces, "+", "%", unicode, "~", "*", "//".
ODD_KEYS = ["tenants/acme/calls/a b+c%20d.wav", "tenants/acme/calls/ü/é 漢字.wav", "tenants/acme/calls/x~y*z//w.wav"]
PLAIN_KEYS = [f"tenants/acme/calls/{i}.wav" for i in range(4)] + ["tenants/dave/calls/keep.wav",
                                                                   "tenants-archive/acme/calls/old.wav"]
NOW = datetime.now(timezone.utc)


@pytest.fixture
def retention_plugin() -> Any:
    return retention_s3


def seed(s3: Any, *, versioned: bool) -> str:
    bucket = make_bucket(s3, versioned=versioned)
    for key in PLAIN_KEYS + ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"audio")
    if versioned:
        s3.put_object(Bucket=bucket, Key=PLAIN_KEYS[0], Body=b"second take")  # an older version below
        s3.delete_object(Bucket=bucket, Key=PLAIN_KEYS[1])  # a delete marker on top
    return bucket


def report(s3: Any, bucket: str, fmt: str, *, versioned: bool, when: datetime = NOW, files: int = 2,
           **kw: Any) -> tuple[str, str]:
    """Write an inventory of *bucket* as it is now; return (destination bucket, manifest key)."""
    dest = make_bucket(s3)
    key = write_inventory(s3, dest, "inv", bucket, listed(s3, bucket, versions=versioned), fmt, when, files, **kw)
    return dest, key


def inventory_options(dest: str, **extra: Any) -> dict[str, Any]:
    return {"bucket": dest, "prefix": "inv", "config_id": "daily", **extra}


def backend_for(bucket: str, endpoint: str, **options: Any) -> retention_s3.backend.S3Backend:
    return retention_s3.backend.S3Backend(Options({"bucket": bucket, "endpoint_url": endpoint, "prefix": "tenants",
                                                   **options}))


def scanned(backend: retention_s3.backend.S3Backend, source: Source) -> list[Record | Problem]:
    return sorted(backend.scan(source), key=repr)


def source_entry(bucket: str, endpoint: str, **options: Any) -> dict[str, Any]:
    return {"name": "recordings", "backend": "s3", "match": MATCH, "category": "voice_recording",
            "options": {"bucket": bucket, "prefix": "tenants", "endpoint_url": endpoint, **options}}


def outcomes(path: Path) -> dict[tuple[str, str | None], str | None]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {(i["location"], i["version"]): i["outcome"] for i in data["items"]}


# -- the same records as a live listing ------------------------------------------------------------


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_inventory_scan_gives_the_live_listings_records(s3: Any, moto_endpoint: str, fmt: str,
                                                        versioned: bool) -> None:
    bucket = seed(s3, versioned=versioned)
    dest, _ = report(s3, bucket, fmt, versioned=versioned)
    src = Source("recordings", "s3")
    with backend_for(bucket, moto_endpoint) as live:
        expected = scanned(live, src)
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as inv:
        got = scanned(inv, src)
    assert got == expected
    assert {r.location for r in got if isinstance(r, Record)} >= set(ODD_KEYS), "URL-encoded keys decoded exactly"
    assert len(got) == (len(PLAIN_KEYS) - 1 + len(ODD_KEYS) + (1 if versioned else 0))  # the marker is no record


def test_partitions_are_the_data_files_and_together_the_whole_scan(s3: Any, moto_endpoint: str) -> None:
    bucket = seed(s3, versioned=True)
    dest, manifest_key = report(s3, bucket, "Parquet", versioned=True, files=3)
    src = Source("recordings", "s3")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        whole = scanned(backend, src)
        parts = backend.partitions(src)
        assert len(parts) == 3 and all(p.label.startswith("inventory inv/") for p in parts)
        pieces = [r for p in parts for r in backend.scan_partition(src, p)]
    assert Counter(map(repr, pieces)) == Counter(map(repr, whole)), "none missing, none twice"
    # A partition names its report: a worker reads that one even after a newer report came out.
    assert all(json.loads(p.token)["manifest"] == f"s3://{dest}/{manifest_key}" for p in parts)
    write_inventory(s3, dest, "inv", bucket, [], "Parquet", NOW + timedelta(minutes=5), files=1, versions=True)
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as fresh:
        assert fresh.manifest().key != manifest_key and list(fresh.scan(src)) == []
        again = [r for p in parts for r in fresh.scan_partition(src, p)]
        assert Counter(map(repr, again)) == Counter(map(repr, whole))
        assert list(fresh.scan_partition(src, Partition(src.name, "", "the whole source"))) == []


# -- enforcing over an inventory --------------------------------------------------------------------


def test_changed_since_the_inventory_is_changed_never_deleted(retention_cli: Any, policy_builder: Any, s3: Any,
                                                               moto_endpoint: str, tmp_path: Path) -> None:
    bucket = seed(s3, versioned=False)
    dest, _ = report(s3, bucket, "CSV", versioned=False)
    s3.put_object(Bucket=bucket, Key=PLAIN_KEYS[0], Body=b"rewritten after the inventory")
    s3.delete_object(Bucket=bucket, Key=PLAIN_KEYS[1])
    s3.put_object(Bucket=bucket, Key="tenants/acme/calls/new.wav", Body=b"after the inventory")
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    result = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert result.exit_code == 0, result.output
    assert f"scanned from the S3 Inventory of {NOW:%Y-%m-%d %H:%M} UTC" in result.output
    got = outcomes(tmp_path / "run.json")
    assert got[(PLAIN_KEYS[0], None)] == "changed"
    assert got[(PLAIN_KEYS[1], None)] == "already_gone"
    assert ("tenants/acme/calls/new.wav", None) not in got, "newer than the inventory: not seen"
    left = {k for k, _, _ in all_versions(s3, bucket)}
    assert left == {PLAIN_KEYS[0], "tenants/acme/calls/new.wav", "tenants/dave/calls/keep.wav",
                    "tenants-archive/acme/calls/old.wav"}


def test_object_lock_refuses_as_after_a_live_listing(retention_cli: Any, policy_builder: Any, s3: Any,
                                                     moto_endpoint: str, tmp_path: Path) -> None:
    bucket = make_bucket(s3, lock=True)
    held = s3.put_object(Bucket=bucket, Key="tenants/acme/calls/held.wav", Body=b"a")["VersionId"]
    free = s3.put_object(Bucket=bucket, Key="tenants/acme/calls/free.wav", Body=b"b")["VersionId"]
    s3.put_object_legal_hold(Bucket=bucket, Key="tenants/acme/calls/held.wav", VersionId=held,
                             LegalHold={"Status": "ON"})
    entries = listed(s3, bucket, versions=True)
    for e in entries:
        e["ObjectLockLegalHoldStatus"] = "ON" if e["VersionId"] == held else "OFF"
    dest = make_bucket(s3)
    write_inventory(s3, dest, "inv", bucket, entries, "ORC", NOW)
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    result = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert result.exit_code == 0, result.output
    assert outcomes(tmp_path / "run.json") == {("tenants/acme/calls/held.wav", held): "refused",
                                               ("tenants/acme/calls/free.wav", free): "deleted"}


class Requests:
    """Every S3 operation a backend's client sends, counted by (operation, bucket)."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.seen[(model.name, params.get("Bucket", ""))] += 1

    def lists(self, bucket: str | None = None) -> int:
        return sum(n for (op, b), n in self.seen.items() if op.startswith("List") and bucket in (None, b))


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[Requests]:
    counter = Requests()
    real = retention_s3.backend.make_client

    def counted(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register("provide-client-params.s3", counter)
        return client

    monkeypatch.setattr(retention_s3.backend, "make_client", counted)
    yield counter


def test_a_dry_run_over_an_inventory_makes_no_list_request(retention_cli: Any, policy_builder: Any, s3: Any,
                                                           moto_endpoint: str, requests: Requests) -> None:
    bucket = seed(s3, versioned=True)
    dest, manifest_key = report(s3, bucket, "CSV", versioned=True)
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    dry = retention_cli("run", "-c", policy, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output.lower() or "delete" in dry.output
    assert requests.lists(bucket) == 0, requests.seen
    assert requests.lists(dest) == 1, "one delimited listing of the report folders, whatever the bucket holds"

    requests.seen.clear()
    by_uri = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT, sources=[
        source_entry(bucket, moto_endpoint, inventory={"manifest": f"s3://{dest}/{manifest_key}"})])
    dry = retention_cli("run", "-c", by_uri, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert requests.lists() == 0, requests.seen
    assert requests.seen[("GetObject", dest)] == 4  # manifest.json, manifest.checksum, two data files


# -- refusing what cannot be trusted ----------------------------------------------------------------


def test_an_inventory_older_than_max_age_is_refused_in_one_line(retention_cli: Any, policy_builder: Any, s3: Any,
                                                                moto_endpoint: str) -> None:
    bucket = seed(s3, versioned=False)
    old = NOW - timedelta(days=9)
    dest, manifest_key = report(s3, bucket, "Parquet", versioned=False, when=old)
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    for args in (("--dry-run",), ()):
        result = retention_cli("run", "-c", policy, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        [line] = [ln for ln in result.output.splitlines() if manifest_key in ln]
        assert "older than max_age 8d" in line and "sources[0].options.inventory" in line
    assert len(all_versions(s3, bucket)) == len(PLAIN_KEYS + ODD_KEYS), "nothing deleted"
    lenient = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT, sources=[
        source_entry(bucket, moto_endpoint, inventory=inventory_options(dest, max_age="10d"))])
    assert retention_cli("run", "-c", lenient, "--dry-run").exit_code == 0


def test_a_bad_checksum_skips_to_the_newest_complete_report(s3: Any, moto_endpoint: str) -> None:
    bucket = seed(s3, versioned=False)
    dest = make_bucket(s3)
    entries = [e for e in listed(s3, bucket, versions=False) if e["Key"].startswith("tenants/")]
    good = write_inventory(s3, dest, "inv", bucket, entries[:2], "CSV", NOW - timedelta(days=1))
    bad = write_inventory(s3, dest, "inv", bucket, entries, "CSV", NOW, checksum="0" * 32)
    half = write_inventory(s3, dest, "inv", bucket, entries, "CSV", NOW + timedelta(minutes=5))
    s3.delete_object(Bucket=dest, Key=half.replace("manifest.json", "manifest.checksum"))  # still being written
    src = Source("recordings", "s3")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        warnings = backend.warnings(src)
        assert backend.manifest().key == good
        assert len([r for r in backend.scan(src) if isinstance(r, Record)]) == 2
    assert any(bad in w and "does not match manifest.checksum" in w for w in warnings), warnings
    assert any(half.replace("manifest.json", "manifest.checksum") in w and "missing" in w for w in warnings)


def test_no_complete_report_is_one_config_error(s3: Any, moto_endpoint: str) -> None:
    bucket = seed(s3, versioned=False)
    dest, key = report(s3, bucket, "CSV", versioned=False, checksum="not an md5")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        with pytest.raises(ConfigError, match="no complete inventory report") as err:
            list(backend.scan(Source("recordings", "s3")))
    assert "\n" not in str(err.value) and key in str(err.value)
    with backend_for(bucket, moto_endpoint, inventory={"manifest": f"s3://{dest}/inv/nope/manifest.json"}) as b:
        with pytest.raises(ConfigError, match=r"s3://.*/inv/nope/manifest.json: missing"):
            b.warnings(Source("recordings", "s3"))


def test_an_unreadable_data_file_is_a_problem_and_nothing_of_it_is_deleted(
        retention_cli: Any, policy_builder: Any, s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    bucket = seed(s3, versioned=False)
    dest, key = report(s3, bucket, "Parquet", versioned=False)
    files = json.loads(s3.get_object(Bucket=dest, Key=key)["Body"].read())["files"]
    s3.put_object(Bucket=dest, Key=files[0]["key"], Body=b"PAR1 not parquet at all")  # MD5 no longer matches
    src = Source("recordings", "s3")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        got = list(backend.scan(src))
        parts = backend.partitions(src)
        second = [r for r in backend.scan_partition(src, parts[1]) if isinstance(r, Record)]
    [problem] = [p for p in got if isinstance(p, Problem)]
    assert problem.location == f"s3://{dest}/{files[0]['key']}" and "does not match the manifest" in problem.reason
    assert sorted(r.location for r in got if isinstance(r, Record)) == sorted(r.location for r in second)

    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    result = retention_cli("run", "-c", policy, "--report", tmp_path / "run.json")
    assert "Traceback" not in result.output
    assert "listing incomplete" in result.output and files[0]["key"] in result.output
    deleted = {k for (k, _), o in outcomes(tmp_path / "run.json").items() if o == "deleted"}
    assert deleted <= {r.location for r in second}, "only rows of the file that was read"


def test_a_file_that_breaks_midway_yields_none_of_its_rows(s3: Any, moto_endpoint: str) -> None:
    """The MD5 matches (AWS wrote it so) but a row has too few columns: nothing of the file goes out."""
    import gzip
    import hashlib

    bucket = seed(s3, versioned=False)
    dest, key = report(s3, bucket, "CSV", versioned=False, files=1)
    manifest = json.loads(s3.get_object(Bucket=dest, Key=key)["Body"].read())
    body = gzip.decompress(s3.get_object(Bucket=dest, Key=manifest["files"][0]["key"])["Body"].read())
    broken = gzip.compress(body + b'"' + bucket.encode() + b'","tenants/acme/calls/short.wav"\n')
    s3.put_object(Bucket=dest, Key=manifest["files"][0]["key"], Body=broken)
    manifest["files"][0].update(size=len(broken), MD5checksum=hashlib.md5(broken).hexdigest())
    text = json.dumps(manifest).encode()
    s3.put_object(Bucket=dest, Key=key, Body=text)
    s3.put_object(Bucket=dest, Key=key.replace(".json", ".checksum"), Body=hashlib.md5(text).hexdigest().encode())
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        got = list(backend.scan(Source("recordings", "s3")))
    assert len(got) == 1 and isinstance(got[0], Problem) and "cannot be read as CSV" in got[0].reason


@pytest.mark.parametrize(("case", "message"), [
    ("huge-timestamp", "creationTimestamp '99999999999999999999' is not a time"),
    ("column-twice", "fileSchema names the column 'key' twice"),
    ("deep-json", "JSON nested too deeply"),
    ("future", "is dated after now"),
])
def test_a_manifest_that_cannot_be_right_stops_the_run_in_one_line(retention_cli: Any, policy_builder: Any, s3: Any,
                                                                   moto_endpoint: str, case: str,
                                                                   message: str) -> None:
    """F03/F10: OSError, KeyError, RecursionError were internal errors; a report dated an hour ahead
    was accepted (and would pass for evidence about the next hour: listed_at)."""
    bucket = seed(s3, versioned=False)
    dest, key = report(s3, bucket, "CSV", versioned=False, when=NOW + timedelta(hours=1) if case == "future" else NOW)
    if case == "huge-timestamp":
        rewrite_manifest(s3, dest, key, lambda m: m.update(creationTimestamp="9" * 20))
    elif case == "column-twice":
        rewrite_manifest(s3, dest, key, lambda m: m.update(fileSchema=m["fileSchema"].replace("Key,", "Key, Key,")))
    elif case == "deep-json":
        rewrite_manifest(s3, dest, key, b"[" * 100_000 + b"]" * 100_000)
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    for args in (("--dry-run",), ()):
        result = retention_cli("run", "-c", policy, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "internal error" not in result.output
        [line] = [ln for ln in result.output.splitlines() if key in ln and "error:" in ln]
        assert message in line and "sources[0].options.inventory" in line, line
    assert len(all_versions(s3, bucket)) == len(PLAIN_KEYS + ODD_KEYS), "nothing deleted"


def test_a_row_value_that_cannot_be_right_is_a_problem_naming_column_and_file(s3: Any, moto_endpoint: str) -> None:
    """F03: a Size of '1e400' was reported as a LastModified that cannot be read as a date."""
    bucket = seed(s3, versioned=False)
    entries = listed(s3, bucket, versions=False)
    next(e for e in entries if e["Key"] == PLAIN_KEYS[0])["Size"] = "1e400"
    dest = make_bucket(s3)
    key = write_inventory(s3, dest, "inv", bucket, entries, "CSV", NOW, files=1)
    data = json.loads(s3.get_object(Bucket=dest, Key=key)["Body"].read())["files"][0]["key"]
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        got = list(backend.scan(Source("recordings", "s3")))
    [problem] = [p for p in got if isinstance(p, Problem)]
    assert problem.location == PLAIN_KEYS[0]
    assert problem.reason == f"inventory Size '1e400' is not a size in bytes (s3://{dest}/{data})"
    assert len([r for r in got if isinstance(r, Record)]) == len(PLAIN_KEYS + ODD_KEYS) - 2  # and not the archive


@pytest.mark.parametrize(("case", "message"), [
    ("no-etag", "no e_tag column in fileSchema"),
    ("current-only", "lists current versions only"),
    ("unknown-format", "unknown fileFormat 'JSON'"),
    ("other-bucket", "an inventory of bucket"),
])
def test_a_report_retention_cannot_use_is_one_config_error(s3: Any, moto_endpoint: str, case: str,
                                                           message: str) -> None:
    import hashlib

    bucket = seed(s3, versioned=True)
    kw: dict[str, Any] = {"omit": ["ETag"]} if case == "no-etag" else {}
    dest, key = report(s3, bucket, "CSV", versioned=case != "current-only", **kw)
    if case in ("unknown-format", "other-bucket"):
        manifest = json.loads(s3.get_object(Bucket=dest, Key=key)["Body"].read())
        if case == "unknown-format":
            manifest["fileFormat"] = "JSON"
        else:
            manifest["sourceBucket"] = "someone-else"
        text = json.dumps(manifest).encode()
        s3.put_object(Bucket=dest, Key=key, Body=text)
        s3.put_object(Bucket=dest, Key=key.replace(".json", ".checksum"),
                      Body=hashlib.md5(text).hexdigest().encode())
    with backend_for(bucket, moto_endpoint, inventory={"manifest": f"s3://{dest}/{key}"}) as backend:
        with pytest.raises(ConfigError, match=message) as err:
            list(backend.scan(Source("recordings", "s3")))
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"bucket": "b", "prefix": "p"}, "config_id: is required"),
    ({"manifest": "s3://b/p/manifest.json", "bucket": "b"}, "either manifest"),
    ({"manifest": "https://b/manifest.json"}, "expected s3://BUCKET"),
    ({"bucket": "b", "config_id": "c", "max_age": "soon"}, "max_age"),
    ({"bucket": "b", "config_id": "c", "colour": "red"}, "colour: unknown key"),
])
def test_inventory_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        retention_s3.backend.S3Backend(Options({"bucket": "src", "inventory": options}, where="sources[0].options"))
    assert str(err.value).startswith("sources[0].options.inventory.")


# -- recovery over an inventory -----------------------------------------------------------------------


def inventory_run_killed_at(point: str, policy_builder: Any, s3: Any, moto_endpoint: str) -> tuple[str, str, Path]:
    """An enforcing run over a fresh CSV report of a seeded bucket, SIGKILLed at *point* in its own
    process (the console script). Returns (bucket, destination bucket, policy path)."""
    import os
    import shutil
    import subprocess

    from .conftest import FAKE_ENV

    exe = shutil.which("retention")
    if exe is None:
        pytest.skip("the retention console script is not installed (pip install -e .)")
    bucket = seed(s3, versioned=False)
    dest, _ = report(s3, bucket, "CSV", versioned=False)
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RETENTION_"))}
    env.update(FAKE_ENV, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               RETENTION_TEST_KILL_AT=point)
    killed = subprocess.run([exe, "run", "-c", str(policy)], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert killed.returncode != 0, killed.stdout + killed.stderr
    return bucket, dest, policy


def test_a_crash_is_never_settled_from_a_report_taken_before_the_intent(
        retention_cli: Any, policy_builder: Any, s3: Any, moto_endpoint: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the backend deleted, before the outcome: the report still lists what was deleted.

    A report taken before the intent cannot tell whether it was executed: the rerun journals it
    ``unknown`` (carried), never ``not-executed`` (false here) nor an inferred ``deleted``; the
    record, still in the report, is decided again and its guarded delete finds it already gone.
    """
    import os
    import shutil
    import subprocess

    from retention_core.audit import records

    from .conftest import FAKE_ENV

    bucket, dest, policy = inventory_run_killed_at("after-backend", policy_builder, s3, moto_endpoint)
    exe = shutil.which("retention")
    assert exe is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RETENTION_"))}
    env.update(FAKE_ENV, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               RETENTION_TEST_KILL_AT="after-backend")
    due = {k for k in PLAIN_KEYS[:4] + ODD_KEYS}
    assert not due & {k for k, _, _ in all_versions(s3, bucket)}, "the backend deleted before the kill"

    rerun = retention_cli("run", "-c", policy)
    assert rerun.exit_code == 0, rerun.output
    trail = [e for e in records(policy.parent / "audit.jsonl") if e.get("event") == "outcome"]
    by_key: dict[str, list[str]] = {}
    for e in trail:
        by_key.setdefault(e["location"], []).append(e["outcome"])
    assert {k: by_key.get(k) for k in due} == {k: ["unknown", "already_gone"] for k in due}, by_key

    # A report taken after the intent is evidence: the object absent from it was deleted (inferred).
    # (A report counts as taken FUTURE_TOLERANCE before its date, for clock skew; none here.)
    monkeypatch.setattr(retention_s3.backend, "FUTURE_TOLERANCE", timedelta(0))
    later = "tenants/acme/calls/later.wav"
    s3.put_object(Bucket=bucket, Key=later, Body=b"audio")
    before_kill = datetime.now(timezone.utc)
    write_inventory(s3, dest, "inv", bucket, listed(s3, bucket, versions=False), "CSV", before_kill)
    killed = subprocess.run([exe, "run", "-c", str(policy)], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert killed.returncode != 0 and later not in {k for k, _, _ in all_versions(s3, bucket)}
    write_inventory(s3, dest, "inv", bucket, listed(s3, bucket, versions=False), "CSV",
                    datetime.now(timezone.utc) + timedelta(seconds=1))
    after = retention_cli("run", "-c", policy)
    assert after.exit_code == 0, after.output
    settled = [e for e in records(policy.parent / "audit.jsonl")
               if e.get("event") == "outcome" and e["location"] == later]
    assert [e["outcome"] for e in settled] == ["deleted"] and settled[0].get("settled_by"), settled


def test_a_report_filtered_to_part_of_the_source_is_refused(s3: Any, moto_endpoint: str) -> None:
    """A manifest does not say its inventory's filter: the configuration does, and a narrower one is refused."""
    bucket = seed(s3, versioned=False)
    dest, key = report(s3, bucket, "CSV", versioned=False)
    src = Source("recordings", "s3")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        assert any("configuration 'daily'" in w and "cannot be read" in w for w in backend.warnings(src))

    def configure(prefix: str) -> None:
        s3.put_bucket_inventory_configuration(Bucket=bucket, Id="daily", InventoryConfiguration={
            "Id": "daily", "IsEnabled": True, "IncludedObjectVersions": "Current", "Filter": {"Prefix": prefix},
            "Schedule": {"Frequency": "Daily"},
            "Destination": {"S3BucketDestination": {"Bucket": f"arn:aws:s3:::{dest}", "Prefix": "inv",
                                                    "Format": "CSV"}}})

    configure("tenants/acme/")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        with pytest.raises(ConfigError, match="lists only keys under 'tenants/acme/'") as err:
            backend.warnings(src)
    assert key in str(err.value)
    configure("tenants")
    with backend_for(bucket, moto_endpoint, inventory=inventory_options(dest)) as backend:
        assert not any("configuration" in w for w in backend.warnings(src))


def test_an_erasure_request_is_not_proven_done_by_a_report_taken_before_it(
        retention_cli: Any, policy_builder: Any, s3: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """dave's recordings written before the request may be missing from an older report: the
    request stays open (with a warning naming the report's time) until a report taken after it."""
    bucket = seed(s3, versioned=False)
    dest, _ = report(s3, bucket, "CSV", versioned=False, when=datetime.now(timezone.utc) - timedelta(hours=1))
    unseen = "tenants/dave/calls/after-report.wav"  # written after the report, before the request
    s3.put_object(Bucket=bucket, Key=unseen, Body=b"audio")
    policy = policy_builder.write(categories=CATEGORIES, subjects=SUBJECTS, limits=NO_LIMIT,
                                  sources=[source_entry(bucket, moto_endpoint, inventory=inventory_options(dest))])
    made = retention_cli("requests", "erase", "-c", policy, "--subject", "dave", "--controller", "ctl")
    assert made.exit_code == 0, made.output
    first = retention_cli("run", "-c", policy)
    assert first.exit_code == 0, first.output
    assert "stays open" in first.output and "predates the request" in first.output, first.output
    listed_now = retention_cli("requests", "list", "-c", policy)
    assert "done" not in listed_now.output.split("dave", 1)[1].splitlines()[0], listed_now.output
    assert unseen in {k for k, _, _ in all_versions(s3, bucket)}  # not seen, not deleted: the request is owed

    # (A report counts as taken FUTURE_TOLERANCE before its date, for clock skew; none here.)
    monkeypatch.setattr(retention_s3.backend, "FUTURE_TOLERANCE", timedelta(0))
    write_inventory(s3, dest, "inv", bucket, listed(s3, bucket, versions=False), "CSV", datetime.now(timezone.utc))
    second = retention_cli("run", "-c", policy)
    assert second.exit_code == 0, second.output
    assert not {k for k, _, _ in all_versions(s3, bucket)} & {"tenants/dave/calls/keep.wav", unseen}
    assert "predates the request" not in second.output
    assert "for dave: done" in second.output, second.output


def test_a_report_leaving_out_objects_a_crash_left_open_never_makes_them_deleted(
        retention_cli: Any, policy_builder: Any, s3: Any, moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Adversarial review round 2 (F08): killed after its intent (nothing deleted), then a report
    taken later that leaves the objects out: absence from a report is checked with HeadObject
    before it is read as a deletion, so they are journalled not executed and stay."""
    from retention_core.audit import records

    bucket, dest, policy = inventory_run_killed_at("after-intent", policy_builder, s3, moto_endpoint)
    due = set(PLAIN_KEYS[:4] + ODD_KEYS)
    assert due <= {k for k, _, _ in all_versions(s3, bucket)}, "nothing was deleted before the kill"

    monkeypatch.setattr(retention_s3.backend, "FUTURE_TOLERANCE", timedelta(0))
    kept = [obj for obj in listed(s3, bucket, versions=False) if obj["Key"] not in due]
    write_inventory(s3, dest, "inv", bucket, kept, "CSV", datetime.now(timezone.utc) + timedelta(seconds=1))
    rerun = retention_cli("run", "-c", policy)
    assert rerun.exit_code == 0, rerun.output
    assert due <= {k for k, _, _ in all_versions(s3, bucket)}
    settled = {e["location"]: e["outcome"] for e in records(policy.parent / "audit.jsonl")
               if e.get("event") == "outcome" and e.get("settled_by")}
    assert {k: settled.get(k) for k in due} == {k: "not-executed" for k in due}, settled
