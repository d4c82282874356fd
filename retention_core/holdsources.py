"""Hold sources: holds kept in another system (a case system's export, its database), read before
every batch, and remembered so that losing one from the source never releases it.

A source says which holds exist and which it has released (``status: released``). What it stops
listing is not released: an export cut short, an empty file or a wrong query would otherwise
release every hold at once. The state store remembers every hold a source ever listed
(``retention_source_holds``); one that vanishes stays in force, reported as vanished, until its
source lists it as released or a person releases it (``retention holds release``). Every change is
journalled in the audit trail with the source's name.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from .errors import ConfigError, DuplicateKeyError, PluginError, RetentionError, StateStoreError
from .model import Hold, HoldScope
from .options import Options
from .policy import HOLD_ID, HOLD_KINDS
from .sqlread import ReadFailed, Table, open_table, read_columns, read_zone
from .state import SOURCE_HOLDS, StateStore, actor, insert, utc
from .statedb import Row
from .subjects import instant_cell

#: The fields of a hold row; the scope fields name what it covers (at least one is given).
FIELDS = ("id", "kind", "scope_subject", "scope_category", "scope_source", "reason", "placed_by", "placed_at",
          "status")
SCOPE_FIELDS = ("scope_subject", "scope_category", "scope_source")
REQUIRED = ("id", "kind", "reason")
ACTIVE, RELEASED = "active", "released"

HoldReader = Callable[[], Iterable[Hold]]
Journal = Callable[[list[dict[str, Any]]], None]


# -- reading one row -----------------------------------------------------------------------------------
def hold_from(row: Mapping[str, Any], zone: tzinfo | None, names: Mapping[str, str] | None = None) -> Hold:
    """One row (text from a file, native values from a database) as a Hold; a released one has
    ``released_at`` set to the moment it was read. Raises ValueError naming the field."""
    def label(field: str) -> str:
        column = (names or {}).get(field, field)
        return field if column == field else f"{field} (column {column})"

    def text(field: str) -> str:
        value = row.get(field)
        value = "" if value is None else str(value).strip()
        if not value.isprintable():
            raise ValueError(f"{label(field)}: expected printable text, found {value!r}")
        limit = SOURCE_HOLDS.length(field)
        if limit is not None and len(value) > limit:
            raise ValueError(f"{label(field)}: expected at most {limit} characters, found {len(value)}")
        return value

    hold_id = text("id")
    if not HOLD_ID.match(hold_id):
        raise ValueError(f"{label('id')}: expected a hold id of 1 to 64 letters, digits, '.', '_', ':' or '-' "
                         f"starting with a letter or digit, found {hold_id!r}")
    kind = text("kind").lower()
    if kind not in HOLD_KINDS:
        raise ValueError(f"{label('kind')}: expected one of {', '.join(HOLD_KINDS)}, found {kind!r}")
    scope = HoldScope(**{f[len("scope_"):]: v for f in SCOPE_FIELDS if (v := text(f))})
    if not scope.as_dict():
        raise ValueError(f"hold {hold_id}: expected at least one of {', '.join(SCOPE_FIELDS)} (an empty scope "
                         "would hold everything by accident)")
    reason = text("reason")
    if not reason:
        raise ValueError(f"{label('reason')} is empty")
    status = text("status").lower() or ACTIVE
    if status not in (ACTIVE, RELEASED):
        raise ValueError(f"{label('status')}: expected {ACTIVE}, {RELEASED} or empty, found {status!r}")
    now = datetime.now(timezone.utc)
    return Hold(id=hold_id, kind=kind, scope=scope, reason=reason, placed_by=text("placed_by"),
                placed_at=instant_cell(row.get("placed_at"), zone, label("placed_at"), "hold source"),
                released_at=now if status == RELEASED else None)


# -- the built-in sources ----------------------------------------------------------------------------------
class CsvHolds:
    """The ``csv`` hold source: a file a case system exports, read again every time holds are read."""

    def __init__(self, options: Options) -> None:
        self.path: Path = options.path("path")
        self.zone = read_zone(options)
        self.names = read_columns(options, FIELDS)
        options.done()
        if not self.path.is_file():
            raise options.error("path", f"expected an existing CSV file, found {str(self.path)!r}")

    def __call__(self) -> list[Hold]:
        """Every row; a file that cannot be read or a bad row is a ConfigError naming the line."""
        where = "line 1"
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh, strict=True)
                header = list(reader.fieldnames or [])
                column = {field: self.names.get(field, field) for field in FIELDS}
                missing = [column[f] for f in REQUIRED if column[f] not in header]
                if missing or not any(column[f] in header for f in SCOPE_FIELDS):
                    wanted = missing[0] if missing else " or ".join(column[f] for f in SCOPE_FIELDS)
                    raise ConfigError(f"missing column {wanted} (columns: {', '.join(column[f] for f in FIELDS)})",
                                      file=str(self.path), key=where)
                out = []
                start = reader.line_num + 1
                for raw in reader:
                    where = f"line {start}"
                    if None in raw:
                        raise ConfigError(f"expected {len(header)} fields as in the header, found "
                                          f"{len(header) + len(raw[None])}", file=str(self.path), key=where)
                    row = {field: raw.get(column[field]) for field in FIELDS}
                    try:
                        out.append(hold_from(row, self.zone, self.names))
                    except ValueError as exc:
                        raise ConfigError(str(exc), file=str(self.path), key=where) from None
                    start = reader.line_num + 1
                return out
        except csv.Error as exc:
            raise ConfigError(f"not a readable CSV file: {exc}", file=str(self.path), key=where) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x}",
                              file=str(self.path)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the hold source file: {exc.strerror or exc}", file=str(self.path)) \
                from None


class SqlHolds:
    """The ``sql`` hold source: a table or view with the ``csv`` source's columns (``columns:`` maps them)."""

    def __init__(self, options: Options) -> None:
        self.zone = read_zone(options)
        self.where = options.where
        self.table: Table = open_table(options, FIELDS, required=REQUIRED)
        options.done()
        if not any(f in self.table.columns for f in SCOPE_FIELDS):
            self.table.close()
            raise options.error("columns", f"{self.table.label} has no scope column (map one of "
                                           f"{', '.join(SCOPE_FIELDS)})")
        self.names = {field: col.name for field, col in self.table.columns.items()}

    def __call__(self) -> list[Hold]:
        out = []
        try:
            for n, row in enumerate(self.table.stream(), start=1):
                try:
                    out.append(hold_from(row, self.zone, self.names))
                except ValueError as exc:
                    raise ConfigError(f"{self.table.label}, row {n}: {exc}", key=self.where) from None
        except ReadFailed as exc:
            raise ConfigError(f"cannot read {self.table.label}: {exc}", key=self.where) from None
        return out

    def close(self) -> None:
        self.table.close()


# -- reading every source, with the memory ------------------------------------------------------------------
def read_holds(sources: Mapping[str, HoldReader], state: StateStore, journal: Journal, *,
               include_released: bool = False, check: Callable[[Hold], str | None] | None = None) -> list[Hold]:
    """Every hold the sources list, and every remembered one they no longer list (vanished).

    Each source is read once; any that cannot be read (or lists a bad hold) raises, and the
    caller stops before anything is deleted. *check* says why a listed hold is unusable (a
    category the policy does not have), or None.
    """
    listed: dict[str, list[Hold]] = {}
    for name, reader in sources.items():
        listed[name] = _read_one(name, reader, check)
    now = datetime.now(timezone.utc)
    events: list[dict[str, Any]] = []
    out: list[Hold] = []
    try:
        remembered: dict[str, dict[str, Row]] = {}
        with state.db.connect() as conn:
            for row in conn.execute("SELECT * FROM retention_source_holds"):
                remembered.setdefault(row.origin, {})[row.id] = row
        for name in sorted(set(listed) | set(remembered)):
            out += _settle(state, name, listed.get(name), remembered.get(name, {}), now, events)
    except StateStoreError as exc:
        raise RetentionError(f"cannot remember the hold sources' holds in the state store: "
                             f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        if events:
            journal(events)  # what was stored is journalled, also when a later write failed
    return [h for h in out if include_released or h.active]


def _read_one(name: str, reader: HoldReader, check: Callable[[Hold], str | None] | None) -> list[Hold]:
    """One source's holds, checked; its failure as an error naming the source."""
    try:
        found = list(reader())
    except ConfigError as exc:
        raise ConfigError(f"hold source {name!r}: {exc.detail}", file=exc.file, key=exc.key) from None
    except RetentionError:
        raise
    except Exception as exc:
        raise RetentionError(f"hold source {name!r} failed: {type(exc).__name__}: {exc}") from exc
    seen: set[str] = set()
    for hold in found:
        if not isinstance(hold, Hold):
            raise PluginError(f"hold source {name!r} returned {type(hold).__name__}, expected retention_core.Hold")
        if hold.id in seen:
            raise ConfigError(f"hold source {name!r} lists hold {hold.id!r} twice: which one is meant is a guess")
        seen.add(hold.id)
        why = _unfit(hold) or (check(hold) if check is not None else None)
        if why:
            raise ConfigError(f"hold source {name!r}: hold {hold.id!r}: {why}")
    return found


def _unfit(hold: Hold) -> str | None:
    """Why *hold* (a plugin's, unchecked by :func:`hold_from`) cannot be remembered as it is, or None."""
    if not isinstance(hold.id, str) or not hold.id.strip():
        return "expected a non-empty hold id"
    if not hold.scope.as_dict():
        return "a hold needs at least one of subject, category, source: an empty scope would hold everything"
    for column, value in (("id", hold.id), ("kind", hold.kind), ("scope_subject", hold.scope.subject),
                          ("scope_category", hold.scope.category), ("scope_source", hold.scope.source),
                          ("placed_by", hold.placed_by)):
        limit = SOURCE_HOLDS.length(column)
        if value is not None and limit is not None and len(value) > limit:
            return f"{column}: expected at most {limit} characters, found {len(value)}"
    return None


def _settle(state: StateStore, name: str, listed: list[Hold] | None, remembered: dict[str, Row],
            now: datetime, events: list[dict[str, Any]]) -> list[Hold]:
    """Bring the memory of source *name* up to what it lists now (None: no longer configured);
    return its holds, vanished ones included."""
    out: list[Hold] = []
    current = {h.id: h for h in listed or []}
    for hold in current.values():
        row = remembered.get(hold.id)
        hold = replace(hold, origin=name)
        if hold.released_at is not None:
            out.append(_released_by_source(state, name, hold, row, now, events))
        else:
            _listed_active(state, name, hold, row, now, events)
            out.append(hold)
    for hold_id, row in remembered.items():
        if hold_id in current:
            continue
        if row.released_at is None and row.vanished_at is None:
            if _update(state, name, hold_id, {"vanished_at": now}, released=False, vanished=False):
                events.append({"event": "hold-vanished", "hold": hold_id, "origin": name,
                               "reason": ("no longer listed by its source" if listed is not None
                                          else "its hold source is no longer in the policy")
                               + ": still in force until released"})
            out.append(replace(_row_hold(row), vanished_at=now))
        else:
            out.append(_row_hold(row))
    return out


def _listed_active(state: StateStore, name: str, hold: Hold, row: Row | None, now: datetime,
                   events: list[dict[str, Any]]) -> None:
    """Remember a hold the source lists as active: new, back after vanishing, reinstated, or changed."""
    content = _content(hold)
    if row is None:
        try:
            row_values = {"origin": name, "first_seen_at": now, **content}
            with state.db.begin() as conn:
                conn.execute(insert(SOURCE_HOLDS, row_values), row_values)
        except DuplicateKeyError:
            return  # another process remembered it first, and journalled it
        events.append({"event": "hold-placed", "hold": hold.id, "origin": name, "kind": hold.kind,
                       "scope": hold.scope.as_dict(), "reason": hold.reason, "by": hold.placed_by or f"source {name}"})
        return
    if row.released_at is not None:
        if _update(state, name, hold.id, {**content, "released_at": None, "released_by": None,
                                          "release_reason": None, "vanished_at": None}, released=True):
            events.append({"event": "hold-reinstated", "hold": hold.id, "origin": name, "by": f"source {name}",
                           "reason": f"listed as active again by source {name} after its release by "
                                     f"{row.released_by}"})
        return
    if row.vanished_at is not None:
        if _update(state, name, hold.id, {**content, "vanished_at": None}, released=False, vanished=True):
            events.append({"event": "hold-listed-again", "hold": hold.id, "origin": name})
        return
    if any(getattr(row, k) != v for k, v in content.items() if k != "placed_at"):
        if _update(state, name, hold.id, content, released=False, vanished=False):
            events.append({"event": "hold-changed", "hold": hold.id, "origin": name, "kind": hold.kind,
                           "scope": hold.scope.as_dict(), "reason": hold.reason})


def _released_by_source(state: StateStore, name: str, hold: Hold, row: Row | None, now: datetime,
                        events: list[dict[str, Any]]) -> Hold:
    """A hold the source lists as released: remembered released, journalled once."""
    released = replace(hold, released_at=now, released_by=f"source {name}",
                       release_reason=f"released by source {name}")
    values = {"released_at": released.released_at, "released_by": released.released_by,
              "release_reason": released.release_reason}
    if row is None:
        try:
            row_values = {"origin": name, "first_seen_at": now, **_content(hold), **values}
            with state.db.begin() as conn:
                conn.execute(insert(SOURCE_HOLDS, row_values), row_values)
        except DuplicateKeyError:
            return released
    elif row.released_at is None:
        if not _update(state, name, hold.id, {**values, "vanished_at": None}, released=False):
            return released
    else:
        return _row_hold(row)
    events.append({"event": "hold-released", "hold": hold.id, "origin": name, "by": f"source {name}",
                   "reason": f"released by source {name}"})
    return released


def _content(hold: Hold) -> dict[str, Any]:
    return {"id": hold.id, "kind": hold.kind, "scope_subject": hold.scope.subject,
            "scope_category": hold.scope.category, "scope_source": hold.scope.source, "reason": hold.reason,
            "placed_by": hold.placed_by or "", "placed_at": hold.placed_at}


def _update(state: StateStore, name: str, hold_id: str, values: dict[str, Any], *, released: bool,
            vanished: bool | None = None) -> bool:
    """Update the remembered hold only if it is still as read (released or not, vanished or not):
    of two processes noticing the same change, one journals it."""
    where = ["origin = :where_origin", "id = :where_id",
             "released_at IS NOT NULL" if released else "released_at IS NULL"]
    if vanished is not None:
        where.append("vanished_at IS NOT NULL" if vanished else "vanished_at IS NULL")
    unknown = set(values) - set(SOURCE_HOLDS.by_name)
    if unknown:
        raise ValueError(f"retention_source_holds has no column {', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    with state.db.begin() as conn:
        return conn.execute(f"UPDATE retention_source_holds SET {assignments} WHERE {' AND '.join(where)}",
                            {**values, "where_origin": name, "where_id": hold_id}).rowcount == 1


def _row_hold(row: Row) -> Hold:
    return Hold(id=row.id, kind=row.kind,
                scope=HoldScope(subject=row.scope_subject, category=row.scope_category, source=row.scope_source),
                reason=row.reason, placed_by=row.placed_by, placed_at=utc(row.placed_at),
                released_at=utc(row.released_at), released_by=row.released_by, release_reason=row.release_reason,
                origin=row.origin, vanished_at=utc(row.vanished_at))


# -- a person's release ---------------------------------------------------------------------------------------
def release_hold(state: StateStore, hold_id: str, reason: str, *, by: str | None = None,
                 read_sources: Callable[[], object] = lambda: None) -> Hold:
    """Release *hold_id*: the state store's own hold, else a hold that vanished from its source.

    A hold its source still lists as active is refused: the source would list it again at once,
    and the case system, not this tool, is where it ends. *read_sources* (``Runtime.holds``) is
    called first for a source's hold, so that whether it vanished is known now.
    """
    with state.db.connect() as conn:
        own = conn.execute("SELECT id FROM retention_holds WHERE id = :id", {"id": hold_id}).first()
    if own:
        return state.release_hold(hold_id, reason, by=by)
    read_sources()
    with state.db.connect() as conn:
        rows = conn.execute("SELECT * FROM retention_source_holds WHERE id = :id", {"id": hold_id}).all()
    if not rows:
        return state.release_hold(hold_id, reason, by=by)  # its error: no such hold
    if len(rows) > 1:
        raise ConfigError(f"hold {hold_id!r} comes from several hold sources ({', '.join(r.origin for r in rows)}): "
                          "release it in each source", key="HOLD_ID")
    row = rows[0]
    if row.released_at is not None:
        raise ConfigError(f"hold {hold_id!r} was already released on {utc(row.released_at):%Y-%m-%d} by "
                          f"{row.released_by}", key="HOLD_ID")
    if row.vanished_at is None:
        raise ConfigError(f"hold {hold_id!r} is listed as active by hold source {row.origin!r}: release it there "
                          f"(status: {RELEASED}); only a hold that vanished from its source is released here",
                          key="HOLD_ID")
    who = by or actor()
    if not _update(state, row.origin, hold_id, {"released_at": datetime.now(timezone.utc), "released_by": who,
                                                "release_reason": reason}, released=False, vanished=True):
        raise ConfigError(f"hold {hold_id!r} changed while it was being released (its source listed it again, or "
                          "someone released it): look at `retention holds list`", key="HOLD_ID")
    with state.db.connect() as conn:
        return _row_hold(conn.execute("SELECT * FROM retention_source_holds WHERE origin = :origin AND id = :id",
                                      {"origin": row.origin, "id": hold_id}).one())
