"""Item 1 — crash at every journal point, for fs, S3 (moto server) and SQL (PostgreSQL).

A real ``retention run`` subprocess is SIGKILLed at a journal point (``RETENTION_TEST_KILL_AT``).
After every kill: a rerun converges to the end state of an uninterrupted run, nothing held
was deleted, the audit chain verifies, and every deletion that happened is in the trail
exactly once — none missing, none invented. Batches hold 4 records, so the 20 due records
span several batches and a kill can land in the middle of the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import DUE_SUBJECTS, Store, journalled_deletions, layout, retention, verify_trail, write_policy
from .stores import KIND_PARAMS, store_factory

BATCH = "4"
#: The core's kill points (RETENTION_TEST_KILL_AT), plus ``before-intent``: the driver kills just
#: before an intent is journalled, the one gap between journal writes the core has no point for.
PER_RECORD_POINTS = ["before-intent", "after-intent", "mid-batch", "after-backend", "after-outcome"]
PUSH_DOWN_POINTS = ["before-intent", "after-intent", "after-outcome"]
#: Which pass of a point to die at: the first batch, one in the middle, the last one.
NTH = {"before-intent": (1, 3, 5), "after-intent": (1, 3, 5), "after-backend": (1, 3, 5),
       "after-outcome": (1, 3, 5), "mid-batch": (1, 7, 20)}



@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    yield from store_factory(request, tmp_path)


def _seeded(make_store: Callable[[str], Store], kind: str) -> tuple[Store, dict[str, str]]:
    store = make_store(kind)
    seeded = layout()
    store.seed(seeded)
    return store, seeded


def _expected(store: Store, seeded: dict[str, str]) -> set[str]:
    return {store.location(name) for name, subject in seeded.items() if subject not in DUE_SUBJECTS}


def _held(store: Store, seeded: dict[str, str]) -> set[str]:
    return {store.location(name) for name, subject in seeded.items() if subject == "held"}


def crash_trial(make_store: Callable[[str], Store], tmp_path: Path, kind: str, point: str, nth: int,
                figures: Counter[str]) -> None:
    """One kill and rerun, tallied into *figures*."""
    store, seeded = _seeded(make_store, kind)
    policy = write_policy(tmp_path / "cfg", [store.source()])
    before = store.present()
    held = _held(store, seeded)

    kill = ({"RELIABILITY_KILL_BEFORE_INTENT": str(nth)} if point == "before-intent"
            else {"RETENTION_TEST_KILL_AT": f"{point}:{nth}"})
    killed = retention("run", "-c", str(policy), RELIABILITY_BATCH_SIZE=BATCH, **kill)
    assert killed.returncode == -9, f"not killed at {point}:{nth}: exit {killed.returncode} {killed.stderr}"
    figures["kill_trials"] += 1
    figures[f"kill_trials[{kind}]"] += 1
    lost_at_kill = len(held - store.present())

    rerun = retention("run", "-c", str(policy), RELIABILITY_BATCH_SIZE=BATCH)
    after = store.present()
    lost = len(held - after)
    figures["held_lost"] += max(lost, lost_at_kill)
    assert rerun.returncode == 0, rerun.stderr
    assert lost == 0 and lost_at_kill == 0, f"held records deleted: {sorted(held - after)}"
    assert after == _expected(store, seeded), "the rerun did not converge to the uninterrupted end state"
    assert verify_trail(policy), "the audit chain does not verify"
    journal = journalled_deletions(policy)
    actually = Counter(before - after)
    missing, invented = actually - journal, journal - actually
    figures["trail_missing"] += sum(missing.values())
    figures["trail_invented"] += sum(invented.values())
    assert not missing, f"deletions missing from the trail: {sorted(missing)}"
    assert not invented, f"deletions in the trail that did not happen (or twice): {sorted(invented)}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_an_uninterrupted_run_reaches_the_reference_end_state(make_store, tmp_path, kind):
    """The reference every crash trial converges to: due subjects gone, active and held kept."""
    store, seeded = _seeded(make_store, kind)
    policy = write_policy(tmp_path / "cfg", [store.source()])
    before = store.present()
    done = retention("run", "-c", str(policy), RELIABILITY_BATCH_SIZE=BATCH)
    assert done.returncode == 0, done.stderr
    after = store.present()
    assert after == _expected(store, seeded)
    assert journalled_deletions(policy) == Counter(before - after)
    assert verify_trail(policy)


# -- the fast subset: one kill in the middle of the run per backend -------------------------------------
@pytest.mark.parametrize("kind", [p for p in KIND_PARAMS if p.id != "sql-postgres"])
def test_a_kill_mid_run_converges_on_rerun(make_store, tmp_path, kind, figures):
    point, nth = ("after-intent", 2) if kind == "sql-pushdown" else ("mid-batch", 6)
    crash_trial(make_store, tmp_path, kind, point, nth, figures)


# -- the full matrix --------------------------------------------------------------------------------------
def _matrix() -> list[object]:
    cases = []
    for param in KIND_PARAMS:
        kind = param.values[0]
        points = PUSH_DOWN_POINTS if kind == "sql-pushdown" else PER_RECORD_POINTS
        for point in points:
            for nth in NTH[point]:
                marks = [*param.marks, pytest.mark.slow]
                cases.append(pytest.param(kind, point, nth, marks=marks, id=f"{param.id}-{point}-{nth}"))
    return cases


@pytest.mark.parametrize(("kind", "point", "nth"), _matrix())
def test_every_kill_point_converges_on_rerun(make_store, tmp_path, kind, point, nth, figures):
    crash_trial(make_store, tmp_path, kind, point, nth, figures)
