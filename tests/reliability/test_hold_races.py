"""Item 2 — a hold placed by another process between batches protects everything not yet deleted.

The run is paused by the driver right after batch *k*'s outcomes were journalled. While it
waits, a separate ``retention holds place`` process puts a legal hold on the due subject
with the most records left, or on the whole category. The run is paused inside batch *k*'s
hold fence, so the placer stores the hold and then waits for that batch: the run resumes as
soon as the hold is stored. Every record
the hold covers that was still in storage at the pause must still be there at the end.
Trials vary *k* and the scope.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import DRIVER, DUE_SUBJECTS, Store, cli_env, layout, start_paused, trail, verify_trail, write_policy
from .stores import KIND_PARAMS, store_factory

BATCH = "4"
SLOW_TRIALS = {"fs": 15, "s3": 10, "sql": 10, "sql-pushdown": 12}


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    yield from store_factory(request, tmp_path)


def _trail(policy: Path) -> list[dict]:
    try:
        return trail(policy)
    except Exception:  # a line being written: read again
        return []


def race_trial(make_store: Callable[[str], Store], folder: Path, kind: str, trial: int,
               figures: dict[str, int]) -> None:
    rng = random.Random(f"{kind}-{trial}")
    store = make_store(kind)
    store.seed(layout())
    policy = write_policy(folder / "cfg", [store.source()])
    after_batch = rng.randint(1, 3)
    run = start_paused(folder, "run", "-c", str(policy), after_batch=after_batch, RELIABILITY_BATCH_SIZE=BATCH)
    paused = run.wait_paused()
    if paused is None:
        code, _, err = run.resume()
        raise AssertionError(f"the run ended (exit {code}) before batch {after_batch}: {err}")
    snapshot = store.present()
    left = {s: sum(1 for loc in snapshot if store.subject_of(loc) == s) for s in sorted(DUE_SUBJECTS)}
    candidates = [s for s, n in left.items() if n]
    assert candidates, "nothing left to protect: the trial would prove nothing"
    by_category = trial == 0 or rng.random() < 0.5  # trial 0: a hold on the whole category
    target = max(candidates, key=lambda s: (left[s], rng.random()))
    scope = ["--category", "data"] if by_category else ["--subject", target]
    # The run is paused at the end of batch k, still inside that batch's hold fence (and a set-based
    # run keeps its batches registered), so `holds place` stores the hold and then waits for the
    # run: resume it once the hold is stored, then collect the placer.
    hold_id = f"RACE-{trial}"
    placer = subprocess.Popen([sys.executable, str(DRIVER), "holds", "place", "-c", str(policy), "--id", hold_id,
                               "--kind", "legal", "--reason", "placed mid-run by another process", *scope,
                               "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env())
    try:
        deadline = time.monotonic() + 60
        while not any(e.get("event") == "hold-placed" and e.get("hold") == hold_id for e in _trail(policy)):
            assert placer.poll() is None, f"holds place ended before storing the hold: {placer.communicate()}"
            assert time.monotonic() < deadline, "the hold was never stored"
            time.sleep(0.02)
    finally:
        code, _, err = run.resume()
        _, placed_err = placer.communicate(timeout=120)
    assert placer.returncode == 0, placed_err
    after = store.present()
    covered = set(candidates) if by_category else {target}
    protected = {loc for loc in snapshot if store.subject_of(loc) in covered}
    violated = protected - after
    figures["hold_race_trials"] += 1
    figures[f"hold_race_trials[{kind}]"] += 1
    figures["hold_race_protected_records"] += len(protected)
    figures["hold_race_violations"] += len(violated)
    assert code == 0, err
    assert not violated, (f"{len(violated)} of {len(protected)} records of {sorted(covered)} deleted after a hold "
                          f"was placed between batches {after_batch} and {after_batch + 1}: {sorted(violated)}")
    assert verify_trail(policy)


@pytest.mark.parametrize("kind", [p for p in KIND_PARAMS if p.id in ("fs", "sql-postgres-pushdown")])
def test_a_hold_placed_between_batches_protects_the_rest(make_store, tmp_path, kind, figures):
    race_trial(make_store, tmp_path, kind, 0, figures)


def _trials() -> list[object]:
    return [pytest.param(p.values[0], n, marks=[*p.marks, pytest.mark.slow], id=f"{p.id}-{n}")
            for p in KIND_PARAMS for n in range(1, SLOW_TRIALS[p.values[0]] + 1)]


@pytest.mark.parametrize(("kind", "trial"), _trials())
def test_hold_races_repeated(make_store, tmp_path, kind, trial, figures):
    race_trial(make_store, tmp_path, kind, trial, figures)
