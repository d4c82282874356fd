import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from retention_core.errors import ConfigError, LockedError
from retention_core.model import HoldScope
from retention_core.state import StateStore, host_id, lock_table

UTC = timezone.utc


@pytest.fixture
def store(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def test_holds_are_kept_after_release_with_who_when_why(store):
    store.place_hold("LH-1", "legal", HoldScope(subject="acme"), "Smith v. Acme", by="counsel")
    assert [h.id for h in store.holds(include_released=False)] == ["LH-1"]
    released = store.release_hold("LH-1", "case settled", by="counsel2")
    assert not released.active and released.released_by == "counsel2"
    assert released.release_reason == "case settled"
    assert store.holds(include_released=False) == []
    assert [h.id for h in store.holds()] == ["LH-1"]


def test_hold_ids_are_never_reused_and_release_is_once(store):
    store.place_hold("LH-1", "legal", HoldScope(subject="a"), "r")
    with pytest.raises(ConfigError, match="already exists"):
        store.place_hold("LH-1", "dispute", HoldScope(subject="b"), "r")
    store.release_hold("LH-1", "done")
    with pytest.raises(ConfigError, match="already released"):
        store.release_hold("LH-1", "again")
    with pytest.raises(ConfigError, match="no hold 'LH-9'"):
        store.release_hold("LH-9", "x")


def test_empty_scope_is_refused(store):
    with pytest.raises(ConfigError, match="at least one of"):
        store.place_hold("H", "legal", HoldScope(), "r")


def test_erasure_request_due_in_30_days_and_done(store):
    received = datetime(2026, 1, 10, tzinfo=UTC)
    r = store.add_request("acme", "acme-corp", received)
    assert r.due_at == datetime(2026, 2, 9, tzinfo=UTC)
    assert r.status(datetime(2026, 2, 1, tzinfo=UTC)) == "pending"
    assert r.status(datetime(2026, 2, 10, tzinfo=UTC)) == "overdue"
    store.mark_requests("acme", "run-1", datetime(2026, 1, 20, tzinfo=UTC), held_remaining=2)
    (held,) = store.requests()
    assert held.status(datetime(2027, 1, 1, tzinfo=UTC)) == "held" and held.done_at is None
    store.mark_requests("acme", "run-2", datetime(2026, 1, 25, tzinfo=UTC), held_remaining=0)
    (done,) = store.requests()
    assert done.status(datetime(2027, 1, 1, tzinfo=UTC)) == "done" and done.done_run == "run-2"


def test_second_run_is_locked_out(store):
    with store.lock("run-1"):
        with pytest.raises(LockedError, match="another run \\(run-1"):
            with store.lock("run-2"):
                pass
    with store.lock("run-3"):  # released after the first
        pass


def test_a_dead_process_lock_is_taken_over(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    with store.engine.begin() as conn:
        conn.execute(lock_table.insert().values(name="run", run_id="crashed", host=host_id(),
                                                pid=pid, acquired_at=datetime.now(UTC)))
    with store.lock("run-2"):
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(lock_table.c.run_id)).scalar() == "run-2"


def test_a_lock_from_another_pid_namespace_on_this_host_is_not_taken_for_dead(store):
    """Adversary: a run started under `unshare --pid` took the lock of a live run (its pid is not
    visible from another PID namespace, so it looked dead)."""
    with store.engine.begin() as conn:
        conn.execute(lock_table.insert().values(name="run", run_id="in-a-container",
                                                host=f"{os.uname().nodename} pidns:1", pid=2 ** 22 + 7,
                                                acquired_at=datetime.now(UTC), refreshed_at=datetime.now(UTC)))
    with pytest.raises(LockedError, match="in-a-container"), store.lock("run-2"):
        pass


def test_a_lock_of_a_cloned_vm_with_this_host_name_is_not_taken_for_dead(store, monkeypatch):
    """Red team, issue 16: cloned VMs share the host name and the initial PID namespace's inode,
    so a fresh lock of the twin, whose pid is not running here, was taken over at once."""
    import io

    import retention_core.state as state_module

    real_open = open

    def twin_boot(path, *args, **kwargs):  # the twin: this host, but another boot
        if str(path).endswith("boot_id"):
            return io.StringIO("00000000-0000-0000-0000-000000000000\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(state_module, "open", twin_boot, raising=False)
    twin = host_id()
    monkeypatch.undo()
    with store.engine.begin() as conn:
        conn.execute(lock_table.insert().values(name="run", run_id="on-the-twin", host=twin, pid=2 ** 22 + 7,
                                                acquired_at=datetime.now(UTC), refreshed_at=datetime.now(UTC)))
    with pytest.raises(LockedError, match="on-the-twin"), store.lock("run-2"):
        pass


def test_a_live_lock_on_another_host_is_respected(store):
    with store.engine.begin() as conn:
        conn.execute(lock_table.insert().values(name="run", run_id="elsewhere", host="other-host", pid=1,
                                                acquired_at=datetime.now(UTC)))
    with pytest.raises(LockedError, match="other-host"):
        with store.lock("run-2"):
            pass


def test_unreachable_state_store_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot open state store"):
        StateStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
