"""The state store against the audit trail: refuse a store that lacks what the trail put in it.

A run, and every command that writes holds or requests, asks first (red team, issue 16): a
store emptied, replaced or restored from an older backup has lost holds, and a run would
delete what they protect while the trail still shows them placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .audit import genesis, read_backwards
from .errors import ConfigError

if TYPE_CHECKING:
    from .runtime import Runtime

#: Trail lines that name the state store they were written with (``state``: its store id): a
#: run's start, holds placed by a person, and what the hold sources' memory journals.
_STORE_MARKED = frozenset({"run-start", "hold-placed", "erasure-requested", "erasure-withdrawn", "hold-vanished",
                           "hold-released", "hold-reinstated", "hold-listed-again", "hold-changed"})


def check_state_is_the_trails(rt: Runtime, *, lacking: bool = True) -> None:
    """Refuse a state store that lacks what the audit trail says was put in it.

    Emptied, deleted or replaced, a store has lost the holds and erasure requests placed
    through it, and a run would delete what they protect (the trail still shows them placed):
    the newest trail line that names a store (a run's start, a hold placed, a request) must
    name this one. Restored from an older backup, it is the same store, but without what was
    placed after the backup: every hold placed and request received or withdrawn in the lines
    after the head the store recorded must be in it. The first is also checked before
    ``holds place``, ``holds release`` and ``requests erase|withdraw`` write (*lacking* False):
    a line they add names this store, and would otherwise make an emptied store look like the
    trail's own; placing again what a restored store lacks stays possible.
    """
    trail = rt.policy.audit
    if not trail.is_file():
        return
    first = genesis(trail)
    head = rt.state.audit_head(first)
    if head is None and rt.state.recorded_trail() not in (None, first):
        head = (0, "")  # the head recorded is a rotated-away trail's: every line of this one is after it
    after_head: list[dict[str, Any]] = []
    marked: dict[str, Any] | None = None
    searching = True  # for the newest line naming a store; a run-start of a trail from before
    for entry in read_backwards(trail):  # store ids ends the search (it names none)
        if not isinstance(entry, dict):
            continue
        beyond = head is not None and isinstance(entry.get("seq"), int) and entry["seq"] > head[0]
        if beyond:
            after_head.append(entry)
        if searching and entry.get("event") in _STORE_MARKED and (entry.get("state") or entry["event"] == "run-start"):
            marked = entry if entry.get("state") else None
            searching = False
        if not searching and not beyond:
            break
    store = rt.state.display_url
    where = {"file": str(rt.policy.path), "key": "state"}
    if marked is not None and marked["state"] != rt.state.store_id():
        raise ConfigError(
            f"the state store ({store}) is not the one the audit trail's line {marked.get('seq')} "
            f"({marked.get('event')}) was written with: it was emptied, deleted or replaced, so holds and erasure "
            "requests placed through it may be gone; restore it from a backup — or, to start afresh on purpose, "
            "point `audit:` at a new trail file", **where)
    for entry in reversed(after_head if lacking else []):
        missing = _missing_from_state(rt, entry)
        if missing:
            raise ConfigError(
                f"the state store ({store}) lacks {missing}, which the audit trail's line {entry.get('seq')} "
                f"records after the last line the store knows of (line {head[0] if head else '?'}): it was "
                "restored from an older backup or rolled back; place the hold or request again (or restore a newer "
                "backup) before running", **where)


def _missing_from_state(rt: Runtime, entry: dict[str, Any]) -> str | None:
    """What of *entry* (a trail line) the state store does not hold, or None."""
    event = entry.get("event")
    hold = entry.get("hold")
    origin = entry.get("origin")
    if event == "hold-placed" and not origin and isinstance(hold, str):
        if not any(h.id == hold for h in rt.state.holds()):
            return f"hold {hold}"
    elif event in ("hold-placed", "hold-vanished") and isinstance(origin, str) and isinstance(hold, str):
        # The store's memory of a hold source's hold keeps it in force once the source stops
        # listing it: lost with a restored store, the hold would be gone for good.
        if (origin, hold) not in rt.state.remembered_source_holds():
            return f"hold {hold} of hold source {origin}"
    elif event in ("erasure-requested", "erasure-withdrawn") and isinstance(entry.get("request"), str):
        request = rt.state.request(entry["request"])
        if request is None:
            return f"erasure request {entry['request']}"
        if event == "erasure-withdrawn" and request.withdrawn_at is None:
            return f"the withdrawal of erasure request {entry['request']}"
    return None
