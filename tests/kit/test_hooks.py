"""One test per hook, each driving the hook through the plugin manager and the CLI.

``test_hooks_documented.py`` fails when a hookspec has no ``test_hook_<name>`` here.
Storage is the reference ``memory`` backend, seeded and checked out of band.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest

from retention_core import Context, Hold, HoldScope, Options, Outcome, Record, Status, Subject, hookimpl
from retention_core.testing import memory
from retention_core.testing.builders import PolicyBuilder
from retention_core.testing.memory import InMemoryBackend

OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
RECENT = datetime.now(timezone.utc) - timedelta(days=1)


def seed_calls(store: str) -> None:
    memory.seed(store, "acme/old.wav", OLD)
    memory.seed(store, "acme/recent.wav", RECENT)
    memory.seed(store, "globex/old.wav", OLD)


def calls_policy(builder: PolicyBuilder, store: str, *, backend: str = "memory", after: str = "created",
                 **top: Any) -> Path:
    top.setdefault("limits", {"max_fraction": 1.0})  # these runs delete most of a source on purpose
    return builder.write(
        categories={"call": {"retain": "30d", "after": after}},
        sources=[{"name": "calls", "backend": backend, "options": {"store": store},
                  "match": "(?P<subject>[^/]+)/.+", "category": "call"}],
        **top)


def remaining(store: str) -> list[str]:
    return sorted(memory.get_store(store).items)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


# -- retention_register_backends ----------------------------------------------------------------


class CountingBackend(InMemoryBackend):
    name = "counting"
    scans = 0

    def scan(self, source: Any) -> Any:
        CountingBackend.scans += 1
        return super().scan(source)


class BackendPlugin:
    @hookimpl
    def retention_register_backends(self, register: Any) -> None:
        register(CountingBackend)


@pytest.mark.parametrize("retention_plugin", [BackendPlugin()])
def test_hook_retention_register_backends(retention_cli: Any, policy_builder: PolicyBuilder,
                                          memory_store: str) -> None:
    listing = json.loads(ok(retention_cli("plugins", "--json")).output)
    provided = {p["name"]: p["provides"].get("backends", []) for p in listing}
    assert ["counting"] in provided.values()

    seed_calls(memory_store)
    policy = calls_policy(policy_builder, memory_store, backend="counting")
    before = CountingBackend.scans
    ok(retention_cli("run", "-c", policy))
    assert CountingBackend.scans > before
    assert remaining(memory_store) == ["acme/recent.wav"]


def test_register_backends_duplicate_name_names_both_plugins(policy_builder: PolicyBuilder) -> None:
    from retention_core.errors import PluginError
    from retention_core.testing.fixtures import plugins_for

    plugins = plugins_for([BackendPlugin(), BackendPlugin()])
    with pytest.raises(PluginError, match="registered by both plugin"):
        plugins.backends()


# -- retention_register_commands ----------------------------------------------------------------


@click.command("hello")
@click.option("--name", default="world")
def hello(name: str) -> None:
    """Say hello (a plugin's command)."""
    click.echo(f"hello, {name}")


class CommandPlugin:
    @hookimpl
    def retention_register_commands(self, cli: click.Group) -> None:
        cli.add_command(hello)


@pytest.mark.parametrize("retention_plugin", [CommandPlugin()])
def test_hook_retention_register_commands(retention_cli: Any) -> None:
    assert ok(retention_cli("hello", "--name", "plugin author")).output == "hello, plugin author\n"
    assert "hello" in ok(retention_cli("--help")).output


def test_plugin_commands_do_not_leak_between_tests(retention_cli: Any) -> None:
    result = retention_cli("hello")
    assert result.exit_code == 2 and "No such command" in result.output


# -- retention_register_subject_sources ---------------------------------------------------------


def inline_subjects(options: Options) -> Iterable[Subject]:
    ended: dict[str, str] = options.mapping("ended")
    options.done()
    return [Subject(id=sid, service_ended_at=datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
            for sid, day in ended.items()]


class SubjectPlugin:
    @hookimpl
    def retention_register_subject_sources(self, register: Any) -> None:
        register("inline", inline_subjects)


@pytest.mark.parametrize("retention_plugin", [SubjectPlugin()])
def test_hook_retention_register_subject_sources(retention_cli: Any, policy_builder: PolicyBuilder,
                                                 memory_store: str) -> None:
    seed_calls(memory_store)
    policy = calls_policy(policy_builder, memory_store, after="service_end",
                          subjects={"source": "inline", "ended": {"acme": "2020-06-01"}})
    ok(retention_cli("run", "-c", policy))
    # acme's service ended long ago: all of acme is due. globex is no known subject: skipped.
    assert remaining(memory_store) == ["globex/old.wav"]

    bad = calls_policy(policy_builder, memory_store, after="service_end", name="bad.yaml",
                       subjects={"source": "inline", "ended": {}, "typo": 1})
    result = retention_cli("run", "-c", bad)
    assert result.exit_code == 2 and "subjects.typo: unknown key" in result.output


# -- retention_register_hold_sources ------------------------------------------------------------


class HoldPlugin:
    @hookimpl
    def retention_register_hold_sources(self, register: Any) -> None:
        register("legal-system", lambda: [Hold(id="EXT-7", kind="legal", scope=HoldScope(subject="acme"),
                                                 reason="litigation in the external system")])


@pytest.mark.parametrize("retention_plugin", [HoldPlugin()])
def test_hook_retention_register_hold_sources(retention_cli: Any, policy_builder: PolicyBuilder,
                                              memory_store: str) -> None:
    seed_calls(memory_store)
    ok(retention_cli("run", "-c", calls_policy(policy_builder, memory_store)))
    assert remaining(memory_store) == ["acme/old.wav", "acme/recent.wav"]


# -- retention_register_report_writers ----------------------------------------------------------


def write_lines(report: Any, path: Path) -> None:
    path.write_text("".join(f"{item.record.location}\t{item.decision.action.value}\n" for item in report.items()),
                    encoding="utf-8")


class ReportPlugin:
    @hookimpl
    def retention_register_report_writers(self, register: Any) -> None:
        register(".lines", write_lines)


@pytest.mark.parametrize("retention_plugin", [ReportPlugin()])
def test_hook_retention_register_report_writers(retention_cli: Any, policy_builder: PolicyBuilder,
                                                memory_store: str, tmp_path: Path) -> None:
    seed_calls(memory_store)
    out = tmp_path / "run.lines"
    ok(retention_cli("run", "-c", calls_policy(policy_builder, memory_store), "--dry-run", "--report", out))
    assert sorted(out.read_text(encoding="utf-8").splitlines()) == [
        "acme/old.wav\tdelete", "acme/recent.wav\tkeep", "globex/old.wav\tdelete"]
    assert len(remaining(memory_store)) == 3


# -- retention_before_delete / retention_after_delete -------------------------------------------


class Observer:
    """Records what each observation hook saw, and what storage held at that moment."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.before: list[tuple[list[str], list[bool], Context]] = []
        self.after: list[tuple[dict[str, Status], list[bool]]] = []

    @hookimpl
    def retention_before_delete(self, batch: list[Record], context: Context) -> None:
        self.before.append(([r.location for r in batch], [memory.exists(self.store, r.location) for r in batch],
                            context))

    @hookimpl
    def retention_after_delete(self, outcomes: list[Outcome], context: Context) -> None:
        self.after.append(({o.record.location: o.status for o in outcomes},
                           [memory.exists(self.store, o.record.location) for o in outcomes]))


@pytest.fixture
def observer(memory_store: str) -> Observer:
    return Observer(memory_store)


@pytest.fixture
def retention_plugin(observer: Observer) -> Observer:
    return observer


def test_hook_retention_before_delete(retention_cli: Any, observer: Observer, policy_builder: PolicyBuilder,
                                      memory_store: str) -> None:
    seed_calls(memory_store)
    policy = calls_policy(policy_builder, memory_store)
    ok(retention_cli("run", "-c", policy, "--dry-run"))
    assert observer.before == [], "dry-run must not reach the deletion hooks"

    ok(retention_cli("run", "-c", policy))
    [(locations, existed, context)] = observer.before
    assert sorted(locations) == ["acme/old.wav", "globex/old.wav"]
    assert existed == [True, True], "before_delete must run before storage is touched"
    assert context.now.tzinfo is not None and "call" in context.categories


def test_hook_retention_after_delete(retention_cli: Any, observer: Observer, policy_builder: PolicyBuilder,
                                     memory_store: str) -> None:
    seed_calls(memory_store)
    memory.lock(memory_store, "globex/old.wav")
    result = retention_cli("run", "-c", calls_policy(policy_builder, memory_store))
    assert result.exit_code == 0, result.output  # a refusal is held by storage, not a failure
    [(statuses, still_there)] = observer.after
    assert statuses == {"acme/old.wav": Status.DELETED, "globex/old.wav": Status.REFUSED}
    assert sorted(still_there) == [False, True]
