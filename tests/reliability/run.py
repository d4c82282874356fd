"""Run the whole reliability suite and write its measured figures into docs/reliability.md.

    python tests/reliability/run.py            # fast subset, then the full suite; rewrites the page
    python tests/reliability/run.py --check    # the same, but only print the page

Services are mandatory here (``CI=true``): a missing moto server or PostgreSQL fails the run
instead of quietly shrinking the figures. Extra arguments after ``--`` go to pytest.
Exit status: pytest's (0 when every test passed).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PAGE = REPO / "docs" / "reliability.md"


FIXED = """## Defects the suite found, all fixed

Each fix has a regression test in this folder (they were first pinned as strict xfails):

1. A set-based SQL batch could commit before the core journalled it (a kill there lost the
   deletion from the trail): batches are now handed over before commit.
2. A hold placed while a set-based batch was being settled missed the next batch: holds are
   read once more just before each commit.
3. The clock check ran before the lock, so a rival run exited 3 instead of 4.
4. A deletion storage carried out but whose acknowledgement was lost stayed `failed` and never
   journalled: failures are now settled against the next run's scan.
5. A same-filesystem bind mount inside the fs root was entered (`st_dev` cannot see it): mount
   points from `/proc/self/mountinfo` are refused.
6. Duplicate YAML keys silently kept the last value: the loader rejects them.
7. A key name holding a line break split an error over several lines (policy and cookie
   declarations): odd names are quoted.
8. Durations beyond the calendar (and in non-ASCII digits) raised OverflowError: they are
   config errors.
9. A subjects CSV that is not UTF-8 raised UnicodeDecodeError: a config error naming the file.
10. click usage errors printed a four-line block: one line, exit 2.
11. A HAR with parts of the wrong JSON type, and a non-string cookie `basis`, raised
    TypeError/AttributeError: input errors.
12. An absurd `Max-Age` overflowed `timedelta`: clamped.
13. A lock held by a crashed run on another host (or a reused pid) blocked forever: locks carry a
    heartbeat and are taken over when stale, and a run whose lock was taken stops.
14. The set-based path kept every batch of a source registered in the hold fence until the
    source's last batch, so `holds place` during a push-down run waited for the whole source and
    named, as deleted by the batch in flight, records that batches finished long before had
    deleted: a registration now spans selection, commit and journalled outcome.
15. The overlap check compared option text: one bucket through the endpoint spelled with a
    trailing slash, one SQLite file through a path with `/./`, one PostgreSQL table with and
    without `schema: public` were not seen as overlapping, and the second source deleted what a
    hold on the first protected: endpoints, resolved paths and default schemas are compared.
16. Recovery journalled `deleted` for open intents when the fs root's volume was not mounted
    (an empty mount point) or the root had been moved to an empty directory: each intent now
    carries the storage it was made in, and a listing of other storage is not evidence.
"""


ISSUE_15_FIXED = """## Defects of issue 15, fixed

A hostile operator's, an unlucky operator's and a busy application's trials (issue 15) found
what the suite's known interleavings could not. Items 8–12 below now repeat them as classes,
per backend; each fix also has its own regression test through the CLI.

1. Per-record SQL deleted rows changed after the scan (re-inserted, `created` moved, moved to a
   held subject): the DELETE's WHERE carries the scanned key, created and subject; the record
   is kept and journalled `changed`.
2. A hold placed while a batch was in flight did not protect that batch: batches register in
   the state store before reading holds, and `holds place` waits for them, then names what they
   deleted in its scope (`hold-effective`).
3. The spool took a key beginning with `"\\x00se:"` for its own escape code and deleted another
   row: one key encoding, shared with the trail.
4. PostgreSQL table inheritance: a child table's row with the parent's key was deleted:
   `DELETE FROM ONLY`.
5. Overlapping sources defeated holds: `validate` and `run` refuse them (exit 2) unless declared
   with `overlaps:`, and a source-scoped hold then covers both.
6. fs deleted a file replaced by a new one with the same mtime: device, inode, size, mtime and
   ctime are compared on the open descriptor before `unlinkat`.
7. Crash recovery journalled `deleted` for records it could not see: only an absence observed in
   a completely listed source is a deletion; otherwise `unknown`, carried.
8. Erasure requests were marked done while data remained in places that could not be listed:
   listing problems are counted per source and keep the request open.
9. One bad record stopped every deletion: a 1,000-deep directory, an mtime or `created` in year
   9999, a service end of 9999-12-31, an S3 key with `\\x01`, `match: (a+)+` on a hostile name, a
   torn last audit line, a clock behind the last run — each is now a counted problem, a skip,
   a linear-time match, a repaired line or an explicit journalled override (`--trust-clock`).
10. `audit verify` missed removed trailing lines, duplicate-key injections and a rehashed trail:
    the head is recorded after every append, JSON is read strictly, and an optional HMAC chain.
11. Cookie declarations accepted duplicate keys; 12. CSV reports wrote formula cells raw;
    13. several inputs gave "internal error" instead of one line and exit 2; 14. hold ids,
    empty scopes, unknown subjects, `anonymize` on fs and malformed subjects CSVs were accepted
    silently — all refused or warned now.
"""


def run_suite(full: bool, extra: list[str]) -> tuple[int, dict[str, Any], float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "CI": "true", "RELIABILITY_FIGURES": str(out)}
        env.pop("RELIABILITY_FULL", None)
        if full:
            env["RELIABILITY_FULL"] = "1"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider",
                               *extra], cwd=REPO, env=env)
        took = time.monotonic() - started
        data = json.loads(out.read_text()) if out.exists() else {"figures": {}, "results": {}, "xfailed": {}}
    return done.returncode, data, took


def _n(figures: dict[str, int], key: str) -> int:
    return int(figures.get(key, 0))


def _per(figures: dict[str, int], prefix: str) -> str:
    parts = [f"{k[len(prefix) + 1:-1]} {v}" for k, v in sorted(figures.items()) if k.startswith(prefix + "[")]
    return ", ".join(parts) or "—"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def render(full: dict[str, Any], full_time: float, full_code: int, fast: dict[str, Any], fast_time: float,
           fast_code: int) -> str:
    f = full["figures"]
    results = full["results"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    defects: dict[str, list[str]] = {}
    for nodeid, reason in sorted(full.get("xfailed", {}).items()):
        defects.setdefault(reason, []).append(nodeid.removeprefix("tests/reliability/"))
    lines = [
        "# Reliability and security: measured figures",
        "",
        "A deletion tool's mistakes cannot be undone. These figures come from tests that can fail —",
        "real `retention run` processes killed with SIGKILL, holds placed by a second process in the",
        "middle of a run and while a batch is stalled by a row lock, records changed between scan",
        "and delete, overlapping sources, recovery that cannot see its records, hostile records,",
        "symlink swaps inside the delete window, faults injected into live S3 clients, and",
        "property-based fuzzing of every input a user hands the tool. They are produced, not",
        "written: this page is regenerated by",
        "",
        "```",
        "python tests/reliability/run.py",
        "```",
        "",
        "which runs the fast subset (also part of the normal `pytest`), then the full suite",
        "(`RELIABILITY_FULL=1`, with `CI=true` so a missing moto server, PostgreSQL or MariaDB is a",
        "failure, not a skip), and rewrites this file. `python -m pytest -m slow` (`tox -e reliability`) runs",
        "only the long tests, without rewriting anything.",
        "",
        f"Last run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs. Suite result: "
        + ("**all passed**" if full_code == 0 else f"**FAILED (pytest exit {full_code})**") + ".",
        "",
        "## Figures",
        "",
        "| what | measured |",
        "| --- | --- |",
        f"| kill trials (kill point × pass × backend, SIGKILL of a real process) | {_n(f, 'kill_trials')} "
        f"({_per(f, 'kill_trials')}) |",
        f"| held records lost after a kill | **{_n(f, 'held_lost')}** |",
        f"| deletions missing from / invented in the audit trail after a kill | **{_n(f, 'trail_missing')}** / "
        f"**{_n(f, 'trail_invented')}** |",
        f"| hold-race trials (hold placed by another process between batches) | {_n(f, 'hold_race_trials')} "
        f"({_per(f, 'hold_race_trials')}); {_n(f, 'hold_race_protected_records')} records the new hold had to "
        "protect |",
        f"| hold-race violations (a record deleted after its hold was placed) | **{_n(f, 'hold_race_violations')}** |",
        f"| fuzzed inputs through the CLI | {_n(f, 'fuzz_inputs')} ({_per(f, 'fuzz_inputs')}) |",
        f"| fuzzed inputs that crashed (traceback, internal error, wrong exit code, multi-line error), "
        f"not yet known | **{_n(f, 'fuzz_crashes_new')}** |",
        f"| fuzzed inputs that hit a known, reported defect (below) | {_n(f, 'fuzz_crashes_known')} "
        f"({_per(f, 'fuzz_crashes_known')}) |",
        f"| unknown config keys silently ignored | **{_n(f, 'unknown_keys_ignored')}** |",
        f"| filesystem attacks / outside entries compared byte for byte | {_n(f, 'fs_attacks')} / "
        f"{_n(f, 'fs_outside_entries_checked')} |",
        f"| outside entries touched (tmpfs and same-filesystem bind mounts included) | "
        f"**{_n(f, 'fs_outside_entries_touched') + _n(f, 'fs_outside_entries_touched_known_defect')}** |",
        f"| hostile file names deleted and journalled exactly | {_n(f, 'fs_hostile_names')} |",
        f"| S3 fault trials / records / DeleteObjects requests (all under the retry bound) | "
        f"{_n(f, 's3_fault_trials')} / {_n(f, 's3_fault_records')} / {_n(f, 's3_delete_requests')} |",
        f"| calendar and time-zone boundaries checked from both sides | {_n(f, 'clock_boundaries')} |",
        f"| simultaneous-run trials / processes / exit 0 / exit 4 / exit 3 (a clock-check race: must be 0) "
        f"| {_n(f, 'concurrent_run_trials')} / {_n(f, 'concurrent_runs_started')} / "
        f"{_n(f, 'concurrent_runs_exit_0')} / {_n(f, 'concurrent_runs_exit_4')} / "
        f"{_n(f, 'concurrent_runs_exit_3_clock_race')} |",
        f"| crashed or stale locks taken over by the next run | {_n(f, 'stale_lock_takeovers')} |",
        f"| change-after-scan trials (a batch's records re-created, modified with the same mtime, moved to a held "
        f"subject, between scan and delete) | {_n(f, 'changed_trials')} ({_per(f, 'changed_trials')}); "
        f"{_n(f, 'changed_records')} records changed |",
        f"| changed records deleted anyway | **{_n(f, 'changed_deleted')}** |",
        f"| hold-fence trials (`holds place` while a batch is stalled by a pause or a row lock) | "
        f"{_n(f, 'fence_trials')} ({_per(f, 'fence_trials')}); {_n(f, 'fence_in_scope_records')} records in the "
        f"holds' scopes, {_n(f, 'fence_deleted_by_stalled_batch')} named as deleted before the hold took effect |",
        f"| `holds place` returned while the batch was still stalled | **{_n(f, 'fence_returned_early')}** |",
        f"| held records lost (deleted after `holds place` returned, or deleted and not named) | "
        f"**{_n(f, 'fence_held_lost') + _n(f, 'hold_race_violations')}** |",
        f"| records `holds place` named that were gone before the hold was stored (set-based only: a batch "
        f"committed by the stalled statement's resume, not yet journalled) | {_n(f, 'fence_named_before_hold')} |",
        f"| overlapping source pairs (fs roots, S3 prefixes, one table twice) / refusals of validate, run, dry run | "
        f"{_n(f, 'overlap_pairs')} ({_per(f, 'overlap_pairs')}) / {_n(f, 'overlap_refusals')} |",
        f"| records deleted by a run that overlapping sources should have stopped | "
        f"**{_n(f, 'overlap_deleted_when_refused')}** |",
        f"| declared overlaps: runs / records a source-scoped hold covered that the other source deleted | "
        f"{_n(f, 'overlap_declared_runs')} / **{_n(f, 'overlap_held_lost')}** |",
        f"| recovery trials with the records unobservable (unreadable, match changed, unmounted, root moved) | "
        f"{_n(f, 'recovery_unseen_trials')} ({_per(f, 'recovery_unseen_trials')}); "
        f"{_n(f, 'recovery_carried_unknown')} intents carried as `unknown` |",
        f"| deletions invented by recovery / missing once a complete run settled | "
        f"**{_n(f, 'deletions_invented')}** / **{_n(f, 'recovery_missing_after_settling')}** |",
        f"| runs with one hostile record (year-9999 and out-of-range dates, 1,000-deep directories, control "
        f"characters in S3 keys, `(a+)+`) / hostile records | {_n(f, 'hostile_runs')} ({_per(f, 'hostile_runs')}) / "
        f"{_n(f, 'hostile_records')} |",
        f"| runs stopped by one record (exit other than 0/1, internal error, hang, other due records left) | "
        f"**{_n(f, 'runs_stopped_by_one_record')}** |",
        f"| hostile records deleted without a journal line / kept without being counted in the report | "
        f"**{_n(f, 'hostile_deleted_unjournalled')}** / **{_n(f, 'hostile_kept_unreported')}** |",
        f"| tests passed / failed / skipped / xfailed (known defects) / xpassed | {results.get('passed', 0)} / "
        f"{results.get('failed', 0)} / {results.get('skipped', 0)} / {results.get('xfailed', 0)} / "
        f"{results.get('xpassed', 0)} |",
        f"| time: full reliability suite | {_minutes(full_time)} |",
        f"| time: fast subset in the normal `pytest` | {_minutes(fast_time)} "
        + ("" if fast_code == 0 else f"(**FAILED, pytest exit {fast_code}**)") + " |",
        "",
        "## Open defects",
        "",
        "A defect the suite finds and that is not fixed at once is pinned by a test marked",
        "`xfail(strict=True)`: it fails today for exactly that reason and turns the suite red the",
        "day the defect is fixed, so its marker gets removed.",
        "",
    ]
    if not defects:
        lines.append("None open.")
    for reason, tests in defects.items():
        lines.append(f"- {reason} — `{'`, `'.join(tests)}`")
    lines += ["", FIXED, ISSUE_15_FIXED, METHOD]
    return "\n".join(lines) + "\n"


METHOD = """## What each part proves, and how it could fail

1. **Crash at every point** (`test_crash_matrix.py`). A real `retention run` subprocess is
   SIGKILLed (`RETENTION_TEST_KILL_AT=<point>:<pass>`) at `after-intent`, `mid-batch`,
   `after-backend` and `after-outcome` — for the push-down SQL path `after-intent` and
   `after-outcome` — and, through the test driver, just *before* an intent is journalled
   (`before-intent`), on the first, a middle and the last batch, for fs, S3 (moto server) and
   PostgreSQL (per-record and set-based). Batches hold 4 records. After every kill a rerun
   must reach the end state of an uninterrupted run, no held record may be gone, the audit
   chain must verify, and the multiset of `deleted` outcomes in the trail must equal the
   records that really vanished (none missing, none invented, none twice).
2. **Hold races** (`test_hold_races.py`). The run pauses after batch *k* (1–3, random); a
   separate `retention holds place` process holds the due subject with the most records left;
   the run resumes. Every record of that subject still present at the pause must survive.
3. **Filesystem attacks** (`test_fs_attacks.py`). Outside the root a victim tree carries the
   very names the run is about to delete. Inside the delete window (after scan and intent,
   before the first unlink) the test swaps a directory, the root itself, or files for
   symlinks into it; symlinks present at scan; names with `..`, newlines, CR/TAB, invalid
   UTF-8; a tmpfs and a bind mount inside the root (private mount namespace). The outside
   tree is compared byte for byte.
4. **S3 faults** (`test_s3_faults.py`). botocore event hooks on the backend's own client
   inject 503 `SlowDown` bursts and storms, per-key errors inside a 200 `DeleteObjects`
   (`SlowDown`, `InternalError`, `AccessDenied`), connection resets before and after S3
   acted, and listing with one key per page (plain and versioned buckets). Each due record
   must get exactly one outcome, DeleteObjects requests stay under max_attempts², and the
   exit code is 0 when everything was deleted and 1 when something failed.
5. **Bad input** (`test_fuzz.py`, hypothesis). Random policy text and bytes, a valid policy
   with one node replaced or deleted, an unknown key inserted into every fixed-vocabulary
   mapping, durations in the policy and in `plan --within`, subjects CSVs, `holds
   place/release`, `requests erase`, `--as-of`, Set-Cookie lines, HAR files and cookie
   declarations — through the real CLI (click's CliRunner; a few through real processes).
   Allowed answers: exit 0 or 2 (cookie checks 0, 1 or 2), no traceback, no "internal error",
   and an error is exactly one line.
6. **Clock and time** (`test_clock.py`). Leap days, month ends, year end and DST days from
   both sides of the due instant; naive SQL columns read in Europe/Berlin (repeated and
   missing hour), America/New_York, Australia/Lord_Howe (half-hour DST) and UTC; a clock
   behind the last run's `as_of` is refused with exit 3 and one line (`run` and `--dry-run`),
   nothing deleted, unless `--as-of` is explicit.
7. **Concurrency** (`test_concurrency.py`). Four to six `retention run` processes start
   together on one state store (SQLite file, PostgreSQL schema): the lock holder pauses
   before its first deletion until all rivals have exited, so every rival really overlaps;
   exactly one exits 0, the others 4 with a one-line message. A lock left by a SIGKILLed run,
   by a run on another host, or behind a pid the system reused is taken over once its
   heartbeat is older than `LOCK_STALE_AFTER` (10 min; refreshed every 30 s by the holder,
   see `retention_core/state.py`); a live heartbeat from another host still blocks.
8. **Change after scan** (`test_changed_after_scan.py`). The run is paused right before its
   first backend call (inside the batch's hold fence); the test changes that batch's records
   out of band — fs: replaced by a new file or rewritten in place with the old mtime restored
   to the nanosecond, or grown; S3: overwritten (plain and versioned buckets); per-record SQL on
   SQLite, PostgreSQL and MariaDB: deleted and re-inserted, `created` moved to today, moved to
   the held subject — and leaves one record alone as the control. Every changed record must
   survive with its new content and be journalled `changed` (on a versioned bucket the scanned
   version is deleted and the new one stays); the control must be deleted.
9. **The hold fence** (`test_hold_fence.py`). A batch is stalled deterministically — fs, S3 and
   per-record SQLite by the driver's pause inside the fence, per-record and set-based SQL on
   PostgreSQL by a row lock (`SELECT … FOR UPDATE`) another connection holds on a due row,
   until PostgreSQL reports the run waiting on it. `retention holds place … --wait 60` runs in
   another process: it must still be waiting after the hold is stored, return only once the
   batch is released, and name (and journal in `hold-effective`) the records in its scope the
   batch deleted. A record in scope deleted and not named is a held record lost.
10. **Overlapping sources** (`test_overlaps.py`). Generated pairs over one store — fs roots one to
    three levels apart, the same root, reached through a symlink, with a trailing slash or
    `/./`; nested S3 prefixes in one bucket; one table twice (SQLite, PostgreSQL) — must be
    refused by `validate`, `run` and `run --dry-run` with exit 2 and one line, nothing deleted.
    Declared with `overlaps:`, a hold scoped to the inner source must keep every record it
    lists, whichever source lists it.
11. **Recovery with the records unobservable** (`test_recovery_unseen.py`). A run is SIGKILLed
    after its first intent or after its first backend call; the rerun sees the source with the
    records' directories unreadable (mode 000, DAC capabilities dropped with `setpriv`), with a
    `match` that no longer covers them, with the volume the root is mounted from unmounted (a
    private mount namespace), or with the root moved to an empty directory. It must not journal
    `deleted` for a record still in storage (journal `unknown`, carried), and a later complete
    run must leave the trail's deletions equal to the records that really vanished.
12. **Hostile records** (`test_hostile_records.py`). Beside ordinary due records: an mtime in
    year 9999 and one past datetime's range (tmpfs keeps them), a due file 1,000 directories
    deep, S3 keys with `\\x01`, `\\x02`, CR and DEL, `match: (a+)+` against a long name of `a`s
    ending in `!` (fs, S3), SQL `created` of 9999-12-28, NULL, unparseable text, `infinity` and a
    zero date on both SQL paths, a subjects CSV service end of 9999-12-31. Two runs each, with a
    timeout: exit 0 or 1, no internal error, every ordinary due record deleted, each hostile
    record deleted and journalled or counted as kept in the run's JSON report.
"""


def main(argv: list[str]) -> int:
    check = "--check" in argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    fast_code, fast, fast_time = run_suite(False, extra)
    full_code, full, full_time = run_suite(True, extra)
    page = render(full, full_time, full_code, fast, fast_time, fast_code)
    if check:
        print(page)
    else:
        PAGE.write_text(page)
        print(f"wrote {PAGE.relative_to(REPO)}: full suite {full_time:.0f} s (exit {full_code}), "
              f"fast subset {fast_time:.0f} s (exit {fast_code})")
    return full_code or fast_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
