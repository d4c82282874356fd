"""Item 4 — S3 faults against a moto server: throttling storms, per-key errors inside a 200,
connection resets mid-batch (before and after S3 acted), one key per listing page.

Faults are injected with botocore event hooks on the backend's own client (its
``make_client`` is wrapped), so the code under test runs unchanged. Every trial checks that
each due record got exactly one outcome in the trail, that the number of DeleteObjects
requests stayed under the retry bound, that the exit code says what happened, and that
storage agrees with the trail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from click.testing import CliRunner

from .helpers import S3Store, layout, trail, verify_trail, write_policy

pytestmark = pytest.mark.moto_server

RECORDS = {"ended": 6, "active": 3, "held": 3}
DUE = {loc for loc, s in layout(RECORDS).items() if s == "ended"}
BOTO_ATTEMPTS = 3  # the source's max_attempts: botocore's standard retries, and the per-key retries
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any):
        yield self.data


class Faults:
    """What to do to each DeleteObjects request; counts every request for the records that reached
    the wire (the conditional-delete probe's canary requests are not the chunk's)."""

    def __init__(self) -> None:
        self.sent = 0
        self.hooks: list[tuple[str, Callable[..., Any]]] = []

    def install(self, client: Any) -> None:
        def count(request: Any, **_: Any) -> None:
            # The guard's probe (a canary under .retention-canary/, once per run) is not the chunk's.
            body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
            if b".retention-canary/" not in body:
                self.sent += 1
        client.meta.events.register("before-send.s3.DeleteObjects", count)
        for event, hook in self.hooks:
            client.meta.events.register(event, hook)

    def slow_down(self, times: int) -> Faults:
        left = [times]

        def hook(request: Any, **_: Any) -> AWSResponse | None:
            if left[0] <= 0:
                return None
            left[0] -= 1
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(SLOW_DOWN))
        self.hooks.append(("before-send.s3.DeleteObjects", hook))
        return self

    def reset(self, times: int, *, after_acting: bool) -> Faults:
        """Drop the connection; with *after_acting*, only after S3 has executed the request."""
        left = [times]

        def hook(request: Any, **_: Any) -> None:
            if left[0] <= 0:
                return
            left[0] -= 1
            if after_acting:
                import urllib3

                urllib3.PoolManager().request(request.method, request.url, body=request.body,
                                              headers=dict(request.headers))
            raise ConnectionClosedError(endpoint_url=request.url)
        self.hooks.append(("before-send.s3.DeleteObjects", hook))
        return self

    def key_errors(self, keys: set[str], code: str, times: int) -> Faults:
        """A 200 whose ``Errors`` name *keys* (held back from S3) for the next *times* requests."""
        left = [times]
        dropped: list[dict[str, str]] = []

        def before(params: dict[str, Any], **_: Any) -> None:
            if left[0] <= 0:
                return
            objects = params["Delete"]["Objects"]
            out = [o for o in objects if o["Key"] in keys]
            keep = [o for o in objects if o["Key"] not in keys]
            if out and keep:
                left[0] -= 1
                params["Delete"]["Objects"] = keep
                dropped.extend(out)

        def after(parsed: dict[str, Any], **_: Any) -> None:
            if dropped:
                parsed.setdefault("Errors", []).extend(
                    {"Key": o["Key"], "Code": code, "Message": f"injected {code}"} for o in dropped)
                dropped.clear()
        self.hooks.append(("before-parameter-build.s3.DeleteObjects", before))
        self.hooks.append(("after-call.s3.DeleteObjects", after))
        return self


@pytest.fixture
def s3_world(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(run(faults, page_size) -> (exit code, stderr), store, policy)"""
    import retention_s3.backend as s3_backend
    from retention_s3.client import make_client

    monkeypatch.setattr(s3_backend.S3Backend, "backoff_base", 0.0)
    store = S3Store(moto_endpoint)
    store.seed(layout(RECORDS))
    current: dict[str, Faults] = {}

    def faulty_client(*args: Any, **kwargs: Any) -> Any:
        client = make_client(*args, **kwargs)
        if "faults" in current:
            current["faults"].install(client)
        return client

    monkeypatch.setattr(s3_backend, "make_client", faulty_client)

    def run(faults: Faults | None = None, page_size: int = 1000) -> tuple[int, str, Path]:
        source = store.source()
        source["options"]["page_size"] = page_size
        policy = write_policy(tmp_path / "cfg", [source])
        current.pop("faults", None)
        if faults is not None:
            current["faults"] = faults
        from retention_core.cli import cli

        result = CliRunner().invoke(cli, ["run", "-c", str(policy)], catch_exceptions=False)
        return result.exit_code, result.stderr, policy

    yield run, store
    store.close()


def _one_outcome_each(policy: Path, figures: Counter[str]) -> Counter[str]:
    """The trail's outcome per due record: exactly one each; returns the outcome counts."""
    entries = [e for e in trail(policy) if e.get("event") in ("intent", "outcome")]
    outcomes = Counter(e["location"] for e in entries if e["event"] == "outcome")
    intents = Counter(e["location"] for e in entries if e["event"] == "intent")
    figures["s3_fault_records"] += len(intents)
    assert intents == outcomes, f"intents without exactly one outcome: {intents - outcomes} / {outcomes - intents}"
    assert set(outcomes) == DUE and all(n == 1 for n in outcomes.values()), outcomes
    return Counter(e["outcome"] for e in entries if e["event"] == "outcome")


def _bounded(faults: Faults, figures: Counter[str]) -> None:
    bound = BOTO_ATTEMPTS * BOTO_ATTEMPTS  # botocore retries × the per-key retry rounds, one chunk
    figures["s3_fault_trials"] += 1
    figures["s3_delete_requests"] += faults.sent
    assert 1 <= faults.sent <= bound, f"{faults.sent} DeleteObjects requests for one chunk (bound {bound})"


def test_a_short_throttling_burst_is_absorbed(s3_world, figures):
    run, store = s3_world
    faults = Faults().slow_down(2)
    code, err, policy = run(faults)
    assert code == 0, err
    assert _one_outcome_each(policy, figures) == {"deleted": len(DUE)}
    assert not (store.present() & DUE)
    _bounded(faults, figures)


@pytest.mark.slow
def test_a_throttling_storm_fails_every_record_once_and_exits_1(s3_world, figures):
    run, store = s3_world
    faults = Faults().slow_down(10**6)
    code, err, policy = run(faults)
    assert code == 1, err
    assert _one_outcome_each(policy, figures) == {"failed": len(DUE)}
    assert store.present() >= DUE  # nothing deleted, and the trail says so
    _bounded(faults, figures)
    code, err, policy = run()  # the storm is over: the next run finishes the job
    assert code == 0 and not (store.present() & DUE), err
    assert verify_trail(policy)


@pytest.mark.parametrize(("code", "exit_code", "outcome"), [("SlowDown", 0, "deleted"), ("InternalError", 0, "deleted"),
                                                             ("AccessDenied", 1, "failed")])
def test_per_key_errors_inside_a_200(s3_world, figures, code, exit_code, outcome):
    run, store = s3_world
    victims = set(sorted(DUE)[:2])
    faults = Faults().key_errors(victims, code, times=10**6 if code == "AccessDenied" else 1)
    rc, err, policy = run(faults)
    assert rc == exit_code, err
    counts = _one_outcome_each(policy, figures)
    if outcome == "failed":
        assert counts == {"deleted": len(DUE) - 2, "failed": 2}
        assert store.present() & DUE == victims
    else:
        assert counts == {"deleted": len(DUE)} and not (store.present() & DUE)
    _bounded(faults, figures)


@pytest.mark.parametrize("after_acting", [False, True], ids=["before-s3-acted", "after-s3-acted"])
def test_a_connection_reset_mid_batch_is_retried(s3_world, figures, after_acting):
    run, store = s3_world
    faults = Faults().reset(1, after_acting=after_acting)
    code, err, policy = run(faults)
    assert code == 0, err
    assert _one_outcome_each(policy, figures) == {"deleted": len(DUE)}
    assert not (store.present() & DUE)
    _bounded(faults, figures)




@pytest.mark.slow
def test_a_reset_storm_after_s3_acted_leaves_no_deletion_missing_from_the_trail(s3_world, figures):
    run, store = s3_world
    faults = Faults().reset(10**6, after_acting=True)
    code, err, policy = run(faults)
    assert code == 1, err
    _bounded(faults, figures)
    code, err, policy = run()
    assert code == 0, err
    deleted = Counter(e["location"] for e in trail(policy) if e.get("outcome") == "deleted")
    assert set(deleted) == DUE  # each deletion that happened is journalled as one


@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "versioned"])
def test_one_key_per_listing_page(moto_endpoint, tmp_path, monkeypatch, figures, versioned):
    import retention_s3.backend as s3_backend

    monkeypatch.setattr(s3_backend.S3Backend, "backoff_base", 0.0)
    store = S3Store(moto_endpoint, versioned=versioned)
    try:
        store.seed(layout(RECORDS))
        if versioned:  # a second version of every due key: both must go, each with one outcome
            store.seed({loc: "ended" for loc in DUE})
        source = store.source()
        source["options"]["page_size"] = 1
        policy = write_policy(tmp_path / "cfg", [source])
        from retention_core.cli import cli

        result = CliRunner().invoke(cli, ["run", "-c", str(policy)], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        outcomes = Counter((e["location"], e.get("version")) for e in trail(policy) if e.get("event") == "outcome")
        assert all(n == 1 for n in outcomes.values())
        assert len(outcomes) == len(DUE) * (2 if versioned else 1)
        versions = store.client.list_object_versions(Bucket=store.bucket)
        left = {v["Key"] for v in versions.get("Versions", ())} | {m["Key"] for m in versions.get("DeleteMarkers", ())}
        assert not (left & DUE) and left == set(layout(RECORDS)) - DUE
        figures["s3_fault_trials"] += 1
        figures["s3_fault_records"] += len(outcomes)
    finally:
        store.close()
