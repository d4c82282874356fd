"""The plugin surface: registration through pluggy, renamed hooks, refused wrappers, public names."""

from __future__ import annotations

import importlib.metadata as md
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import retention_core
from retention_core import (
    BackendRegistry,
    ConfigError,
    PluginError,
    ReportWriterRegistry,
    SubjectSourceRegistry,
    atomic_write,
    hookimpl,
)
from retention_core.plugins import load_plugins
from retention_core.testing import memory
from retention_core.testing.builders import PolicyBuilder
from retention_core.testing.memory import InMemoryBackend


class Tape(InMemoryBackend):
    name = "tape"


class Disk(InMemoryBackend):
    name = "disk"


class TapePlugin:
    @hookimpl
    def retention_register_backends(self, register: BackendRegistry) -> None:
        register(Tape)


class DiskPlugin:
    @hookimpl
    def retention_register_backends(self, register: BackendRegistry) -> None:
        register(Disk)


class OldNamesPlugin:
    """A plugin written against 0.1's hook names."""

    @hookimpl
    def retention_subject_sources(self, register: SubjectSourceRegistry) -> None:
        register("legacy", lambda options: [])

    @hookimpl
    def retention_report_writers(self, register: ReportWriterRegistry) -> None:
        register("old", lambda report, path: None)


def loaded(*extra: Any) -> Any:
    return load_plugins(extra=list(extra), entry_points=False, disabled=set())


# -- registration goes through pluggy, one call per plugin ---------------------------------------


def test_registration_calls_go_through_pluggy_once_per_plugin_each_with_its_own_register() -> None:
    tape, disk = TapePlugin(), DiskPlugin()
    plugins = loaded(tape, disk)
    seen: list[tuple[str, list[object], Any]] = []
    undo = plugins.pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: seen.append((name, [i.plugin for i in impls], kwargs["register"])),
        lambda outcome, name, impls, kwargs: None)
    try:
        backends = plugins.backends()
    finally:
        undo()
    calls = [(plugins_called, register) for name, plugins_called, register in seen
             if name == "retention_register_backends"]
    assert sorted(map(id, (p for called, _ in calls for p in called))) == sorted([id(tape), id(disk)])
    assert all(len(called) == 1 for called, _ in calls), "each call must reach one plugin only"
    assert len({id(register) for _, register in calls}) == 2, "each plugin gets a register of its own"
    by_plugin = backends.by_plugin()
    assert by_plugin[plugins.pm.get_name(tape)] == ["tape"]
    assert by_plugin[plugins.pm.get_name(disk)] == ["disk"]


def test_a_register_kept_and_used_later_still_names_its_own_plugin() -> None:
    class Keeper:
        register: Any = None

        @hookimpl
        def retention_register_backends(self, register: BackendRegistry) -> None:
            Keeper.register = register

    keeper, disk = Keeper(), DiskPlugin()
    plugins = loaded(disk, keeper)  # LIFO: the keeper's hook runs first, the disk plugin's last
    backends = plugins.backends()
    Keeper.register(Tape)  # a registry with one "current plugin" cursor would say the disk plugin
    assert backends.entries["tape"].plugin == plugins.pm.get_name(keeper)


def test_a_name_registered_twice_names_both_plugins() -> None:
    first, second = TapePlugin(), TapePlugin()
    plugins = loaded(first, second)
    with pytest.raises(PluginError) as caught:
        plugins.backends()
    message = str(caught.value)
    assert plugins.pm.get_name(first) in message and plugins.pm.get_name(second) in message


def test_a_failing_registration_hook_names_its_plugin() -> None:
    class Broken:
        @hookimpl
        def retention_register_backends(self, register: BackendRegistry) -> None:
            raise RuntimeError("no disk")

    broken = Broken()
    plugins = loaded(broken)
    with pytest.raises(PluginError, match=rf"plugin '{plugins.pm.get_name(broken)}' failed in "
                                          r"retention_register_backends: RuntimeError: no disk"):
        plugins.backends()


# -- wrappers are refused --------------------------------------------------------------------------


class NewStyleWrapper:
    @hookimpl(wrapper=True)
    def retention_register_backends(self, register: BackendRegistry) -> Any:
        return (yield)


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def retention_register_report_writers(self, register: ReportWriterRegistry) -> Any:
        yield


class DeprecatedNameWrapper:
    @hookimpl(wrapper=True)
    def retention_hold_sources(self, register: Any) -> Any:
        return (yield)


@pytest.mark.parametrize(("plugin", "hook", "kind"), [
    (NewStyleWrapper(), "retention_register_backends", "wrapper=True"),
    (OldStyleWrapper(), "retention_register_report_writers", "hookwrapper=True"),
    (DeprecatedNameWrapper(), "retention_hold_sources", "wrapper=True"),
], ids=["wrapper", "hookwrapper", "deprecated-name"])
def test_a_wrapper_of_a_registration_hook_is_refused_when_plugins_load(plugin: Any, hook: str, kind: str) -> None:
    with pytest.raises(PluginError, match=rf"plugin '\d+': {hook} is marked {kind}, but registration hooks "
                                          r"cannot be wrappers .* use a plain @hookimpl"):
        loaded(plugin)


def test_a_wrapper_of_an_observation_hook_is_still_allowed() -> None:
    class Timing:
        @hookimpl(wrapper=True)
        def retention_after_delete(self, outcomes: Any, context: Any) -> Any:
            return (yield)

    loaded(Timing())


# -- the old names: still called, with a warning naming the plugin --------------------------------


def test_old_hook_names_are_still_called_with_a_deprecation_warning_naming_the_plugin() -> None:
    old = OldNamesPlugin()
    plugins = loaded(old)
    name = plugins.pm.get_name(old)
    with pytest.warns(DeprecationWarning) as caught:
        sources = plugins.subject_sources()
        writers = plugins.report_writers()
    assert "legacy" in sources.names() and "csv" in sources.names()
    assert "old" in writers.names() and "json" in writers.names()
    assert sources.entries["legacy"].plugin == name
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"plugin '{name}' implements retention_report_writers, a deprecated name: rename it "
        "retention_register_report_writers (the old name goes in the next release)",
        f"plugin '{name}' implements retention_subject_sources, a deprecated name: rename it "
        "retention_register_subject_sources (the old name goes in the next release)",
    ]
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}, "points at the plugin's code"


def test_new_names_do_not_warn() -> None:
    plugins = loaded(TapePlugin())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plugins.backends()
        plugins.subject_sources()
        plugins.hold_sources()
        plugins.report_writers()


def test_an_old_name_and_a_new_name_registering_the_same_thing_collide() -> None:
    class New:
        @hookimpl
        def retention_register_report_writers(self, register: ReportWriterRegistry) -> None:
            register("old", lambda report, path: None)

    plugins = loaded(New(), OldNamesPlugin())
    with pytest.warns(DeprecationWarning), pytest.raises(PluginError, match="registered by both plugin"):
        plugins.report_writers()


# -- production does not register the test double ---------------------------------------------------


def test_production_does_not_register_the_memory_backend() -> None:
    assert "memory" not in load_plugins(disabled=set()).backends().names()


def test_the_memory_module_is_the_plugin_that_registers_it() -> None:
    plugins = loaded(memory)
    assert plugins.backends().get("memory") is InMemoryBackend
    assert plugins.backends().entries["memory"].plugin == "retention_core.testing.memory"


# -- the public names plugins need ---------------------------------------------------------------------


def test_version_is_the_package_version_in_one_place() -> None:
    assert retention_core.__version__ == md.version("retention")
    info = {i.name: i for i in load_plugins(entry_points=False).info()}
    assert info["retention.defaults"].version == retention_core.__version__


def test_every_public_name_is_importable_and_nothing_unused_is_exported() -> None:
    for name in retention_core.__all__:
        assert hasattr(retention_core, name), name
    assert "SafetyLimitError" not in retention_core.__all__  # never raised
    for name in ("BackendRegistry", "SubjectSourceRegistry", "HoldSourceRegistry", "ReportWriterRegistry",
                 "covering_holds", "describe", "key_label", "atomic_write", "ClockError", "__version__"):
        assert name in retention_core.__all__, name


def test_error_classes_have_one_home() -> None:
    from retention_core import certificate, errors, scheduler

    assert scheduler.ClockError is errors.ClockError
    assert certificate.CertificateError is errors.CertificateError


def test_a_plugin_command_opens_the_policy_with_the_command_lines_plugins(tmp_path: Path) -> None:
    from retention_core.cli import use_plugins
    from retention_core.host import CONFIG_ENV, config_option, open_runtime

    seen: list[list[str]] = []

    @click.command("peek")
    @config_option
    def peek(config: str) -> None:
        with open_runtime(config) as rt:
            seen.append(rt.plugins.backends().names())

    class CommandPlugin:
        @hookimpl
        def retention_register_commands(self, cli: click.Group) -> None:
            cli.add_command(peek)

    policy = PolicyBuilder(tmp_path).write(
        categories={"note": {"retain": "1y"}},
        sources=[{"name": "notes", "backend": "tape", "options": {"store": "s"}, "match": "(?P<subject>.+)",
                  "category": "note"}])
    with use_plugins(loaded(CommandPlugin(), TapePlugin())) as cli:
        result = CliRunner().invoke(cli, ["peek"], env={CONFIG_ENV: str(policy)})
    assert result.exit_code == 0, result.output
    assert seen == [["tape"]], "the command line's plugins, not a fresh load of the installed ones"


def test_the_s3_plugin_imports_nothing_from_the_command_line_module() -> None:
    root = Path(__file__).resolve().parents[2] / "plugins"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "retention_core.cli" in p.read_text(encoding="utf-8")]
    assert offenders == []


# -- atomic_write ----------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    with atomic_write(target) as fh:
        fh.write("first")
    assert target.read_text(encoding="utf-8") == "first"

    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half of the sec")
        raise RuntimeError("writer failed")
    assert target.read_text(encoding="utf-8") == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"], "no temporary file left"


def test_atomic_write_passes_newline_through(tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    with atomic_write(target, newline="") as fh:
        fh.write("a\r\nb\r\n")
    assert target.read_bytes() == b"a\r\nb\r\n"


def test_atomic_write_to_a_folder_that_cannot_exist_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"), atomic_write(blocker / "report.html"):
        pass
