"""Options and schema checks: every bad name is a config error naming its key, nothing runs."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from retention_core import ConfigError, Options, Source
from retention_sql.backend import SqlBackend

from .conftest import Database, Records, records_table

SOURCE = Source(name="records", backend="sql", category="transcripts", index=1)
BASE = {"url": "sqlite:///nowhere.db", "table": "t", "key": "id", "subject": "subject", "created": "created"}


def make(options: dict[str, Any]) -> SqlBackend:
    return SqlBackend(Options(options, where="sources[1].options"))


@pytest.mark.parametrize(("change", "key", "text"), [
    ({"table": None}, "sources[1].options.table", "is required"),
    ({"batch_size": 0}, "sources[1].options.batch_size", ">= 1"),
    ({"timezone": "Mars/Olympus"}, "sources[1].options.timezone", "IANA time zone"),
    ({"anonymize": {"id": None}}, "sources[1].options.anonymize.id", "key column cannot be anonymized"),
    ({"anonymize": {"created": "hash"}, "hash_key_env": "K"}, "sources[1].options.anonymize.created",
     "created column cannot be anonymized"),
    ({"anonymize": {"name": "hash"}}, "sources[1].options.hash_key_env", "is required"),
    ({"anonymize": {"name": ["a"]}}, "sources[1].options.anonymize.name", "expected null, hash or a literal"),
    ({"hash_key_env": "not a name"}, "sources[1].options.hash_key_env", "environment variable name"),
    ({"created": "id"}, "sources[1].options.created", "its own column"),
    ({"version_column": "id"}, "sources[1].options.version_column", "not the key column"),
    ({"url": "not a url"}, "sources[1].options.url", "SQLAlchemy URL"),
    ({"url": "nosuchdb://x/y"}, "sources[1].options.url", "unknown database dialect"),
    ({"typo": 1}, "sources[1].options.typo", "unknown key"),
])
def test_bad_options_name_their_key(change: dict[str, Any], key: str, text: str) -> None:
    options = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        make(options)
    assert caught.value.key == key
    assert text in str(caught.value)


def test_init_does_not_touch_the_database(tmp_path: Any) -> None:
    path = tmp_path / "missing.db"
    make({**BASE, "url": f"sqlite:///{path}"})
    assert not path.exists()


def test_a_missing_sqlite_file_is_an_error_not_a_new_database(tmp_path: Any) -> None:
    path = tmp_path / "missing.db"
    backend = make({**BASE, "url": f"sqlite:///{path}"})
    with pytest.raises(ConfigError, match="no SQLite database file") as caught:
        backend.check(SOURCE)
    assert caught.value.key == "sources[1].options.url" and not path.exists()


def test_relative_sqlite_paths_are_relative_to_the_config(tmp_path: Any) -> None:
    options = Options({**BASE, "url": "sqlite:///data/records.db"}, base_dir=tmp_path, where="o")
    backend = SqlBackend(options)
    assert backend.engine.url.database == str(tmp_path / "data" / "records.db")


def test_unreachable_server_is_a_config_error_naming_the_url_without_password() -> None:
    pytest.importorskip("psycopg")
    backend = make({**BASE, "url": "postgresql+psycopg://u:s3cret@127.0.0.1:1/db?connect_timeout=2"})
    with pytest.raises(ConfigError) as caught:
        backend.check(SOURCE)
    assert caught.value.key == "sources[1].options.url"
    assert "s3cret" not in str(caught.value) and "cannot reach" in str(caught.value)
    [warning] = backend.warnings(SOURCE)  # validate still works offline, and says why it could not check
    assert "could not inspect table 't'" in warning and "s3cret" not in warning


def _options(records: Records, **change: Any) -> dict[str, Any]:
    return {k: v for k, v in {**records.options, **change}.items() if v is not None}


@pytest.mark.parametrize(("change", "key", "text"), [
    ({"table": "nope"}, "table", "no table 'nope'"),
    ({"key": "nope"}, "key", "no column 'nope'"),
    ({"subject": "nope"}, "subject", "no column 'nope'"),
    ({"created": "nope"}, "created", "no column 'nope'"),
    ({"created": "score"}, "created", "expected a timestamp column"),
    ({"key": "email"}, "key", "neither the primary key nor unique"),
    ({"anonymize": {"nope": None}}, "anonymize.nope", "no column 'nope'"),
    ({"anonymize": {"email": None}}, "anonymize.email", "NOT NULL"),
    ({"anonymize": {"subject": "hash"}, "hash_key_env": "K"}, "anonymize.subject", "room for 69"),
    ({"anonymize": {"name": "x" * 101}}, "anonymize.name", "longer than the column"),
    ({"version_column": "nope"}, "version_column", "no column 'nope'"),
    ({"version_column": "name", "anonymize": {"name": None}}, "version_column", "is anonymized"),
])
def test_names_are_checked_against_the_reflected_schema(records: Records, change: dict[str, Any], key: str,
                                                        text: str) -> None:
    backend = make(_options(records, **change))
    with pytest.raises(ConfigError) as caught:
        backend.check(SOURCE)
    assert caught.value.key == f"sources[1].options.{key}"
    assert text in str(caught.value)
    backend.close()


def test_a_naive_column_requires_a_timezone(db: Database) -> None:
    records = records_table(db, naive=True)
    backend = make(_options(records, timezone=None))
    with pytest.raises(ConfigError, match="timezone: is required.*without a time zone") as caught:
        list(backend.scan(SOURCE))  # lazily, on first use, as check() would
    assert caught.value.key == "sources[1].options.timezone"


def test_an_aware_column_needs_no_timezone_and_warns_when_given_one(db: Database) -> None:
    if db.aware_timestamp() is None:
        pytest.skip("SQLite has no timestamp type that stores instants")
    records = records_table(db, naive=False)
    with make(_options(records, timezone="Europe/Berlin")) as backend:
        backend.check(SOURCE)
        assert any("timezone is ignored" in w for w in backend.warnings(SOURCE))
    with make(_options(records, timezone=None)) as backend:
        backend.check(SOURCE)
        assert backend.warnings(SOURCE) == [] or all("timezone" not in w for w in backend.warnings(SOURCE))


@pytest.mark.parametrize("hostile", [
    'records"; DROP TABLE victims; --',
    "records'; DROP TABLE victims; --",
    "records` ; DROP TABLE victims; -- ",
    "records WHERE 1=1",
])
def test_injection_through_names_is_a_config_error(db: Database, hostile: str) -> None:
    victims = db.table(db.name("victims"), sa.Column("id", sa.Integer, primary_key=True))
    records = records_table(db)
    for option in ("table", "key", "subject", "created"):
        backend = make(_options(records, **{option: hostile.replace("victims", victims.name)}))
        with pytest.raises(ConfigError) as caught:
            backend.check(SOURCE)
        assert caught.value.key == f"sources[1].options.{option}"
        backend.close()
    assert sa.inspect(db.engine).has_table(victims.name)


def test_hostile_but_real_names_are_quoted_everywhere(db: Database) -> None:
    """A table and columns whose names contain quotes and semicolons work, and touch nothing else."""
    from datetime import timedelta

    from retention_core import Action, PushdownPlan
    from retention_core.engine import cutoffs

    from .scenarios import NOW, scenario

    bystander = db.table(db.name("bystander"), sa.Column("id", sa.Integer, primary_key=True))
    db.insert(bystander, [{"id": 1}])
    quote = '"' if db.kind != "mariadb" else "`"
    name = f"{db.name('odd')} {quote}; DROP TABLE {bystander.name}; --'"
    created_type = db.aware_timestamp() or db.naive_timestamp()
    # SQLAlchemy reflects a MariaDB column named no`te as no``te: such a name is a config error there.
    note = "no`te" if db.kind != "mariadb" else "no;te"
    table = db.table(name[:60],
                     sa.Column("k'ey", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column('sub"ject', sa.String(20)),
                     sa.Column("cre;ated", created_type),
                     sa.Column(note, sa.String(20), nullable=True))
    old = NOW - timedelta(days=3000)
    value = old if db.aware_timestamp() else old.replace(tzinfo=None)
    db.insert(table, [{"k'ey": i, 'sub"ject': "x", "cre;ated": value, note: "n"} for i in range(1, 21)])
    options = {"url": db.url, "table": table.name, "key": "k'ey", "subject": 'sub"ject', "created": "cre;ated",
               "batch_size": 6, "anonymize": {note: "gone"}}
    if not db.aware_timestamp():
        options["timezone"] = "UTC"
    case = scenario(0)
    source = case.source()
    with make(options) as backend:
        backend.check(source)
        records = list(backend.scan(source))
        assert len(records) == 20
        assert {o.status.value for o in backend.delete(records[:5])} == {"deleted"}
        assert {o.status.value for o in backend.anonymize(records[5:8])} == {"anonymized"}
        plan = cutoffs(source, case.context())
        assert plan.action is Action.DELETE
        pushed = [o for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan)) for o in batch]
    # Anonymized rows are done with: the set-based delete leaves them (see docs/sql.md).
    assert len(pushed) == 12
    assert {str(k) for k in db.column(table, "k'ey")} == {r.location for r in records[5:8]}
    assert db.column(bystander, "id") == [1]
