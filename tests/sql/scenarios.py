"""Random but reproducible policy situations, and the two ways of acting on them.

``per_record`` is the core's classic path (scan, ``decide`` each record, delete what is
due); ``set_based`` is ``push_down`` with the engine's cutoffs. Tests run both on copies of
the same rows and require identical results.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from retention_core import (
    Action,
    Category,
    Context,
    Cutoffs,
    ErasureRequest,
    Hold,
    HoldScope,
    PushdownPlan,
    Record,
    Source,
    Status,
    Subject,
    parse_duration,
)
from retention_core.engine import cutoffs, decide

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def category(after: str = "created", action: Action = Action.DELETE, retain: str = "2y") -> Category:
    return Category(name="transcripts", retain=parse_duration(retain), after=after, action=action)


@dataclass
class Scenario:
    category: Category
    subjects: dict[str, Subject]
    holds: tuple[Hold, ...] = ()
    requests: dict[str, ErasureRequest] = field(default_factory=dict)
    rows: list[tuple[Any, str | None, datetime]] = field(default_factory=list)

    def context(self, holds: tuple[Hold, ...] | None = None) -> Context:
        return Context(now=NOW, categories={self.category.name: self.category}, subjects=self.subjects,
                       holds=self.holds if holds is None else holds, requests=self.requests)

    def source(self, name: str = "transcripts") -> Source:
        return Source(name=name, backend="sql", category=self.category.name)


def hold(hold_id: str, **scope: str) -> Hold:
    return Hold(id=hold_id, kind="legal", scope=HoldScope(**scope), reason="test")


def scenario(seed: int, *, after: str = "created", action: Action = Action.DELETE, count: int = 300,
             text_keys: bool = False) -> Scenario:
    """Subjects in every state, holds, requests, and rows around the exact cutoff instant."""
    rng = random.Random(seed)
    cat = category(after, action)
    subjects: dict[str, Subject] = {}
    requests: dict[str, ErasureRequest] = {}
    for i in range(12):
        sid = f"s{i:02d}"
        state = i % 6
        ended = None
        if state in (1, 2):  # service ended long ago / just now
            ended = NOW - timedelta(days=400 if state == 1 else 10)
        subjects[sid] = Subject(sid, controller="acme", service_ended_at=ended, minor=(state == 3))
        if state == 4:
            requests[sid] = ErasureRequest(f"R-{sid}", sid, "acme", NOW - timedelta(days=3), NOW + timedelta(days=27))
    # Names that only look alike: collations that ignore case, trailing spaces or accents must not merge them.
    subjects["Acme"] = Subject("Acme", service_ended_at=NOW - timedelta(days=500), minor=True)
    subjects["acme"] = Subject("acme", service_ended_at=None)
    subjects["acme "] = Subject("acme ", service_ended_at=NOW - timedelta(days=500))
    subjects["ünï"] = Subject("ünï", minor=True)
    holds = (hold("LH-1", subject="s05"), hold("LH-2", subject="ghost-held"),
             Hold(id="LH-old", kind="legal", scope=HoldScope(subject="s01"), reason="released",
                  released_at=NOW - timedelta(days=1)),
             hold("LH-other", subject="s02", source="elsewhere"))
    boundary = cat.retain.latest_start_due_by(NOW)
    names = [*subjects, "ghost", "ghost-held", "ACME", "unï", None]
    rows = []
    keys = rng.sample(range(1, 50 * count), count)
    for key in keys:
        pick = rng.random()
        if pick < 0.3:
            created = boundary + timedelta(microseconds=rng.choice((-1, 0, 1)) * rng.choice((1, 1000, 10**6)))
        else:
            created = NOW - timedelta(seconds=rng.randrange(0, 4 * 365 * 86400))
        rows.append((f"k{key:07d}" if text_keys else key, rng.choice(names), created))
    return Scenario(cat, subjects, holds, requests, rows)


def per_record(backend: Any, source: Source, ctx: Context) -> set[str]:
    """Scan, decide each record, and delete or anonymize what is due; the affected locations."""
    due = [r for r in backend.scan(source)
           if isinstance(r, Record) and decide(r, ctx).action in (Action.DELETE, Action.ANONYMIZE)]
    action = ctx.categories[source.category or ""].action
    outcomes = list(backend.anonymize(due) if action is Action.ANONYMIZE else backend.delete(due))
    assert len(outcomes) == len(due)
    wanted = Status.ANONYMIZED if action is Action.ANONYMIZE else Status.DELETED
    assert {o.status for o in outcomes} <= {wanted}, [o for o in outcomes if o.status is not wanted][:3]
    return {o.record.location for o in outcomes}


def set_based(backend: Any, source: Source, ctx: Context,
              refresh: Callable[[], Cutoffs] | None = None) -> tuple[set[str], list[list[Any]]]:
    """push_down with the engine's cutoffs; the affected locations and the batches of outcomes."""
    plan = PushdownPlan(cutoffs(source, ctx), refresh or (lambda: cutoffs(source, ctx)))
    batches = [list(batch) for batch in backend.push_down(source, plan)]
    locations = [o.record.location for batch in batches for o in batch]
    assert len(locations) == len(set(locations)), "push_down reported a record twice"
    return set(locations), batches
