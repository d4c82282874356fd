"""Foreign keys through which a delete reaches other tables are reported, and refused unless allowed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention_core import ConfigError, Options, PushdownPlan, Status
from retention_core.engine import cutoffs
from retention_sql.backend import SqlBackend

from .conftest import Database, Records, records_table
from .scenarios import NOW, scenario


def with_child(db: Database, ondelete: str | None) -> tuple[Records, sa.Table]:
    records = records_table(db)
    records.add((i, "s", NOW - timedelta(days=3000)) for i in range(1, 6))
    child = db.table(db.name("calls"), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("record_id", sa.Integer, sa.ForeignKey(records.table.c.id, ondelete=ondelete),
                               nullable=True))
    db.insert(child, [{"id": i, "record_id": i} for i in (1, 2)])
    return records, child


@pytest.mark.parametrize("ondelete", ["CASCADE", "SET NULL"])
def test_reaching_foreign_keys_are_warned_about_and_refused(db: Database, ondelete: str) -> None:
    records, child = with_child(db, ondelete)
    source = scenario(0).source()
    with records.backend() as backend:
        [warning] = [w for w in backend.warnings(source) if "reaches" in w]
        assert child.name in warning and f"ON DELETE {ondelete}" in warning and "refused" in warning
        with pytest.raises(ConfigError, match="allow_cascade") as caught:
            backend.check(source)
        assert caught.value.key == "sources[0].options.allow_cascade"
        scanned = list(backend.scan(source))  # listing is harmless
        assert len(scanned) == 5
        with pytest.raises(ConfigError):
            list(backend.delete(scanned))
        plan = cutoffs(source, scenario(0).context())
        with pytest.raises(ConfigError):
            list(backend.push_down(source, PushdownPlan(plan, lambda: plan)))
    assert records.keys() == {"1", "2", "3", "4", "5"}
    assert sorted(db.column(child, "record_id")) == [1, 2]


def test_allow_cascade_lets_the_delete_reach_the_child(db: Database) -> None:
    records, child = with_child(db, "CASCADE")
    source = scenario(0).source()
    with records.backend(allow_cascade=True) as backend:
        backend.check(source)
        assert any("allowed by allow_cascade" in w for w in backend.warnings(source))
        plan = cutoffs(source, scenario(0).context())
        pushed = [o for batch in backend.push_down(source, PushdownPlan(plan, lambda: plan)) for o in batch]
    assert {o.status for o in pushed} == {Status.DELETED} and len(pushed) == 5
    assert records.keys() == set() and db.column(child, "id") == []


def test_restricting_foreign_keys_are_not_cascades(db: Database) -> None:
    records, _ = with_child(db, None)
    source = scenario(0).source()
    with records.backend() as backend:
        backend.check(source)
        assert not any("reaches" in w for w in backend.warnings(source))


def test_sqlite_inline_references_are_found(tmp_path: Path) -> None:
    """``REFERENCES chats(id) ON DELETE CASCADE`` on a column (SQLAlchemy's reflection misses it)."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE chats (id INTEGER PRIMARY KEY, tenant TEXT, created_at TEXT)")
        conn.exec_driver_sql("CREATE TABLE attachments (id INTEGER PRIMARY KEY, "
                             "chat_id INTEGER REFERENCES Chats(id) ON DELETE CASCADE)")
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, chat_id INTEGER REFERENCES chats(id))")
    engine.dispose()
    options = {"url": url, "table": "chats", "key": "id", "subject": "tenant", "created": "created_at",
               "timezone": "UTC"}
    with SqlBackend(Options(options)) as backend:
        reaching = [w for w in backend.warnings(scenario(0).source()) if "reaches" in w]
        assert len(reaching) == 1 and "attachments(chat_id) (ON DELETE CASCADE)" in reaching[0]
        with pytest.raises(ConfigError, match="allow_cascade"):
            backend.check(scenario(0).source())
