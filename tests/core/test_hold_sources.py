"""Hold sources (issue 20): holds from a case system's export or database, read before every batch,
remembered so that a hold vanishing from its source never releases it, attributed to their source.

Through the CLI over the reference ``memory`` backend; storage is seeded and checked out of band.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core import Hold, HoldScope, Options, hookimpl
from retention_core.testing import memory, require_service
from retention_core.testing.builders import PolicyBuilder
from retention_core.testing.memory import InMemoryBackend

OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
HEADER = "id,kind,scope_subject,scope_category,scope_source,reason,placed_by,placed_at,status\n"
LH1 = "LH-1,legal,acme,,,Smith v. Acme,counsel,2026-01-05T09:00:00+00:00,active\n"
DH2 = "DH-2,dispute,globex,,,invoice 991,billing,,\n"

URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def seed(store: str, *subjects: str, per_subject: int = 2) -> None:
    for subject in subjects:
        for i in range(per_subject):
            memory.seed(store, f"{subject}/{i}.wav", OLD)


def remaining(store: str) -> list[str]:
    return sorted(memory.get_store(store).items)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def trail(folder: Path) -> list[dict[str, Any]]:
    path = folder / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def policy(builder: PolicyBuilder, store: str, *, backend: str = "memory", **top: Any) -> Path:
    top.setdefault("hold_sources", [{"source": "csv", "name": "legal", "path": "holds.csv"}])
    top.setdefault("limits", {"max_fraction": 1.0})  # these runs delete most of a source on purpose
    return builder.write(categories={"call": {"retain": "30d"}},
                         sources=[{"name": "calls", "backend": backend, "options": {"store": store},
                                   "match": "(?P<subject>[^/]+)/.+", "category": "call"}], **top)


@pytest.fixture
def holds_csv(tmp_path: Path) -> Path:
    path = tmp_path / "holds.csv"
    path.write_text(HEADER + LH1)
    return path


# -- attribution, protection ---------------------------------------------------------------------------
def test_holds_from_a_csv_source_protect_and_are_attributed_to_it(retention_cli: Any, policy_builder: PolicyBuilder,
                                                                   memory_store: str, holds_csv: Path) -> None:
    seed(memory_store, "acme", "globex")
    path = policy(policy_builder, memory_store)
    listed = ok(retention_cli("holds", "list", "-c", path)).output
    assert "LH-1" in listed and "(source legal)" in listed and "subject=acme" in listed
    out = ok(retention_cli("run", "-c", path)).output
    assert "hold LH-1 (legal, subject=acme, from source legal): protected 2 records" in out
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    placed = [e for e in trail(path.parent) if e["event"] == "hold-placed"]
    assert [(e["hold"], e["origin"], e["by"]) for e in placed] == [("LH-1", "legal", "counsel")]
    as_json = json.loads(ok(retention_cli("holds", "list", "-c", path, "--json")).output)
    assert [(h["id"], h["origin"], h["vanished_at"]) for h in as_json] == [("LH-1", "legal", None)]


# -- vanishing never releases -----------------------------------------------------------------------------
@pytest.mark.parametrize("export", [HEADER, HEADER + DH2], ids=["emptied", "truncated"])
def test_a_hold_that_vanishes_from_its_source_stays_in_force_until_a_person_releases_it(
        retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str, holds_csv: Path, export: str) -> None:
    seed(memory_store, "acme")
    path = policy(policy_builder, memory_store)
    ok(retention_cli("holds", "list", "-c", path))  # the source listed LH-1 once: remembered
    holds_csv.write_text(export)
    listed = ok(retention_cli("holds", "list", "-c", path, "--active")).output  # the first read that misses it
    assert "LH-1" in listed and "vanished from its source" in listed
    out = ok(retention_cli("run", "-c", path)).output
    assert "hold LH-1 (legal, subject=acme, from source legal (vanished from it" in out
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    vanished = [e for e in trail(path.parent) if e["event"] == "hold-vanished"]
    assert [(e["hold"], e["origin"]) for e in vanished] == [("LH-1", "legal")]  # journalled once
    ok(retention_cli("holds", "release", "-c", path, "LH-1", "--reason", "case closed, confirmed by counsel"))
    released = [e for e in trail(path.parent) if e["event"] == "hold-released"]
    assert [(e["hold"], e["origin"], e["by"], e["reason"]) for e in released] == [
        ("LH-1", "legal", "tester", "case closed, confirmed by counsel")]
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == []


def test_a_person_cannot_release_a_hold_its_source_still_lists(retention_cli: Any, policy_builder: PolicyBuilder,
                                                              memory_store: str, holds_csv: Path) -> None:
    path = policy(policy_builder, memory_store)
    result = retention_cli("holds", "release", "-c", path, "LH-1", "--reason", "oops")
    assert result.exit_code == 2
    assert "listed as active by hold source 'legal': release it there (status: released)" in result.output


def test_only_status_released_in_the_source_releases_a_hold(retention_cli: Any, policy_builder: PolicyBuilder,
                                                            memory_store: str, holds_csv: Path) -> None:
    seed(memory_store, "acme")
    path = policy(policy_builder, memory_store)
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    holds_csv.write_text(HEADER + LH1.replace(",active", ",released"))
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == []
    released = [e for e in trail(path.parent) if e["event"] == "hold-released"]
    assert [(e["hold"], e["origin"], e["reason"]) for e in released] == [
        ("LH-1", "legal", "released by source legal")]
    listed = ok(retention_cli("holds", "list", "-c", path)).output
    assert "released" in listed and "by source legal: released by source legal" in listed


def test_a_hold_listed_again_after_its_release_is_in_force_again(retention_cli: Any, policy_builder: PolicyBuilder,
                                                                 memory_store: str, holds_csv: Path) -> None:
    seed(memory_store, "acme")
    path = policy(policy_builder, memory_store)
    ok(retention_cli("holds", "list", "-c", path))
    holds_csv.write_text(HEADER)
    ok(retention_cli("holds", "list", "-c", path))
    ok(retention_cli("holds", "release", "-c", path, "LH-1", "--reason", "gone from the export"))
    holds_csv.write_text(HEADER + LH1)  # the case system lists it again: the source is believed
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    assert any(e["event"] == "hold-reinstated" for e in trail(path.parent))


def test_a_source_dropped_from_the_policy_leaves_its_holds_in_force(retention_cli: Any,
                                                                   policy_builder: PolicyBuilder,
                                                                   memory_store: str, holds_csv: Path) -> None:
    seed(memory_store, "acme")
    ok(retention_cli("holds", "list", "-c", policy(policy_builder, memory_store)))
    path = policy(policy_builder, memory_store, hold_sources=[])
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]


# -- a source that cannot be read stops the run -------------------------------------------------------------
@pytest.mark.parametrize("content, says", [
    ("", "missing column id"),
    (HEADER + "LH-1,legal,acme,,,case,,,maybe\n", "status: expected active, released or empty, found 'maybe'"),
    (HEADER + "LH-1,legal,,,,case,,,\n", "expected at least one of scope_subject"),
    (HEADER + "LH-1,legal,,nope,,case,,,\n", "hold 'LH-1': unknown category 'nope'"),
    (HEADER + LH1 + LH1, "lists hold 'LH-1' twice"),
    (HEADER + "LH-1,legal,acme,,,case,,2026-01-05 09:00,\n", "placed_at: 2026-01-05 09:00:00 has no time zone"),
    (HEADER + '"LH-1,legal,acme,,,case,,,\n', "not a readable CSV file"),
], ids=["empty", "status", "no-scope", "category", "twice", "naive", "quote"])
def test_a_hold_source_that_cannot_be_read_stops_the_run_before_anything_is_deleted(
        retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str, holds_csv: Path,
        content: str, says: str) -> None:
    seed(memory_store, "acme", "globex")
    holds_csv.write_text(content)
    result = retention_cli("run", "-c", policy(policy_builder, memory_store))
    assert result.exit_code == 2, result.output
    assert says in result.output and ("holds.csv" in result.output or "hold source 'legal'" in result.output)
    assert "Traceback" not in result.output
    assert len(remaining(memory_store)) == 4


def test_a_missing_hold_file_is_an_error_not_no_holds(retention_cli: Any, policy_builder: PolicyBuilder,
                                                      memory_store: str) -> None:
    seed(memory_store, "acme")
    result = retention_cli("run", "-c", policy(policy_builder, memory_store))
    assert result.exit_code == 2 and "hold_sources[0].path: expected an existing CSV file" in result.output
    assert len(remaining(memory_store)) == 2


# -- re-read before every batch ---------------------------------------------------------------------------
class OneByOne(InMemoryBackend):
    name = "onebyone"
    batch_size = 1


class CaseSystem:
    """Once ``armed``, counsel's export gains a hold on acme when the run's first batch is deleted;
    or, with ``break_it``, the export becomes unreadable then."""

    def __init__(self, csv_path: Path) -> None:
        self.csv_path, self.armed, self.break_it, self.batches = csv_path, False, False, 0

    @hookimpl
    def retention_register_backends(self, register: Any) -> None:
        register(OneByOne)

    @hookimpl
    def retention_after_delete(self, outcomes: Any, context: Any) -> None:
        self.batches += 1
        if self.armed and self.batches == 1:
            self.csv_path.write_text("garbage\n" if self.break_it else HEADER + LH1)


@pytest.fixture
def case_system(tmp_path: Path) -> CaseSystem:
    return CaseSystem(tmp_path / "holds.csv")


@pytest.fixture
def retention_plugin(case_system: CaseSystem) -> Any:
    return case_system


def test_a_hold_added_to_the_csv_between_two_batches_protects_the_rest_of_the_run(
        retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str, case_system: CaseSystem) -> None:
    case_system.csv_path.write_text(HEADER)
    case_system.armed = True
    seed(memory_store, "acme", per_subject=4)
    path = policy(policy_builder, memory_store, backend="onebyone")
    ok(retention_cli("run", "-c", path, "--report", path.parent / "run.json"))
    assert len(remaining(memory_store)) == 3  # one batch of one record went before the hold
    items = json.loads((path.parent / "run.json").read_text())["items"]
    assert sorted((i["decision"], tuple(i["holds"])) for i in items) == [("delete", ())] + [("hold", ("LH-1",))] * 3
    placed = [e for e in trail(path.parent) if e["event"] == "hold-placed"]
    assert [(e["hold"], e["origin"]) for e in placed] == [("LH-1", "legal")]


def test_a_source_that_breaks_mid_run_stops_the_run_before_the_next_batch(
        retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str, case_system: CaseSystem) -> None:
    case_system.csv_path.write_text(HEADER)
    case_system.armed = case_system.break_it = True
    seed(memory_store, "acme", per_subject=4)
    result = retention_cli("run", "-c", policy(policy_builder, memory_store, backend="onebyone"))
    assert result.exit_code == 2 and "hold source 'legal'" in result.output
    assert len(remaining(memory_store)) == 3


# -- plugins: options, and the deprecated form --------------------------------------------------------------
class CounselSystem:
    """A third-party hold source with options."""

    @hookimpl
    def retention_register_hold_sources(self, register: Any) -> None:
        def factory(options: Options) -> Any:
            matter = options.str("matter")
            options.done()
            return lambda: [Hold(f"M-{matter}", "legal", HoldScope(subject="acme"), f"matter {matter}")]

        register("counsel", factory)


@pytest.mark.parametrize("retention_plugin", [CounselSystem()])
def test_a_plugin_hold_source_receives_its_options(retention_cli: Any, policy_builder: PolicyBuilder,
                                                   memory_store: str) -> None:
    seed(memory_store, "acme")
    path = policy(policy_builder, memory_store, hold_sources=[{"source": "counsel", "matter": "77"}])
    assert "M-77" in ok(retention_cli("holds", "list", "-c", path)).output
    ok(retention_cli("run", "-c", path))
    assert len(remaining(memory_store)) == 2
    bad = retention_cli("run", "-c", policy(policy_builder, memory_store,
                                            hold_sources=[{"source": "counsel", "matter": "7", "typo": 1}]))
    assert bad.exit_code == 2 and "hold_sources[0].typo: unknown key" in bad.output
    unknown = retention_cli("validate", "-c", policy(policy_builder, memory_store, hold_sources=[{"source": "nope"}]))
    assert unknown.exit_code == 2 and "hold_sources[0].source: unknown hold source 'nope'" in unknown.output


class OldStyle:
    @hookimpl
    def retention_register_hold_sources(self, register: Any) -> None:
        register("old", lambda: [Hold("EXT-7", "legal", HoldScope(subject="acme"), "external")])


@pytest.mark.parametrize("retention_plugin", [OldStyle()])
def test_a_no_argument_provider_still_holds_and_is_remembered(retention_cli: Any, policy_builder: PolicyBuilder,
                                                              memory_store: str) -> None:
    seed(memory_store, "acme")
    path = policy(policy_builder, memory_store, hold_sources=None)
    out = ok(retention_cli("holds", "list", "-c", path)).output
    assert "EXT-7" in out and "(source old)" in out
    ok(retention_cli("run", "-c", path))
    assert len(remaining(memory_store)) == 2


def test_registering_a_no_argument_provider_warns_naming_the_plugin() -> None:
    from retention_core.registry import HoldSourceRegistry

    registry = HoldSourceRegistry().for_plugin("acme-holds")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry("old", lambda: [])
        registry("new", lambda options: (lambda: []))
    assert [str(w.message).split(" registers")[0] for w in caught] == ["plugin 'acme-holds'"]
    assert registry.legacy() == ["old"]


@pytest.mark.parametrize("entries, says", [
    ([{"name": "x", "path": "holds.csv"}], "hold_sources[0].source: is required"),
    ([{"source": "csv", "path": "holds.csv"}, {"source": "csv", "path": "holds.csv"}],
     "hold_sources[1].name: duplicate hold source name 'csv'"),
    ([{"source": "csv", "name": "state", "path": "holds.csv"}], "hold_sources[0].name: 'state' names the holds"),
    ({"source": "csv"}, "hold_sources: expected a list of hold sources"),
])
def test_hold_sources_in_the_policy_are_checked(retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str,
                                               holds_csv: Path, entries: Any, says: str) -> None:
    result = retention_cli("validate", "-c", policy(policy_builder, memory_store, hold_sources=entries))
    assert result.exit_code == 2 and says in result.output, result.output


# -- the sql hold source on SQLite, PostgreSQL and MariaDB ---------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def case_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A URL and a fresh table name (``test_holds_…``) dropped afterwards."""
    url = f"sqlite:///{tmp_path / 'cases.db'}" if request.param == "sqlite" else URLS[request.param]
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
        available = True
    except Exception:
        available = False
    require_service(available, f"{request.param} at {url}")
    table = f"test_holds_{uuid.uuid4().hex[:8]}"
    yield url, table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def test_sql_hold_source_with_mapped_columns_through_the_cli(retention_cli: Any, policy_builder: PolicyBuilder,
                                                             memory_store: str, case_db: tuple[str, str]) -> None:
    url, name = case_db
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = sa.Table(name, md, sa.Column("case_ref", sa.String(64), primary_key=True),
                     sa.Column("kind", sa.String(20)), sa.Column("customer", sa.String(100)),
                     sa.Column("reason", sa.String(200)), sa.Column("opened", sa.DateTime()),
                     sa.Column("state", sa.String(20)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"case_ref": "LH-1", "kind": "legal", "customer": "acme", "reason": "Smith v. Acme",
             "opened": datetime(2026, 1, 5, 9), "state": "active"},
            {"case_ref": "LH-2", "kind": "legal", "customer": "globex", "reason": "closed case",
             "opened": None, "state": "released"}])
    seed(memory_store, "acme", "globex", "initech")
    path = policy(policy_builder, memory_store, hold_sources=[{
        "source": "sql", "name": "cases", "url": url, "table": name, "timezone": "Europe/Berlin",
        "columns": {"id": "case_ref", "scope_subject": "customer", "placed_at": "opened", "status": "state"}}])
    listed = ok(retention_cli("holds", "list", "-c", path)).output
    assert "LH-1" in listed and "(source cases)" in listed
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    with engine.begin() as conn:
        conn.execute(table.delete())  # the table emptied: nothing is released by that
    seed(memory_store, "globex")
    ok(retention_cli("run", "-c", path))
    assert remaining(memory_store) == ["acme/0.wav", "acme/1.wav"]
    assert "vanished" in ok(retention_cli("holds", "list", "-c", path)).output
    engine.dispose()


def test_sql_hold_source_errors_are_one_line(retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str,
                                             case_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, name = case_db
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (id VARCHAR(64), kind VARCHAR(20), reason VARCHAR(200))")
    engine.dispose()
    monkeypatch.delenv("CASES_PASSWORD", raising=False)
    for entry, says in [
        ({"table": name}, f"table {name!r}"),  # no scope column
        ({"table": name + "_nope"}, f"no table or view {name + '_nope'!r}"),
        ({"table": name, "columns": {"scope_subject": "customer"}}, "has no column 'customer' for scope_subject"),
        ({"table": name, "url": "postgresql+psycopg://u:${CASES_PASSWORD}@h/db"},
         "environment variable CASES_PASSWORD is not set"),
    ]:
        path = policy(policy_builder, memory_store, hold_sources=[{"source": "sql", "url": url, **entry}])
        result = retention_cli("validate", "-c", path)
        assert result.exit_code == 2 and says in result.output, result.output
        assert "hold_sources[0]" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("retention_plugin", [OldStyle()])
def test_an_entry_cannot_take_the_name_of_a_provider_read_on_every_run(
        retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str, holds_csv: Path) -> None:
    path = policy(policy_builder, memory_store, hold_sources=[{"source": "csv", "name": "old", "path": "holds.csv"}])
    result = retention_cli("holds", "list", "-c", path)
    assert result.exit_code == 2 and "hold_sources[0].name: 'old' is also the name" in result.output


class Oversized:
    @hookimpl
    def retention_register_hold_sources(self, register: Any) -> None:
        register("big", lambda: [Hold("X-1", "legal", HoldScope(subject="s" * 501), "too long for the store")])


@pytest.mark.parametrize("retention_plugin", [Oversized()])
def test_a_plugin_hold_the_state_store_cannot_keep_stops_the_run(retention_cli: Any, policy_builder: PolicyBuilder,
                                                                 memory_store: str) -> None:
    seed(memory_store, "acme")
    result = retention_cli("run", "-c", policy(policy_builder, memory_store, hold_sources=None))
    assert result.exit_code == 2
    assert "hold source 'big': hold 'X-1': scope_subject: expected at most 500 characters" in result.output
    assert len(remaining(memory_store)) == 2


def test_a_hold_id_a_source_lists_cannot_be_placed_again(retention_cli: Any, policy_builder: PolicyBuilder,
                                                         memory_store: str) -> None:
    """Adversary 2: `holds place --id LH-1` was accepted while a hold source listed LH-1, and
    `holds release LH-1` then released the wrong one; the source's could never be released."""
    path = policy(policy_builder, memory_store)
    (path.parent / "holds.csv").write_text(HEADER + LH1)
    assert retention_cli("holds", "list", "-c", path).exit_code == 0
    again = retention_cli("holds", "place", "-c", path, "--id", "LH-1", "--kind", "legal", "--reason", "r",
                          "--subject", "globex")
    assert again.exit_code == 2 and "already exists (from legal)" in again.output
