"""The ``where:`` option: a source governs only the rows its filter selects, in every statement.

A table that mixes records under different rules (closed and open cases, EU and US rows) is
split into sources by a structured filter on reflected columns. A row outside the filter must
never be listed, counted, deleted or anonymized, on the per-record path and on the set-based
one, and a misspelt column or a value of the wrong type is a one-line config error.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import retention_sql
from retention_core import Context, Options, Problem, PushdownPlan, Record, Status, Survey
from retention_core.audit import records as trail_records
from retention_core.engine import cutoffs
from retention_core.testing.builders import PolicyBuilder
from retention_sql.backend import SqlBackend

from .conftest import Database
from .scenarios import NOW, category

UTC = timezone.utc
OLD = NOW - timedelta(days=3 * 365)  # due under a two-year rule
NEW = NOW - timedelta(days=30)  # not due


@pytest.fixture
def retention_plugin() -> Any:
    return retention_sql


class Cases:
    """A table of cases with a status and a region: key, subject, created, status, region, amount."""

    def __init__(self, db: Database) -> None:
        self.db = db
        created = db.aware_timestamp() or db.naive_timestamp()
        self.table = db.table(
            db.name("cases"),
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("subject", sa.String(64), nullable=True),
            sa.Column("created", created, nullable=True),
            sa.Column("status", sa.String(20), nullable=True),
            sa.Column("region", sa.String(8), nullable=True),
            sa.Column("amount", sa.Integer(), nullable=True),
            sa.Column("email", sa.String(100), nullable=True))
        self.naive = db.aware_timestamp() is None
        self.options: dict[str, Any] = {"url": db.url, "table": str(self.table.name), "key": "id",
                                        "subject": "subject", "created": "created", "batch_size": 3}
        if self.naive:
            self.options["timezone"] = "UTC"

    def add(self, *rows: tuple[int, datetime | None, str | None, str | None]) -> None:
        """Rows of (key, created, status, region), each its own subject."""
        def when(value: datetime | None) -> datetime | None:
            return value.replace(tzinfo=None) if value is not None and self.naive else value
        self.db.insert(self.table, [{"id": k, "subject": f"s{k}", "created": when(c), "status": st, "region": r,
                                     "amount": k, "email": f"u{k}@example.com"} for k, c, st, r in rows])

    def keys(self) -> set[int]:
        return set(self.db.column(self.table, "id"))

    def backend(self, where: Any, **extra: Any) -> SqlBackend:
        return SqlBackend(Options({**self.options, "where": where, **extra}, where="sources[0].options"))


def context() -> Context:
    cat = category()
    return Context(now=NOW, categories={cat.name: cat}, subjects={})


def source() -> Any:
    from retention_core import Source

    return Source(name="cases", backend="sql", category=category().name)


def listed(backend: SqlBackend) -> tuple[set[int], set[int]]:
    """(record keys, problem keys) a scan lists."""
    items = list(backend.scan(source()))
    return ({int(r.location) for r in items if isinstance(r, Record)},
            {int(p.location) for p in items if isinstance(p, Problem)})


@pytest.fixture
def cases(db: Database) -> Cases:
    table = Cases(db)
    table.add((1, OLD, "closed", "eu"), (2, OLD, "open", "eu"), (3, NEW, "closed", "eu"),
              (4, OLD, "cancelled", "us"), (5, OLD, None, "eu"), (6, None, "closed", "eu"),
              (7, None, "open", "eu"), (8, OLD, "CLOSED", "eu"), (9, OLD, "closed ", "us"))
    return table


@pytest.mark.parametrize(("where", "records", "problems"), [
    ({"status": "closed"}, {1, 3}, {6}),
    ({"status": ["closed", "cancelled"]}, {1, 3, 4}, {6}),
    ({"status": ["closed", "cancelled"], "region": "eu"}, {1, 3}, {6}),
    ({"status": None}, {5}, set()),
    ({"status": ["open", None]}, {2, 5}, {7}),
    ({"status": {"not": "closed"}}, {2, 4, 5, 8, 9}, {7}),
    ({"status": {"not": ["closed", None]}}, {2, 4, 8, 9}, {7}),
    ({"amount": [1, 2, 4]}, {1, 2, 4}, set()),
])
def test_scan_lists_only_rows_inside_the_filter(cases: Cases, where: Any, records: set[int],
                                                problems: set[int]) -> None:
    """Records and problems alike: a NULL created outside the filter is not this source's problem;
    text is compared exactly (``CLOSED`` and ``closed `` are not ``closed``, even on MariaDB)."""
    with cases.backend(where) as backend:
        assert listed(backend) == (records, problems)


def test_survey_counts_only_rows_inside_the_filter(cases: Cases) -> None:
    ctx = context()
    with cases.backend({"status": "closed"}) as backend:
        got = backend.survey(source(), cutoffs(source(), ctx))
    assert got == Survey(total=2, due=1, held=0, problems=1)


def test_survey_of_a_held_source_counts_only_rows_inside_the_filter(cases: Cases) -> None:
    from .scenarios import hold

    cat = category()
    ctx = Context(now=NOW, categories={cat.name: cat}, subjects={}, holds=(hold("H", source="cases"),))
    with cases.backend({"status": ["closed", "open"]}) as backend:
        got = backend.survey(source(), cutoffs(source(), ctx))
    assert got == Survey(total=3, due=0, held=3, problems=2)


def test_push_down_deletes_only_due_rows_inside_the_filter(cases: Cases) -> None:
    plan = cutoffs(source(), context())
    with cases.backend({"status": ["closed", "cancelled"], "region": "eu"}) as backend:
        deleted = [o for batch in backend.push_down(source(), PushdownPlan(plan, lambda: plan)) for o in batch]
    assert {o.record.location for o in deleted} == {"1"}
    assert cases.keys() == {2, 3, 4, 5, 6, 7, 8, 9}


def test_per_record_delete_keeps_a_row_that_left_the_filter(cases: Cases) -> None:
    """Listed while closed, reopened before the delete: the guard sees it left the source (changed)."""
    with cases.backend({"status": "closed"}) as backend:
        records = sorted((r for r in backend.scan(source()) if isinstance(r, Record)), key=lambda r: r.location)
        cases.db.execute(f"UPDATE {cases.table.name} SET status = 'open' WHERE id = 1")
        outcomes = {o.record.location: o.status for o in backend.delete(records)}
    assert outcomes == {"1": Status.CHANGED, "3": Status.DELETED}
    assert 1 in cases.keys() and 3 not in cases.keys()


def test_per_record_anonymize_keeps_a_row_that_left_the_filter(cases: Cases) -> None:
    with cases.backend({"status": "closed"}, anonymize={"email": None}) as backend:
        records = [r for r in backend.scan(source()) if isinstance(r, Record)]
        cases.db.execute(f"UPDATE {cases.table.name} SET status = 'open' WHERE id = 1")
        outcomes = {o.record.location: o.status for o in backend.anonymize(records)}
    assert outcomes == {"1": Status.CHANGED, "3": Status.ANONYMIZED}
    emails = {k: r["email"] for k, r in cases.db.rows(cases.table).items()}
    assert emails[1] == "u1@example.com" and emails[3] is None


def test_push_down_anonymizes_only_rows_inside_the_filter(cases: Cases) -> None:
    from retention_core import Action

    cat = category(action=Action.ANONYMIZE)
    ctx = Context(now=NOW, categories={cat.name: cat}, subjects={})
    plan = cutoffs(source(), ctx)
    with cases.backend({"region": "us"}, anonymize={"email": None}) as backend:
        done = [o for batch in backend.push_down(source(), PushdownPlan(plan, lambda: plan)) for o in batch]
    assert {o.record.location for o in done} == {"4", "9"}
    emails = {k: r["email"] for k, r in cases.db.rows(cases.table).items()}
    assert [k for k, e in sorted(emails.items()) if e is None] == [4, 9]


@pytest.mark.parametrize(("where", "key", "text"), [
    ({"stauts": "closed"}, "where.stauts", "no column 'stauts' in table"),
    ({"amount": "12"}, "where.amount", "expected an integer for column 'amount'"),
    ({"amount": [1, True]}, "where.amount", "expected an integer"),
    ({"status": 7}, "where.status", "expected text for column 'status'"),
    ({"created": "2020-01-01"}, "where.created", "cannot be filtered on"),
])
def test_unknown_columns_and_wrong_types_are_config_errors(cases: Cases, where: Any, key: str, text: str) -> None:
    from retention_core import ConfigError

    with cases.backend(where) as backend, pytest.raises(ConfigError) as raised:
        backend.check(source())
    assert raised.value.key == f"sources[0].options.{key}" and text in str(raised.value)
    if "no column" in text:
        assert "'status'" in str(raised.value) and "'region'" in str(raised.value), "the table's columns are listed"


@pytest.mark.parametrize(("where", "text"), [
    ({}, "expected at least one column"),
    ({"status": []}, "expected at least one value"),
    ({"status": {"nott": "x"}}, "expected a value, a list of values or {not: …}"),
    ({"status": {"a": 1}}, "found a mapping"),
    ({"status": [["x"]]}, "expected text, a number, true/false or null"),
    ({"n": 99999999999999999999999}, "does not fit a 64-bit integer"),  # was an OverflowError mid-scan
    ({"n": {"not": [-(2 ** 63) - 1]}}, "does not fit a 64-bit integer"),
    ("status = 'closed'", "expected a mapping"),
])
def test_filter_shapes_are_checked_without_the_database(where: Any, text: str) -> None:
    from retention_core import ConfigError

    options = {"url": "sqlite:////nonexistent.db", "table": "t", "key": "id", "subject": "s", "created": "c",
               "where": where}
    with pytest.raises(ConfigError) as raised:
        SqlBackend(Options(options, where="sources[0].options"))
    assert str(raised.value.key).startswith("sources[0].options.where") and text in str(raised.value)


def test_two_sources_on_one_table_must_declare_their_overlap(cases: Cases, retention_cli: Any,
                                                              policy_builder: PolicyBuilder) -> None:
    """Filters do not change the territory: the core cannot be told two filters are disjoint,
    so two sources on one table are refused until ``overlaps:`` says so on purpose."""
    options = {k: v for k, v in cases.options.items()}
    sources = [{"name": "closed", "backend": "sql", "category": "cases",
                "options": {**options, "where": {"status": "closed"}}},
               {"name": "open", "backend": "sql", "category": "cases",
                "options": {**options, "where": {"status": "open"}}}]
    categories = {"cases": {"retain": "2y", "after": "created"}}
    refused = retention_cli("validate", "-c", policy_builder.write(categories=categories, sources=sources))
    assert refused.exit_code == 2 and "overlaps: [closed]" in refused.output, refused.output
    sources[1]["overlaps"] = ["closed"]
    accepted = retention_cli("validate", "-c", policy_builder.write(categories=categories, sources=sources))
    assert accepted.exit_code == 0, accepted.output


def test_cli_run_deletes_only_closed_due_rows(cases: Cases, retention_cli: Any, policy_builder: PolicyBuilder,
                                              tmp_path: Path) -> None:
    """A match-less source with ``where: {status: closed}``: the dry run lists, and the enforcing
    (set-based) run deletes, only closed rows that are due; open ones stay, due or not."""
    recent = datetime.now(UTC) - timedelta(days=30)
    old = datetime.now(UTC) - timedelta(days=3 * 365)
    cases.db.execute(f"DELETE FROM {cases.table.name}")
    cases.add((1, old, "closed", "eu"), (2, old, "open", "eu"), (3, recent, "closed", "eu"),
              (4, old, "open", "us"), (5, old, "closed", "us"))
    options = {k: v for k, v in cases.options.items() if k != "batch_size"}
    policy = policy_builder.write(
        categories={"cases": {"retain": "2y", "after": "created"}},
        sources=[{"name": "closed_cases", "backend": "sql", "category": "cases",
                  "options": {**options, "batch_size": 2, "where": {"status": "closed"}}}],
        limits={"max_fraction": 1.0})
    assert retention_cli("validate", "-c", policy).exit_code == 0

    dry = tmp_path / "dry.json"
    result = retention_cli("run", "-c", policy, "--dry-run", "--report", dry)
    assert result.exit_code == 0, result.output
    items = json.loads(dry.read_text())["items"]
    assert {i["location"]: i["decision"] for i in items} == {"1": "delete", "3": "keep", "5": "delete"}
    assert cases.keys() == {1, 2, 3, 4, 5}

    result = retention_cli("run", "-c", policy)
    assert result.exit_code == 0, result.output
    assert cases.keys() == {2, 3, 4}
    audit = list(trail_records(tmp_path / "audit.jsonl"))
    assert any(e.get("event") == "intent" and "set-based" in (e.get("reason") or "") for e in audit), \
        "the push-down path ran"
    assert {e["location"] for e in audit if e.get("event") == "outcome" and e.get("outcome") == "deleted"} \
        == {"1", "5"}


def test_cli_config_error_names_the_filter_key(cases: Cases, retention_cli: Any,
                                               policy_builder: PolicyBuilder) -> None:
    policy = policy_builder.write(categories={"cases": {"retain": "2y"}},
                                  sources=[{"name": "c", "backend": "sql", "category": "cases",
                                            "options": {**cases.options, "where": {"amount": "many"}}}])
    for args in (("validate", "-c", policy), ("run", "-c", policy, "--dry-run"), ("run", "-c", policy)):
        result = retention_cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        errors = [ln for ln in result.output.splitlines() if ln.startswith("retention: error:")]
        assert len(errors) == 1 and "sources[0].options.where.amount" in errors[0], result.output


def test_the_filter_is_part_of_the_fingerprint_not_the_territory(cases: Cases) -> None:
    """Recovery reads an absence as a deletion only under the same fingerprint: a source whose
    filter changed lists other rows, so its fingerprint must change; the same filter written in
    another order is the same source."""
    with cases.backend({"status": ["closed", "cancelled"], "region": "eu"}) as one, \
            cases.backend({"region": "eu", "status": ["cancelled", "closed"]}) as same, \
            cases.backend({"status": "closed"}) as other, \
            SqlBackend(Options(cases.options, where="sources[0].options")) as unfiltered:
        s = source()
        assert one.territory(s) == other.territory(s) == unfiltered.territory(s)
        assert one.fingerprint(s) == same.fingerprint(s)
        assert len({one.fingerprint(s), other.fingerprint(s), unfiltered.fingerprint(s)}) == 3
        assert unfiltered.fingerprint(s) == unfiltered.territory(s)


def test_boolean_and_numeric_columns(db: Database) -> None:
    """``true``/``false`` for a boolean column (MariaDB's BOOLEAN is TINYINT(1): 0/1), numbers for
    a numeric one; a boolean where a number belongs is refused rather than read as 1."""
    from retention_core import ConfigError

    created = db.aware_timestamp() or db.naive_timestamp()
    table = db.table(db.name("flags"), sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
                     sa.Column("subject", sa.String(64)), sa.Column("created", created),
                     sa.Column("archived", sa.Boolean()), sa.Column("score", sa.Numeric(6, 2)))
    when = OLD.replace(tzinfo=None) if db.aware_timestamp() is None else OLD
    db.insert(table, [{"id": k, "subject": "s", "created": when, "archived": k % 2 == 0, "score": k / 2}
                      for k in range(1, 7)])
    options = {"url": db.url, "table": str(table.name), "key": "id", "subject": "subject", "created": "created"}
    if db.aware_timestamp() is None:
        options["timezone"] = "UTC"

    def keys(where: Any) -> set[int]:
        with SqlBackend(Options({**options, "where": where}, where="sources[0].options")) as backend:
            return listed(backend)[0]

    archived = 1 if db.kind == "mariadb" else True
    assert keys({"archived": archived}) == {2, 4, 6}
    assert keys({"score": [0.5, 2.5, 3]}) == {1, 5, 6}
    with pytest.raises(ConfigError, match="expected a number"):
        keys({"score": True})
    with pytest.raises(ConfigError, match="where.archived"):
        keys({"archived": "yes"})


def test_a_driver_failing_to_connect_in_its_own_way_is_one_line(tmp_path: Any) -> None:
    """Adversarial review F05: pymysql answers a bad charset with an AttributeError; it is still
    'cannot reach', naming the option, never an internal error."""
    from retention_core import ConfigError

    pytest.importorskip("pymysql")
    options = {"url": "mysql+pymysql://root@127.0.0.1:1/test?charset=bogus", "table": "t", "key": "id",
               "subject": "s", "created": "c"}
    backend = SqlBackend(Options(options, where="sources[0].options"))
    with pytest.raises(ConfigError) as raised:
        backend.check(source())
    assert raised.value.key == "sources[0].options.url" and "cannot reach" in str(raised.value)
    assert "\n" not in str(raised.value)
