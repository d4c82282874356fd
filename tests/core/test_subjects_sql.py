"""The ``sql`` subjects source (issue 20) on SQLite, PostgreSQL and MariaDB, through the CLI, and the
subject index that keeps memory flat for millions of subjects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention_core import Subject
from retention_core import subjects as subjects_module
from retention_core.subjects import SubjectIndex
from retention_core.testing import memory, require_service
from retention_core.testing.builders import PolicyBuilder

OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, str, str]]:
    """An engine, its URL and a fresh table name (``test_customers_…``), dropped afterwards."""
    url = f"sqlite:///{tmp_path / 'crm.db'}" if request.param == "sqlite" else URLS[request.param]
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
        available = True
    except Exception:
        available = False
    require_service(available, f"{request.param} at {url}")
    name = f"test_customers_{uuid.uuid4().hex[:8]}"
    yield engine, url, name
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}_v")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    engine.dispose()


def customers(engine: sa.Engine, name: str, rows: list[dict[str, Any]], *, ended: Any = None,
              minor: Any = None) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), sa.Column("customer_id", sa.String(64)),
                     sa.Column("brand", sa.String(64)), sa.Column("contract_end", ended or sa.Date()),
                     sa.Column("is_minor", minor or sa.Boolean()))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return table


def policy(builder: PolicyBuilder, store: str, url: str, table: str, **extra: Any) -> Path:
    subjects = {"source": "sql", "url": url, "table": table,
                "columns": {"subject_id": "customer_id", "controller": "brand", "service_ended_at": "contract_end",
                            "minor": "is_minor"}, **extra}
    return builder.write(categories={"account": {"retain": "30d", "after": "service_end"}},
                         sources=[{"name": "accounts", "backend": "memory", "options": {"store": store},
                                   "match": "(?P<subject>[^/]+)/.+", "category": "account"}],
                         subjects=subjects)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


ROWS = [
    {"customer_id": "acme", "brand": "acme-corp", "contract_end": date(2024, 1, 31), "is_minor": False},
    {"customer_id": "globex", "brand": "globex-inc", "contract_end": None, "is_minor": False},
    {"customer_id": "kid", "brand": "toys", "contract_end": None, "is_minor": True},
]


def test_subjects_from_a_crm_table_drive_a_run(retention_cli: Any, policy_builder: PolicyBuilder,
                                               memory_store: str, crm: tuple[sa.Engine, str, str]) -> None:
    engine, url, name = crm
    customers(engine, name, ROWS)
    for subject in ("acme", "globex", "kid", "stranger"):
        memory.seed(memory_store, f"{subject}/profile.json", OLD)
    path = policy(policy_builder, memory_store, url, name)
    assert "3 subjects" in ok(retention_cli("validate", "-c", path)).output
    ok(retention_cli("run", "-c", path))
    # acme's service ended long ago and kid is a minor: deleted; globex is active; stranger unknown: skipped
    assert sorted(memory.get_store(memory_store).items) == ["globex/profile.json", "stranger/profile.json"]
    ok(retention_cli("requests", "erase", "-c", path, "--subject", "globex", "--controller", "globex-inc"))


def test_a_view_and_url_variables(retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str,
                                  crm: tuple[sa.Engine, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, url, name = crm
    customers(engine, name, ROWS)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE VIEW {name}_v AS SELECT customer_id, brand FROM {name}")
    parsed = sa.make_url(url)
    monkeypatch.setenv("CRM_DB", parsed.database or "")
    templated = parsed.set(database="PLACEHOLDER").render_as_string(hide_password=False).replace(
        "PLACEHOLDER", "${CRM_DB}")
    path = policy_builder.write(
        categories={"account": {"retain": "30d"}},
        sources=[{"name": "accounts", "backend": "memory", "options": {"store": memory_store}, "category": "account"}],
        subjects={"source": "sql", "url": templated, "table": f"{name}_v", "columns": {"subject_id": "customer_id",
                                                                                         "controller": "brand"}})
    assert "3 subjects" in ok(retention_cli("validate", "-c", path)).output


@pytest.mark.parametrize("case", ["duplicate", "unparseable", "naive", "minor", "empty-id"])
def test_bad_rows_are_one_line_errors(retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str,
                                      crm: tuple[sa.Engine, str, str], case: str) -> None:
    engine, url, name = crm
    rows = [dict(r) for r in ROWS]
    ended: Any = None
    minor: Any = None
    extra: dict[str, Any] = {}
    if case == "duplicate":
        rows.append(dict(ROWS[0]))
        says = "subject 'acme' appears 2 times (column customer_id)"
    elif case == "unparseable":
        ended = sa.String(40)
        rows[1]["contract_end"] = "last tuesday"
        says = "row 2 (customer_id 'globex'): service_ended_at (column contract_end): expected an ISO date"
    elif case == "naive":
        ended = sa.DateTime()
        rows[0]["contract_end"] = datetime(2024, 1, 31, 17, 30)
        says = "service_ended_at (column contract_end): 2024-01-31 17:30:00 has no time zone"
    elif case == "minor":
        minor = sa.String(10)
        rows[2]["is_minor"] = "perhaps"
        says = "minor (column is_minor): expected true or false, found 'perhaps'"
    else:
        rows[0]["customer_id"] = None
        says = "subject_id (column customer_id) is empty"
    for row in rows:
        if isinstance(row.get("contract_end"), date) and case in ("unparseable",):
            row["contract_end"] = row["contract_end"].isoformat()
        if case == "minor" and isinstance(row["is_minor"], bool):
            row["is_minor"] = "yes" if row["is_minor"] else "no"
        if case == "naive" and type(row["contract_end"]) is date:
            row["contract_end"] = datetime.combine(row["contract_end"], datetime.min.time())
    customers(engine, name, rows, ended=ended, minor=minor)
    result = retention_cli("validate", "-c", policy(policy_builder, memory_store, url, name, **extra))
    assert result.exit_code == 2, result.output
    assert says in result.output and "subjects.table" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_declared_zone_reads_naive_timestamps(retention_cli: Any, policy_builder: PolicyBuilder,
                                                memory_store: str, crm: tuple[sa.Engine, str, str]) -> None:
    engine, url, name = crm
    customers(engine, name, [{"customer_id": "acme", "brand": "a", "contract_end": datetime(2024, 1, 31, 23, 30),
                              "is_minor": False}], ended=sa.DateTime())
    from retention_core.runtime import Runtime
    from retention_core.testing.fixtures import plugins_for

    with Runtime.open(policy(policy_builder, memory_store, url, name, timezone="Asia/Tokyo"), plugins_for(None)) as rt:
        assert rt.subjects["acme"].service_ended_at == datetime(2024, 1, 31, 14, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("options, says", [
    ({"columns": {"subject_id": "cust"}}, "subjects.columns.subject_id: table"),
    ({"columns": {"nickname": "brand"}}, "subjects.columns.nickname: unknown field"),
    ({"table": "no_such_table"}, "subjects.table: no table or view 'no_such_table'"),
    ({"url": "postgresql+psycopg://crm:${CRM_PASSWORD}@127.0.0.1/crm"}, "environment variable CRM_PASSWORD is not set"),
    ({"url": "not a url"}, "subjects.url: expected an SQLAlchemy URL"),
    ({"timezone": "Mars/Olympus"}, "subjects.timezone: expected an IANA time zone"),
    ({"typo": 1}, "subjects.typo: unknown key"),
])
def test_bad_options_are_one_line_errors(retention_cli: Any, policy_builder: PolicyBuilder, memory_store: str,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any],
                                         says: str) -> None:
    monkeypatch.delenv("CRM_PASSWORD", raising=False)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    customers(engine, "customers", ROWS)
    engine.dispose()
    path = policy(policy_builder, memory_store, "sqlite:///crm.db", "customers")  # relative to the policy
    text = path.read_text()
    import yaml

    data = yaml.safe_load(text)
    data["subjects"].update(options)
    path.write_text(yaml.safe_dump(data))
    result = retention_cli("validate", "-c", path)
    assert result.exit_code == 2 and says in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_csv_naive_datetimes_need_a_declared_zone(retention_cli: Any, policy_builder: PolicyBuilder,
                                                  memory_store: str) -> None:
    sources = [{"name": "accounts", "backend": "memory", "options": {"store": memory_store}, "category": "account"}]
    path = policy_builder.write(categories={"account": {"retain": "30d"}}, sources=sources,
                                subjects=[{"subject_id": "acme", "service_ended_at": "2024-01-31T17:30"}])
    result = retention_cli("validate", "-c", path)
    assert result.exit_code == 2 and "line 2: service_ended_at: 2024-01-31 17:30:00 has no time zone" in result.output
    import yaml

    data = yaml.safe_load(path.read_text())
    data["subjects"]["timezone"] = "UTC"
    path.write_text(yaml.safe_dump(data))
    ok(retention_cli("validate", "-c", path))


# -- the index -----------------------------------------------------------------------------------------
def test_the_subject_index_spills_to_disk_and_answers_like_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subjects_module, "SPILL_AT", 10)
    made = [Subject(f"s{i:03d}", controller=f"c{i % 3}", minor=i % 7 == 0,
                    service_ended_at=datetime(2024, 1, 1 + i % 28, tzinfo=timezone.utc) if i % 2 else None)
            for i in range(100)]
    index = SubjectIndex.build(iter(made))
    assert index.spilled and len(index) == 100
    assert dict(index) == {s.id: s for s in made}
    assert index.get("s042") == made[42] and "s042" in index and "nobody" not in index and index.get("nobody") is None
    assert list(index.values()) == sorted(made, key=lambda s: s.id)
    small = SubjectIndex.build(made[:5])
    assert not small.spilled and dict(small) == {s.id: s for s in made[:5]}
