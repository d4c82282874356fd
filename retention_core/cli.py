"""The ``retention`` command line (click). Plugins attach their own commands at the end.

Every :class:`~retention_core.errors.RetentionError` becomes one line on stderr and its exit
code: 0 ok · 1 some deletions failed · 2 usage/config error · 3 safety limit tripped ·
4 another run holds the lock.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click

from . import logs
from .audit import AuditTrail, Head, VerifyResult, genesis, load_key, trail_for, verify
from .audit import check_writable as check_trail_writable
from .durations import parse_duration
from .engine import Decider
from .errors import AuditError, ConfigError, FenceTimeout, PluginError, RetentionError
from .executors import make_executor
from .fence import DEFAULT_WAIT, deleted_in_scope, wait_for_batches
from .files import atomic_write
from .holdsources import release_hold
from .host import CONFIG_ENV, config_option, open_runtime, share_plugins
from .metrics import write_metrics
from .model import Action, Decision, ErasureRequest, Hold, HoldScope, Problem, Record
from .partitioned import PartitionedRun, require_shared_state
from .plugins import Plugins, load_plugins
from .policy import EXECUTOR_KINDS, HOLD_KINDS, check_actions, check_hold_id, scheduler_address_problem
from .report import RunReport, check_writable, one_line, run_warnings, text_summary
from .runtime import POLICY_FILE, Runtime
from .scheduler import RunOptions, over_limits, run
from .state import HOLDS, actor, check_fits
from .statecheck import check_state_is_the_trails
from .subjects import parse_given_date, parse_instant
from .text import printable

LOG_FORMAT_ENV = "RETENTION_LOG_FORMAT"
QUIET_ENV = "RETENTION_QUIET"

#: Allocations of container objects (net) between young-generation collections. A run holds each
#: batch's records, rows and outcomes — tens of thousands of objects that do not form cycles —
#: and with CPython's default of 700 the collector ran thousands of times per run, re-walking
#: every live object on each full collection: 2.2 s of a 1M-row PostgreSQL run, 0.4 s of a
#: 200k-file enforce (measured with gc.callbacks). Cycles are still collected, just later.
GC_YOUNG_THRESHOLD = 50_000


class RetentionGroup(click.Group):
    """Loads plugins once, lazily, and turns our errors into one line and an exit code."""

    plugins: Plugins | None = None

    def _load(self) -> Plugins:
        if RetentionGroup.plugins is None:
            try:
                RetentionGroup.plugins = load_plugins()
            except PluginError as exc:
                raise _Fail(str(exc), 2) from None
            RetentionGroup.plugins.register_commands(self)
        return RetentionGroup.plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        # Always load: plugins may also add subcommands to core groups (`holds sync`).
        self._load()
        return super().get_command(ctx, name)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Like click's, but a usage error is one line on stderr (cron mail), exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(logs.error_line(f"{exc.format_message()}{where}", exc.exit_code), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(logs.error_line("aborted", 1), err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RetentionError as exc:
            click.echo(logs.error_line(str(exc), exc.exit_code), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # `retention … | head` closed the pipe: not an internal error, and nothing more to say.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except Exception as exc:
            if os.environ.get("RETENTION_DEBUG"):
                raise
            click.echo(logs.error_line(f"internal error: {type(exc).__name__}: {exc} "
                                       "(set RETENTION_DEBUG=1 for the traceback)", 1), err=True)
            ctx.exit(1)


@contextmanager
def use_plugins(plugins: Plugins) -> Iterator[click.Group]:
    """Run ``retention`` with exactly *plugins* loaded (tests, embedding); restored afterwards.

    Their ``retention_register_commands`` hooks run, and commands they attach are removed
    again on exit.
    """
    saved_plugins, saved_commands = RetentionGroup.plugins, dict(cli.commands)
    RetentionGroup.plugins = plugins
    plugins.register_commands(cli)
    try:
        yield cli
    finally:
        RetentionGroup.plugins = saved_plugins
        cli.commands = saved_commands


class _Fail(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # a ClassVar in click 8.2+; click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(logs.error_line(self.format_message(), self.exit_code), err=True)


def plugins() -> Plugins:
    return cli._load()  # type: ignore[attr-defined]


def _parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parse_instant(value)
    except ValueError:
        raise ConfigError(f"expected an ISO date like 2027-01-31, found {value!r}", key=name) from None
    try:
        return parse_given_date(value)
    except ValueError as exc:  # far enough from datetime's limits that date arithmetic cannot overflow
        raise ConfigError(str(exc), key=name) from None


@click.group(cls=RetentionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retention", prog_name="retention")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (repeat for debug).")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", envvar=LOG_FORMAT_ENV,
              show_default=True, help=f"stderr as plain lines or one JSON object per line (or ${LOG_FORMAT_ENV}).")
def cli(verbose: int, log_format: str) -> None:
    """Enforce a privacy policy's retention promises over your storage.

    Evaluates retention rules (service-end and creation clocks), legal and dispute holds,
    erasure requests and minors over every record of every configured source; deletes or
    anonymizes what is due, journals every deletion in a hash-chained audit trail, and
    reports. Start with `retention validate -c policy.yaml`, then
    `retention run -c policy.yaml --dry-run`.

    Exit codes: 0 ok, 1 deletions failed, 2 usage/config error, 3 safety limit tripped,
    4 another run holds the lock.
    """
    logs.configure(log_format, verbose)
    # Set for every command, since the command line owns its process; the library leaves the
    # collector alone (see GC_YOUNG_THRESHOLD).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    share_plugins(plugins())  # what open_runtime, here and in plugins' commands, opens with


# -- validate -----------------------------------------------------------------------------------
@cli.command()
@config_option
@click.option("--check-storage", is_flag=True,
              help="Also reach every source's storage: the checks an enforcing run makes first (bucket exists "
                   "and its versioning allows deletion, database reachable, root readable) and the first "
                   "page of its listing. Nothing is changed.")
def validate(config: str, check_storage: bool) -> None:
    """Check the policy, its subjects and every source's options (without --check-storage, without
    touching storage)."""
    with open_runtime(config) as rt:
        warnings = rt.validate()
        check_actions(rt.policy, rt.plugins.backends())
        check_trail_writable(rt.policy.audit)  # a run would fail there, after scanning everything
        warnings += [f"hold {h.id}: {w}" for h in rt.policy.holds if (w := _unknown_subject(rt, h.scope))]
        warnings += [f"hold {h.id} in the policy file was released {h.released_at:%Y-%m-%d} by {h.released_by}: "
                     "remove it from the file" for h in rt.holds(include_released=True)
                     if h.origin == "config" and not h.active and any(c.id == h.id for c in rt.policy.holds)]
        failures = _check_storage(rt, warnings) if check_storage else []
        policy = rt.policy
        if not failures:
            click.echo(f"{policy.path}: ok — {len(policy.sources)} sources, {len(policy.categories)} categories, "
                       f"{len(rt.subjects)} subjects, {len(policy.holds)} static holds"
                       + (", storage reachable" if check_storage else ""))
        for warning in warnings:
            click.echo(f"warning: {warning}")
    for failure in failures:
        click.echo(logs.error_line(failure, 2), err=True)
    if failures:
        sys.exit(2)


def _check_storage(rt: Runtime, warnings: list[str]) -> list[str]:
    """Each source's ``Backend.check`` (what an enforcing run calls before it scans) and the first
    page of its listing; one line per source that fails, naming it. A listing problem met there
    is a warning."""
    failures = []
    try:
        rt.state.requests()  # the state store: reachable, its schema readable
    except Exception as exc:
        failures.append(f"{rt.policy.path}: state: cannot open the state store: {type(exc).__name__}: {exc}")
    for source in rt.policy.sources:
        where = f"{rt.policy.path}: sources[{source.index}] ({source.name})"
        try:
            backend = rt.backend(source)
            backend.check(source)
            listing = iter(backend.scan(source))
            try:
                first = next(listing, None)
            finally:
                close = getattr(listing, "close", None)
                if close is not None:
                    close()
        except ConfigError as exc:
            failures.append(str(exc.located(file=exc.file or str(rt.policy.path),
                                            prefix=None if exc.key else f"sources[{source.index}]")))
            continue
        except Exception as exc:
            failures.append(f"{where}: cannot list: {type(exc).__name__}: {exc}")
            continue
        if isinstance(first, Problem):
            warnings.append(f"{source.name}: listing problem at {printable(first.location)}: {first.reason}")
    return failures


# -- run -----------------------------------------------------------------------------------------
@cli.command("run")
@config_option
@click.option("--dry-run", is_flag=True, help="Decide and report only; nothing is deleted.")
@click.option("--as-of", "as_of", metavar="DATE", help="Evaluate as if today were DATE (implies --dry-run).")
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Only this source (repeatable).")
@click.option("--report", "reports", multiple=True, metavar="PATH", type=click.Path(dir_okay=False),
              help="Write a report; the format follows the suffix (.html, .json, .csv, ...). Repeatable.")
@click.option("--metrics-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write Prometheus text-format metrics of this run to PATH, atomically "
                   "(for node_exporter's textfile collector: name it *.prom).")
@click.option("--trust-clock", is_flag=True,
              help="Enforce although an earlier run recorded a later time (its clock was ahead); "
                   "journalled as a clock-override event.")
@click.option("--max-delete", type=click.IntRange(min=0), metavar="N",
              help="For this run only, every source may delete up to N records, in place of its safety "
                   "limits (journalled).")
@click.option("--allow-over-limit", "allow_over_limit", multiple=True, metavar="SOURCE",
              help="For this run only, SOURCE has no safety limit (repeatable; journalled).")
@click.option("-q", "--quiet", is_flag=True, envvar=QUIET_ENV,
              help=f"Print nothing when all is well (cron): no summary; warnings and errors still go to stderr "
                   f"(or ${QUIET_ENV}=1).")
@click.option("--executor", type=click.Choice(EXECUTOR_KINDS),
              help="Where the per-record work runs: local (this process) or dask (a Dask distributed cluster, "
                   "per partition; needs a PostgreSQL state store). Default: the policy's executor:, else local.")
@click.option("--scheduler", metavar="ADDRESS",
              help="The Dask scheduler to use (tcp://host:8786); implies --executor dask. Without it, "
                   "--executor dask starts a LocalCluster on this machine.")
def run_command(config: str, dry_run: bool, as_of: str | None, sources: tuple[str, ...],
                reports: tuple[str, ...], metrics_file: str | None, trust_clock: bool,
                max_delete: int | None, allow_over_limit: tuple[str, ...], quiet: bool,
                executor: str | None, scheduler: str | None) -> None:
    """Scan every source, decide, and delete what is due (or only report with --dry-run)."""
    started = time.time()
    report: RunReport | None = None
    code = 2
    _check_scheduler(executor, scheduler)
    if metrics_file:  # now, not after the deletions
        try:
            if Path(metrics_file).exists() and not Path(metrics_file).is_file():  # /dev/full, a FIFO …
                raise ConfigError("it is not a regular file (it is replaced whole on each run)", key="--metrics-file")
            check_writable(Path(metrics_file), key="--metrics-file")
        except ConfigError as exc:
            raise ConfigError(f"cannot write metrics file {metrics_file!r}: {exc.detail}",
                              key="--metrics-file") from None
    try:
        report, code = _run(config, dry_run, as_of, sources, reports, RunOptions(
            now=datetime.now(timezone.utc), trust_clock=trust_clock, max_delete=max_delete,
            allow_over_limit=allow_over_limit), quiet=quiet, executor=executor, scheduler=scheduler)
    except RetentionError as exc:
        code = exc.exit_code
        raise
    except Exception:
        code = 1
        raise
    finally:
        if metrics_file:
            _write_metrics(Path(metrics_file), report, started, code)
    if code:
        sys.exit(code)


def _check_scheduler(executor: str | None, scheduler: str | None) -> None:
    """``--scheduler``, checked before anything starts; '' too: an empty address is a mistake,
    not "no scheduler"."""
    if scheduler is None:
        return
    problem = scheduler_address_problem(scheduler)
    if problem is not None:
        raise ConfigError(problem, key="--scheduler")
    if executor == "local":
        raise ConfigError("--scheduler needs --executor dask", key="--scheduler")


def _distributor(rt: Runtime, executor: str | None, scheduler: str | None) -> PartitionedRun | None:
    """The partitioned run ``--executor``/``--scheduler`` (or the policy's ``executor:``) ask for;
    None for a local run, which then imports nothing of Dask."""
    config = rt.policy.executor
    _check_scheduler(executor, scheduler)
    kind = executor or ("dask" if scheduler is not None else config.kind)
    if kind == "local":
        return None
    require_shared_state(rt)  # before a cluster is started for nothing
    address = scheduler or (config.scheduler if config.kind == "dask" else None)
    chosen = make_executor(kind, address, config.workers)
    logs.event("executor", f"executor: {chosen.label}", executor=kind, scheduler=address)
    return PartitionedRun(rt, chosen)


#: ``--report -``: the JSON report on stdout (the summary is then left out, so stdout stays JSON).
STDOUT = "-"


def _run(config: str, dry_run: bool, as_of: str | None, sources: tuple[str, ...],
         reports: tuple[str, ...], overrides: RunOptions | None = None, *, quiet: bool = False,
         executor: str | None = None, scheduler: str | None = None) -> tuple[RunReport, int]:
    """One run from the command line; *overrides* carries the one-off options (clock, limits)."""
    now = _parse_date(as_of, "--as-of") or datetime.now(timezone.utc)
    dry_run = dry_run or as_of is not None
    with open_runtime(config) as rt:
        chosen = _report_writers(rt, reports)
        check_actions(rt.policy, rt.plugins.backends())
        names = list(sources) or [s.name for s in rt.policy.sources]
        logs.event("run-start", f"run started: {len(names)} sources, as of {now:%Y-%m-%d %H:%M} UTC"
                   + (", dry run" if dry_run else ""), config=str(rt.policy.path), dry_run=dry_run,
                   as_of=now.isoformat(), sources=names)
        spread = _distributor(rt, executor, scheduler)
        progress = logs.ProgressBar(names) if logs.interactive() and not quiet and spread is None else None
        try:
            report = run(rt, RunOptions(now=now, dry_run=dry_run, sources=sources, progress=progress,
                                        as_of_given=as_of is not None, itemize=bool(chosen),
                                        trust_clock=overrides.trust_clock if overrides else False,
                                        max_delete=overrides.max_delete if overrides else None,
                                        allow_over_limit=overrides.allow_over_limit if overrides else (),
                                        deleting=progress.deleted if progress is not None else None,
                                        on_failure=lambda partial, exc: _failed_reports(chosen, partial, exc),
                                        distributor=spread))
        finally:
            if progress is not None:
                progress.finish()
            if spread is not None:
                spread.close()
        with report:
            for name, stats in report.sources.items():
                logs.event("source-done", f"{name}: scanned {stats.scanned}", source=name, scanned=stats.scanned,
                           decisions=stats.decisions, outcomes=stats.outcomes)
            for warning in run_warnings(report):
                logs.event("warning", warning, level=logging.WARNING)
            _write_reports(chosen, report)
            if not quiet and not any(path is None for path, _ in chosen):
                click.echo(text_summary(report))
                for path, _ in chosen:
                    click.echo(f"  report: {path}")
    code = 3 if report.limit_tripped else 1 if report.failed else 0
    level = logging.INFO if code == 0 else logging.ERROR
    took = (report.finished_at or datetime.now(timezone.utc)) - report.started_at
    logs.event("run-end", f"run {report.run_id} finished: {report.status}", level=level, run_id=report.run_id,
               status=report.status, dry_run=report.dry_run, exit_code=code, duration_seconds=took.total_seconds(),
               summary=report.summary(), outcomes=report.outcomes())
    if report.limit_tripped and logs.current_format() == "text":
        click.echo(logs.error_line(f"safety limit tripped: {report.limit_tripped}", 3),
                   err=True)
    return report, code


Writer = Callable[[RunReport, Path], None]


def _report_writers(rt: Runtime, reports: tuple[str, ...]) -> list[tuple[Path | None, Writer]]:
    """The writer of each ``--report`` (None as the path: stdout), checked now, not after the deletions."""
    if not reports:  # (only then: the writers import the HTML report)
        return []
    writers = rt.plugins.report_writers()
    chosen: list[tuple[Path | None, Writer]] = []
    for given in reports:
        if given == STDOUT:
            chosen.append((None, writers.get("json", key=f"--report {given}")))
            continue
        path = Path(given)
        chosen.append((path, writers.get(path.suffix.lower().lstrip("."), key=f"--report {given}")))
        check_writable(path, key=f"--report {path}")
    return chosen


def _write_reports(chosen: list[tuple[Path | None, Writer]], report: RunReport) -> None:
    for path, writer in chosen:
        if path is None:
            _to_stdout(writer, report)
            continue
        writer(report, path)
        logs.event("report-written", f"report written: {path}", path=str(path))


def _to_stdout(writer: Writer, report: RunReport) -> None:
    """Run a path writer into a private temporary folder and copy its file to stdout."""
    with tempfile.TemporaryDirectory(prefix="retention-report-") as folder:
        path = Path(folder) / "report.json"
        writer(report, path)
        with path.open("rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
        sys.stdout.flush()


def _failed_reports(chosen: list[tuple[Path | None, Writer]], report: RunReport, exc: Exception) -> None:
    """A run stopped by an error still leaves its reports, with what it knew (status failed)."""
    if not chosen:
        return
    report.warnings.append(f"the run stopped early: {type(exc).__name__}: {exc}; counts cover only what it "
                           "reached")
    try:
        _write_reports(chosen, report)
    except Exception as failure:  # the run's own error is the one to report
        logs.event("warning", f"cannot write the report of the failed run: {failure}", level=logging.WARNING)


def _write_metrics(path: Path, report: RunReport | None, started: float, code: int) -> None:
    try:
        write_metrics(path, report, started=started, finished=time.time(), exit_code=code)
    except OSError as exc:
        # The run itself is over; say so plainly and make sure cron notices.
        click.echo(logs.error_line(f"cannot write metrics file {path}: {exc.strerror or exc}", 2), err=True)
        if code == 0:
            sys.exit(2)


# -- plan --------------------------------------------------------------------------------------------
@cli.command("plan")
@config_option
@click.option("--within", default="90d", show_default=True, metavar="DURATION",
              help="How far ahead to look: 90d, 12w, 6mo, 1y, P3M ...")
@click.option("--as-of", "as_of", metavar="DATE", help="Plan as if today were DATE.")
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Only this source (repeatable).")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "csv")), default="text", show_default=True)
def plan_command(config: str, within: str, as_of: str | None, sources: tuple[str, ...], fmt: str) -> None:
    """What becomes due when, by week and category. Storage is only listed, never changed."""
    from .forecast import Forecast, plan_csv, plan_json, plan_text  # only this command: start-up time

    try:
        window = parse_duration(within)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--within") from None
    now = _parse_date(as_of, "--as-of") or datetime.now(timezone.utc)
    forecast = Forecast(now=now, until=window.after(now))
    if forecast.until <= now:
        raise ConfigError(f"expected a duration longer than zero, found {within!r}", key="--within")
    with open_runtime(config) as rt:
        chosen = [rt.policy.source(n) for n in sources] if sources else list(rt.policy.sources)
        ctx = rt.context(now)
        decide = Decider(ctx).decide  # one memo for the forecast's context
        counts: dict[str, tuple[int, int]] = {}
        for source in chosen:
            tally = _LimitTally()
            forecast.add_all(tally.count(record, decide(record)) for record in rt.records(source, tally.problem))
            counts[source.name] = (tally.due, tally.items)
        tripped = over_limits(rt, counts, RunOptions(now=now))  # the enforcing run's verdict, now
    if fmt == "json":
        click.echo(json.dumps({**plan_json(forecast, within), "limit_tripped": tripped or None}, indent=1))
    elif fmt == "csv":
        click.echo(plan_csv(forecast), nl=False)
    else:
        for line in plan_text(forecast, within):
            click.echo(line)
        for name, why in tripped.items():
            click.echo(f"SAFETY LIMIT: a run now would trip source {name!r}: {why}")
    if tripped:
        sys.exit(3)


class _LimitTally:
    """What the safety limits count of one source while plan lists it: items, due now."""

    def __init__(self) -> None:
        self.items = self.due = 0

    def count(self, record: Record, decision: Decision) -> tuple[Record, Decision]:
        self.items += 1
        self.due += decision.action in (Action.DELETE, Action.ANONYMIZE)
        return record, decision

    def problem(self, _: Problem) -> None:
        self.items += 1


# -- explain -----------------------------------------------------------------------------------------
@cli.command("explain")
@config_option
@click.argument("location")
@click.option("--source", "source_name", metavar="NAME", help="Look only in this source.")
@click.option("--as-of", "as_of", metavar="DATE", help="Explain as if today were DATE.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
def explain_command(config: str, location: str, source_name: str | None, as_of: str | None, fmt: str) -> None:
    """Every step of the decision for the record at LOCATION.

    LOCATION as the source lists it (fs: relative to root), an absolute path, or an
    s3://bucket/key URI; only the sources that can hold it are listed. For a record no
    longer there, what the audit trail says became of it: deleted when, by which run.
    """
    from .evidence import Query, find, locate
    from .explain import explain, gone_json, render_gone
    from .explain import render_text as render_explanation

    now = _parse_date(as_of, "--as-of") or datetime.now(timezone.utc)
    with open_runtime(config) as rt:
        chosen = [rt.policy.source(source_name)] if source_name else list(rt.policy.sources)
        places = locate(location, chosen, rt.backend)
        ctx = rt.context(now)
        every_hold = rt.holds(include_released=True)
        found, problems = [], []
        for place in places:
            if place.present is False:  # the source can tell without listing: nothing there
                continue
            for raw in rt.backend(place.source).scan(place.source):
                if raw.location != place.location:
                    continue
                if isinstance(raw, Problem):
                    problems.append(f"{place.source.name}: {raw.reason}")
                else:
                    found.append(explain(raw, place.source, ctx, every_hold))
        trail = rt.policy.audit
        history = [] if found or problems or not trail.exists() else list(
            find([trail], Query(places=tuple((p.source.name, p.location) for p in places))))
    if not found and problems:
        for line in problems:
            click.echo(f"{printable(location)} — could not be listed as a record, so it is kept (skip): {line}")
        return
    if not found and history:
        if fmt == "json":
            click.echo(json.dumps([gone_json(location, places, history)], indent=1, ensure_ascii=False))
        else:
            for line in render_gone(location, places, history):
                click.echo(line)
        return
    if not found:
        where = ", ".join(p.source.name for p in places)
        raise ConfigError(f"no record at {location!r} in {where}, and the audit trail shows no deletion of it; "
                          "give the location as the source lists it (fs: relative to root), an absolute path "
                          "or an s3://bucket/key URI", key="LOCATION")
    if fmt == "json":
        click.echo(json.dumps([e.as_json() for e in found], indent=1, ensure_ascii=False))
        return
    for n, explanation in enumerate(found):
        if n:
            click.echo("")
        for line in render_explanation(explanation):
            click.echo(line)


# -- holds -----------------------------------------------------------------------------------------
@cli.group()
def holds() -> None:
    """Legal and dispute holds: place, release, list. A hold blocks deletion until released."""


@holds.command("place")
@config_option
@click.option("--id", "hold_id", required=True, help="Hold id, e.g. LH-2026-014 (never reused).")
@click.option("--kind", type=click.Choice(HOLD_KINDS), required=True)
@click.option("--reason", required=True, help="Why, e.g. the case name.")
@click.option("--subject", help="Scope: this subject's data.")
@click.option("--category", help="Scope: this category.")
@click.option("--source", help="Scope: this source.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0, max=86400), default=DEFAULT_WAIT,
              show_default=True,
              help="Seconds to wait for a deletion batch in flight to finish before saying the hold is in effect "
                   "(and, at most, for the audit trail's lock).")
@click.option("--force", is_flag=True, help="Place it although --subject is not in the subjects source (records "
                                            "may name subjects the source does not list yet).")
def holds_place(config: str, hold_id: str, kind: str, reason: str, subject: str | None,
                category: str | None, source: str | None, wait_seconds: float, force: bool) -> None:
    """Place a hold. Every given scope key must match for a record to be held.

    Returns once the hold is in effect: if a run was deleting a batch when the hold was stored,
    it waits for that batch and says what it deleted in the hold's scope before the hold took effect.
    A subject the subjects source does not list is refused (a typo would hold nothing) unless
    --force is given.
    """
    check_hold_id(hold_id, "--id")
    if math.isnan(wait_seconds):
        raise ConfigError("expected a number of seconds from 0 to 86400, found nan", key="--wait")
    for key, value in (("--subject", subject), ("--category", category), ("--source", source)):
        if value is not None and not value.strip():
            raise ConfigError("expected a non-empty value: an empty scope value matches no record", key=key)
        if value is not None:
            _utf8(value, key)
    _reason(reason)
    with open_runtime(config) as rt:
        if category is not None and category not in rt.policy.categories:
            raise ConfigError(f"unknown category {category!r} (categories: {', '.join(rt.policy.categories)})",
                              key="--category")
        if source is not None:
            rt.policy.source(source)
        if any(h.id == hold_id for h in rt.policy.holds):
            raise ConfigError(f"hold {hold_id!r} already exists in the config", key="--id")
        # Ids are never reused, whatever their origin: `holds release ID` must name one hold.
        taken = next((h for h in rt.holds(include_released=True) if h.id == hold_id), None)
        if taken is not None:
            raise ConfigError(f"hold {hold_id!r} already exists (from {taken.origin}); hold ids are never reused",
                              key="--id")
        check_fits(HOLDS, "scope_subject", subject, "--subject")  # a value too long says so first
        unknown = _unknown_subject(rt, HoldScope(subject, category, source))
        if unknown and not force:
            raise ConfigError(f"{unknown}; give --force to place it anyway", key="--subject")
        check_state_is_the_trails(rt, lacking=False)  # never write to a store the trail does not know
        # A trail that cannot be written fails before the hold; one locked by a stopped writer
        # is waited for no longer than --wait (the hold is stored by then, and in force).
        trail = trail_for(rt.policy.audit, rt.state, lock_timeout=wait_seconds)
        hold = rt.state.place_hold(hold_id, kind, HoldScope(subject, category, source), reason)
        try:
            trail.append([{"event": "hold-placed", "hold": hold.id, "kind": kind, "scope": hold.scope.as_dict(),
                           "reason": reason, "by": hold.placed_by, "state": rt.state.store_id()}])
        except AuditError as exc:
            raise FenceTimeout(f"hold {hold.id} is stored and in force for every batch that starts from now, but "
                               f"{exc}: its hold-placed line is not in the "
                               "trail; a batch in flight may still delete records in its scope") from None
        click.echo(f"placed {kind} hold {hold.id} on {_scope(hold.scope)}")
        if warning := _unknown_subject(rt, hold.scope):
            logs.event("warning", warning, level=logging.WARNING, hold=hold.id)
        _fence(rt, trail, hold.scope, {"event": "hold-effective", "hold": hold.id}, "hold", wait_seconds)


def _reason(reason: str) -> None:
    """A hold's or release's reason is evidence: an empty one says nothing to whoever reads it."""
    if not reason.strip():
        raise ConfigError("expected a reason (the case, the ticket …): it is kept with the hold", key="--reason")
    _utf8(reason, "--reason")


def _utf8(value: str, key: str) -> None:
    """Text the state store and the trail keep must be UTF-8 (a shell can pass undecodable bytes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"expected UTF-8 text, found {printable(value)!r} (hold data with such names by "
                          "--source or --category)", key=key) from None


def _fence(rt: Runtime, trail: AuditTrail, scope: HoldScope, effective: dict[str, Any], what: str,
           wait_seconds: float = DEFAULT_WAIT) -> None:
    """Wait for the deletion batches in flight (the fence); journal (*effective*, an event) and
    say what they deleted in *scope* before *what* (the hold, the withdrawal) took effect."""
    waited = wait_for_batches(rt.state, timeout=wait_seconds)
    if not waited:
        return
    lost = deleted_in_scope(rt.policy.audit, waited, scope)
    trail.append([{**effective, "deleted_in_scope": len(lost),
                   "after_batches": [{"run_id": b.run_id, "source": b.source, "batch": b.batch} for b in waited]}])
    names = ", ".join(f"{b.batch} (run {b.run_id}, source {b.source})" for b in waited)
    click.echo(f"in effect after waiting for the deletion batch in flight: {names}")
    which = "that batch" if len(waited) == 1 else "those batches"
    if not lost:
        click.echo(f"{which} deleted nothing in the {what}'s scope")
        return
    click.echo(f"{which} deleted {len(lost)} record(s) in the {what}'s scope before the {what} took effect:")
    for row in lost:
        version = f" (version {row['version']})" if row.get("version") else ""
        click.echo(f"  {row.get('source')}: {printable(str(row.get('location')))}{version}")


@holds.command("release")
@config_option
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends (kept with the hold).")
def holds_release(config: str, hold_id: str, reason: str) -> None:
    """Release a hold; its data becomes eligible again and the next run deletes what is due.

    A hold defined in the policy file is released the same way: the release, with who, when
    and why, is kept in the state store and journalled, and the file's hold stays released
    (remove it from the file when convenient; its id cannot be used again).
    """
    _reason(reason)
    with open_runtime(config) as rt:
        in_file = next((h for h in rt.policy.holds if h.id == hold_id), None)
        check_state_is_the_trails(rt, lacking=False)  # never write to a store the trail does not know
        trail = trail_for(rt.policy.audit, rt.state)  # a trail that cannot be written fails before the release
        if in_file is not None:
            hold = _release_config_hold(rt, in_file, reason)
            trail.append([{"event": "hold-released", "hold": hold.id, "reason": reason, "by": hold.released_by,
                           "origin": "config", "state": rt.state.store_id()}])
            click.echo(f"released hold {one_line(hold.id)} (defined in {rt.policy.path}: it stays released; remove "
                       "it from the file when convenient)")
            return
        hold = release_hold(rt.state, hold_id, reason, read_sources=rt.holds)
        trail.append([{"event": "hold-released", "hold": hold.id, "reason": reason, "by": hold.released_by,
                       **({"origin": hold.origin} if hold.origin != "state" else {}), "state": rt.state.store_id()}])
        click.echo(f"released hold {one_line(hold.id)}"
                   + (f" (from hold source {one_line(hold.origin)})" if hold.origin != "state" else ""))


def _release_config_hold(rt: Runtime, hold: Hold, reason: str) -> Hold:
    """Record the release of a policy-file hold as a released state-store row placed by
    ``POLICY_FILE`` (Runtime.holds applies it to the file's hold)."""
    stored = next((h for h in rt.state.holds(include_released=True) if h.id == hold.id), None)
    if stored is not None and stored.placed_by != POLICY_FILE:
        raise ConfigError(f"hold {hold.id!r} is both in the policy file and in the state store; rename the file's",
                          key="HOLD_ID")
    if stored is not None and not stored.active:
        raise ConfigError(f"hold {hold.id!r} was already released on {stored.released_at:%Y-%m-%d} by "
                          f"{stored.released_by}", key="HOLD_ID")
    if stored is None:
        rt.state.place_hold(hold.id, hold.kind, hold.scope, hold.reason, by=POLICY_FILE)
    return rt.state.release_hold(hold.id, reason)


@holds.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--active", is_flag=True, help="Only holds still in force.")
def holds_list(config: str, as_json: bool, active: bool) -> None:
    """List holds from the config, the state store and hold sources, released ones included."""
    with open_runtime(config) as rt:
        found = rt.holds(include_released=not active)
        if as_json:
            click.echo(json.dumps([_hold_json(h) for h in found], indent=2))
            return
        if not found:
            click.echo("no holds")
        rows = []
        for h in found:
            state = "active" if h.active else (f"released {h.released_at:%Y-%m-%d} by {h.released_by}: "
                                               f"{h.release_reason}")
            if h.active and h.vanished_at is not None:
                state = (f"active, vanished from its source {h.vanished_at:%Y-%m-%d} (in force until released "
                         "with `holds release`)")
            if _unknown_subject(rt, h.scope):
                state += ", covers no known subject"
            origin = h.origin if h.origin in ("state", "config") else f"source {h.origin}"
            rows.append((one_line(h.id), one_line(h.kind), _scope(h.scope), f"({one_line(origin)})",
                         one_line(state), one_line(h.reason)))
        for line in _columns(rows):
            click.echo(line)


def _columns(rows: Sequence[tuple[str, ...]]) -> Iterator[str]:
    """Rows of cells as lines whose columns line up (each padded to its widest cell); the last
    cell, free text, follows a dash."""
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(rows[0]) - 1)] if rows else []
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)).rstrip() \
            + f" — {row[-1]}"


def _scope(scope: HoldScope) -> str:
    return " ".join(f"{k}={one_line(v)}" for k, v in scope.as_dict().items())


def _unknown_subject(rt: Runtime, scope: HoldScope) -> str | None:
    """Why a hold scoped to a subject the subjects source does not list may cover nothing, or None.

    A warning, not an error: records can name subjects the source has not listed yet. Without
    a subjects source nothing is known, and nothing is said.
    """
    if scope.subject is None or rt.policy.subjects is None or scope.subject in rt.subjects:
        return None
    return (f"subject {one_line(scope.subject)!r} is not in the subjects source: the hold covers no known "
            "subject (check the spelling)")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hold_json(h: Any) -> dict[str, Any]:
    return {"id": h.id, "kind": h.kind, "scope": h.scope.as_dict(), "reason": h.reason, "origin": h.origin,
            "active": h.active, "placed_by": h.placed_by, "placed_at": _iso(h.placed_at),
            "released_by": h.released_by, "released_at": _iso(h.released_at), "release_reason": h.release_reason,
            "vanished_at": _iso(h.vanished_at)}


# -- erasure requests ---------------------------------------------------------------------------------
@cli.group()
def requests() -> None:
    """Erasure requests from a subject's controller, due 30 days after receipt."""


@requests.command("erase")
@config_option
@click.option("--subject", required=True)
@click.option("--controller", required=True, help="Must be the subject's controller in the subjects source.")
@click.option("--received", metavar="DATE", help="When the request was received (default: now).")
@click.option("--ticket", metavar="REF", help="Your reference (helpdesk ticket, letter number); shown in list, "
                                                "reports and certificates.")
def requests_erase(config: str, subject: str, controller: str, received: str | None, ticket: str | None) -> None:
    """Record an erasure request; the next run deletes the subject's data that no hold protects.

    Refused while the subject has a request still open (pending, overdue or held).
    """
    if ticket is not None and (not ticket.strip() or not ticket.isprintable()):
        raise ConfigError("expected a non-empty reference without control characters", key="--ticket")
    with open_runtime(config) as rt:
        known = rt.subjects.get(subject)
        if known is None:
            raise ConfigError(f"unknown subject {subject!r} (not in the subjects source)", key="--subject")
        if known.controller != controller:
            raise ConfigError(f"{controller!r} is not the controller of subject {subject!r}; requests are "
                              "accepted only from the subject's controller", key="--controller")
        at = _parse_date(received, "--received") or datetime.now(timezone.utc)
        if at > datetime.now(timezone.utc) + timedelta(days=1):  # a typo'd year would never be proven done
            raise ConfigError(f"{at:%Y-%m-%d} is in the future: a request is received when it arrives",
                              key="--received")
        check_state_is_the_trails(rt, lacking=False)  # never write to a store the trail does not know
        trail = trail_for(rt.policy.audit, rt.state)
        request = rt.state.add_request(subject, controller, at, ticket=ticket)
        trail.append([{"event": "erasure-requested", "request": request.id, "subject": subject,
                       "controller": controller, "received_at": at.isoformat(), "by": actor(),
                       "state": rt.state.store_id(),
                       **({"ticket": ticket} if ticket else {})}])
        ref = f" (ticket {ticket})" if ticket else ""
        click.echo(f"erasure request {request.id}{ref} for {subject}: due {request.due_at:%Y-%m-%d}")


@requests.command("withdraw")
@config_option
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True, help="Why the request is withdrawn (kept with it, and journalled).")
def requests_withdraw(config: str, request_id: str, reason: str) -> None:
    """Withdraw an open erasure request: its subject's data is under its rules again.

    Kept with who, when and why; a done request cannot be withdrawn.
    """
    if not reason.strip():
        raise ConfigError("expected a reason", key="--reason")
    with open_runtime(config) as rt:
        check_state_is_the_trails(rt, lacking=False)  # never write to a store the trail does not know
        trail = trail_for(rt.policy.audit, rt.state)  # a trail that cannot be written fails before the change
        request = rt.state.withdraw_request(request_id, reason)
        trail.append([{"event": "erasure-withdrawn", "request": request.id, "subject": request.subject,
                       "reason": reason, "by": request.withdrawn_by, "state": rt.state.store_id()}])
        click.echo(f"withdrew erasure request {request.id} for {one_line(request.subject)}")
        # A run deleting that subject's records only because of the request stops at its next
        # batch; one batch may be in flight: wait for it and say what it deleted meanwhile.
        _fence(rt, trail, HoldScope(subject=request.subject),
               {"event": "withdrawal-effective", "request": request.id}, "withdrawal")


@requests.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def requests_list(config: str, as_json: bool) -> None:
    """List erasure requests with their ticket and state.

    Open: pending (within 30 days) or overdue; held (all that is left is under a hold);
    done; late (done after its due date); withdrawn.
    """
    now = datetime.now(timezone.utc)
    with open_runtime(config) as rt:
        found = rt.state.requests()
        if as_json:
            click.echo(json.dumps([_request_json(r, now) for r in found], indent=2))
            return
        if not found:
            click.echo("no erasure requests")
            return
        for line in _request_lines(found, now):
            click.echo(line)


def _request_json(r: ErasureRequest, now: datetime) -> dict[str, Any]:
    return {"id": r.id, "subject": r.subject, "controller": r.controller, "ticket": r.ticket,
            "received_at": _iso(r.received_at), "due_at": _iso(r.due_at), "status": r.status(now),
            "open": not r.closed, "done_at": _iso(r.done_at), "done_run": r.done_run,
            "held_remaining": r.held_remaining, "withdrawn_at": _iso(r.withdrawn_at),
            "withdrawn_by": r.withdrawn_by, "withdraw_reason": r.withdraw_reason}


def _request_lines(found: list[ErasureRequest], now: datetime) -> Iterator[str]:
    """The requests as a table: a header, then one row each, columns aligned."""
    rows = [("ID", "TICKET", "SUBJECT", "CONTROLLER", "RECEIVED", "DUE", "STATE")]
    rows += [(r.id, one_line(r.ticket or "-"), one_line(r.subject), one_line(r.controller),
              f"{r.received_at:%Y-%m-%d}", f"{r.due_at:%Y-%m-%d}", _request_state(r, now)) for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[6]


def _request_state(r: ErasureRequest, now: datetime) -> str:
    """The state, with what a controller asks next: by whom and why withdrawn, when and by which run done."""
    status = r.status(now)
    if r.withdrawn_at is not None:
        why = one_line(r.withdraw_reason or "")
        return f"{status} {r.withdrawn_at:%Y-%m-%d} by {one_line(r.withdrawn_by or '?')}: {why}"
    if r.done_at is not None:
        return f"{status} {r.done_at:%Y-%m-%d} (run {r.done_run})"
    if r.held_remaining:
        return f"{status}, {r.held_remaining} records still held"
    return status


# -- audit ------------------------------------------------------------------------------------------
@cli.group()
def audit() -> None:
    """The hash-chained audit trail."""


@audit.command("verify")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("-c", "--config", "config", envvar=CONFIG_ENV, metavar="FILE",
              help="Policy file: its audit trail, checked against the head recorded in the state store.")
@click.option("--key-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="The chain's HMAC key (default: $RETENTION_AUDIT_KEY_FILE or $RETENTION_AUDIT_KEY).")
def audit_verify(path: str | None, config: str | None, key_file: str | None) -> None:
    """Check the chain: exit 0 if intact, 1 naming the first bad line.

    With the key, every keyed line's HMAC is checked too (a trail rewritten and rehashed
    without the key fails); with -c, the head the state store recorded after the last append.
    """
    expect = None
    if config:
        with open_runtime(config) as rt:
            target = Path(path) if path else rt.policy.audit
            last = rt.state.audit_head(genesis(target))
            expect = Head(*last) if last else None
    elif path:
        target = Path(path)
    else:
        raise ConfigError("give the trail's PATH or -c FILE", key="PATH")
    result = verify(target, expect=expect, key=load_key(Path(key_file) if key_file else None))
    if not result.ok:
        click.echo(f"{target}: line {result.line}: {result.problem}", err=True)
        sys.exit(1)
    click.echo(f"{target}: ok — {result.lines} lines, head seq {result.head.seq} {result.head.hash[:16]}…")
    head = "not-given" if not config else "checked" if expect is not None else "none-recorded"
    for line in _verify_notes(result, head=head):
        click.echo(f"  {line}")


def _verify_notes(result: VerifyResult, *, head: str) -> Iterator[str]:
    """What an intact verdict covered and what it could not (docs/user-guide.md, "Audit trail")."""
    if result.keyed_from is None:
        yield "HMAC: no line is keyed (a trail rewritten and rehashed whole would also verify)"
    else:
        span = f"lines {result.keyed_from}–{result.lines} keyed (key id {result.key_id})"
        yield (f"HMAC: {span}, checked with the key" if result.hmac_checked else
               f"HMAC: {span}, NOT checked: no key given (--key-file or $RETENTION_AUDIT_KEY_FILE)")
        if result.keyed_from > 1:
            yield f"lines 1–{result.keyed_from - 1} were written before the key; line {result.keyed_from}'s HMAC " \
                  "covers their hash chain"
    yield {"checked": "head: matches the one the state store recorded after the last append",
           "none-recorded": "head: the state store has none recorded yet: lines cut from the end go unnoticed",
           "not-given": "head: not checked against the state store (give -c policy.yaml): lines cut from the end "
                        "go unnoticed"}[head]
    for r in result.repairs:
        yield (f"repaired: line {r.line} ({r.time}) journals {r.cut_bytes} bytes of a torn last line cut off, "
               f"SHA-256 {r.cut_sha256}")


@audit.command("certificate")
@config_option
@click.option("--run", "run_id", metavar="RUN_ID", help="The run to certify (see the run's summary).")
@click.option("--request", "request_id", metavar="ID",
              help="Certify one erasure request instead: only its subject's records, from every run that "
                   "touched them (the copy for that controller).")
@click.option("--format", "fmt", type=click.Choice(("json", "html")), default="json", show_default=True)
@click.option("-o", "--output", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write to PATH (atomically) instead of stdout.")
def audit_certificate(config: str, run_id: str | None, request_id: str | None, fmt: str, output: str | None) -> None:
    """A certificate of deletion for one enforcing run, or one erasure request, from the verified audit trail.

    Fields after NIST SP 800-88 Rev. 1 Appendix G: who, each location and version, method
    (logical deletion through the storage API), tool and version, verification method,
    dates, and the SHA-256 of the last audit line certified and of the trail head.
    """
    from . import certificate

    if (run_id is None) == (request_id is None):
        raise ConfigError("give exactly one of --run RUN_ID and --request ID", key="--run")
    with open_runtime(config) as rt:
        last = rt.state.audit_head(genesis(rt.policy.audit))
        backends = {s.name: s.backend for s in rt.policy.sources}
        expect = Head(*last) if last else None
        if request_id is not None:
            request = rt.state.request(request_id)
            if request is None:
                raise ConfigError(f"no erasure request {request_id!r} in the state store (see 'retention requests "
                                  "list')", key="--request")
            cert = certificate.build_for_request(rt.policy.audit, request, expect=expect, backends=backends,
                                                 key=load_key())
        else:
            assert run_id is not None
            who, status = _run_row(rt, run_id)
            cert = certificate.build(rt.policy.audit, run_id, expect=expect, actor=who, backends=backends,
                                     run_status=status, key=load_key())
    writer: Callable[[certificate.Certificate, IO[str]], None] = (
        certificate.write_html if fmt == "html" else certificate.write_json)
    if output is None:
        writer(cert, sys.stdout)
        return
    path = Path(output)
    with atomic_write(path) as fh:
        writer(cert, fh)
    click.echo(f"certificate for {cert.title}: {path}")


@audit.command("find")
@config_option
@click.option("--location", metavar="L", help="A location as its source lists it (a trailing * matches a prefix), "
                                              "an absolute path or an s3://bucket/key URI.")
@click.option("--subject", metavar="S", help="Only this subject's records.")
@click.option("--run", "run_id", metavar="ID", help="Only this run's lines.")
@click.option("--source", metavar="NAME", help="Only this source.")
@click.option("--since", metavar="DATE", help="Only lines written at or after DATE (UTC).")
@click.option("--trail", "trails", multiple=True, metavar="PATH", type=click.Path(dir_okay=False),
              help="Search this trail file too (an earlier trail kept as evidence; repeatable).")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "csv")), default="text", show_default=True)
def audit_find(config: str, location: str | None, subject: str | None, run_id: str | None, source: str | None,
               since: str | None, trails: tuple[str, ...], fmt: str) -> None:
    """Was it deleted, when, by which run: every record line of the trail that matches.

    Batch lines are read per record. An intent whose outcome was never journalled (a run
    that died mid-batch) is shown as intent-only. Hashes are not checked here: that is
    `retention audit verify`.
    """
    from . import evidence

    after = _parse_date(since, "--since")
    with open_runtime(config) as rt:
        if source is not None:
            rt.policy.source(source)
        places: tuple[tuple[str, str], ...] = ()
        if location is not None and (location.startswith("s3://") or os.path.isabs(location)):
            chosen = [rt.policy.source(source)] if source else list(rt.policy.sources)
            found = evidence.locate(location, chosen, rt.backend, key="--location")
            places, location = tuple((p.source.name, p.location) for p in found), None
        query = evidence.Query(location=location, places=places, subject=subject, run=run_id, source=source,
                               since=after)
        paths = [*(Path(t) for t in trails), rt.policy.audit]
    findings = evidence.find(paths, query)
    if fmt == "csv":
        evidence.write_csv(findings, sys.stdout)
    elif fmt == "json":
        click.echo(json.dumps([f.as_json() for f in findings], indent=1, ensure_ascii=False))
    else:
        any_found = False
        for finding in findings:
            click.echo(evidence.text_line(finding))
            any_found = True
        if not any_found:
            click.echo("nothing in the audit trail matches")


def _run_row(rt: Runtime, run_id: str) -> tuple[str | None, str | None]:
    """Who started the run and its status, as the state store recorded them."""
    found = rt.state.run(run_id)
    return (found.actor, found.status) if found is not None else (None, None)


# -- plugins -------------------------------------------------------------------------------------------
@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List loaded plugins: name, version, distribution, hooks and what each provides."""
    infos = plugins().info()
    if as_json:
        click.echo(json.dumps([{"name": i.name, "distribution": i.distribution, "version": i.version,
                                "hooks": list(i.hooks), "provides": i.provides} for i in infos], indent=2))
        return
    for i in infos:
        click.echo(f"{i.name}  ({i.distribution} {i.version})")
        click.echo(f"  hooks: {', '.join(i.hooks) or '-'}")
        for label, names in i.provides.items():
            click.echo(f"  {label}: {', '.join(names)}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="retention")
