"""``retention cookies check`` and ``retention cookies import``.

Exit codes: 0 no error-level finding · 1 some error-level finding · 2 bad input. Errors
are one line (``Error: …``) even when the group is invoked on its own, without the core
CLI that normally turns a RetentionError into its message.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from retention_core import RetentionError

F = TypeVar("F", bound=Callable[..., Any])


class OutputError(click.ClickException):
    """A report or draft that cannot be written: bad input, so exit 2 (click's default is 1)."""

    exit_code = 2


def _one_line_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RetentionError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
    return wrapper  # type: ignore[return-value]


@click.group("cookies")
def cookies() -> None:
    """Prove the 'essential cookies only' promise against what a browser really stores."""


@cookies.command("check")
@click.option("-d", "--declarations", "declarations_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="cookies.yaml to check against.")
@click.option("--har", "hars", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A HAR 1.2 file exported with cookies (repeatable).")
@click.option("--set-cookie-file", "set_cookie_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A file of raw Set-Cookie lines, one a line (repeatable).")
@click.option("--origin", default=None, metavar="URL",
              help="URL the --set-cookie-file lines came from [default: https:// + first first-party domain].")
@click.option("--url", default=None, help="Open this page in headless Chromium and read what it stores.")
@click.option("--click", "click_selector", default=None, metavar="SELECTOR",
              help="After the first visit, click this (e.g. a banner button) and check again.")
@click.option("--settle", default=2.0, show_default=True, type=click.FloatRange(0, 120),
              help="Seconds to wait after load (and after --click) for late scripts.")
@click.option("--chromium", default=None, metavar="PATH",
              help="Chromium executable [default: $RETENTION_CHROMIUM or /usr/bin/chromium].")
@click.option("--ocd", "ocd_csv", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also use an Open Cookie Database CSV as knowledge of analytics/marketing cookies.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif", "html"]), default=None,
              help="Report format [default: from --output's suffix, else text].")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here instead of standard output.")
@_one_line_errors
def check(declarations_path: Path, hars: tuple[Path, ...], set_cookie_files: tuple[Path, ...],
          origin: str | None, url: str | None, click_selector: str | None, settle: float,
          chromium: str | None, ocd_csv: Path | None, fmt: str | None, output: Path | None) -> None:
    """Check observed cookies and storage against the declarations; exit 1 on any error finding."""
    from .checks import CheckInput, dedupe, exit_code, run_checks
    from .declarations import load_declarations
    from .knowledge import builtin, ocd_facts
    from .output import render

    if click_selector and not url:
        raise click.UsageError("--click needs --url")
    if origin and not set_cookie_files:
        raise click.UsageError("--origin only applies to --set-cookie-file")
    decls = load_declarations(declarations_path)
    knowledge = builtin()
    if ocd_csv:
        knowledge = knowledge.extended(ocd_facts(ocd_csv))
    observations: list[Any] = []
    findings: list[Any] = []
    inputs: list[str] = []
    storages: set[str] = set()
    extra_first_party: list[str] = []
    page_hosts: list[str] = []  # first-party by default only when no domain is declared
    expect_cookies = any(c.storage == "cookie" for _, c in decls.cookies())
    for har in hars:
        from .har import read_har

        result = read_har(har, expect_cookies=expect_cookies)
        observations += result.observations
        findings += result.findings
        inputs.append(f"HAR {har}")
        if result.first_url:
            page_hosts.append(urlsplit(result.first_url).hostname or "")
        if not result.sanitized:
            storages.add("cookie")
    if set_cookie_files:
        from .observe import read_set_cookie_file

        if origin is None:
            if not decls.first_party_domains:
                raise click.UsageError("--set-cookie-file needs --origin when no first_party_domains are declared")
            origin = f"https://{decls.first_party_domains[0]}/"
        page_hosts.append(urlsplit(origin).hostname or "")
        for path in set_cookie_files:
            obs, found = read_set_cookie_file(path, origin)
            observations += obs
            findings += found
            inputs.append(f"Set-Cookie lines {path}")
            storages.add("cookie")
    if url:
        from .browser import observe_url

        result_b = observe_url(url, click=click_selector, settle=settle, executable=chromium)
        observations += result_b.observations
        findings += result_b.findings
        inputs.append(f"browser {url} ({', '.join(result_b.scenarios)})")
        storages |= {"cookie", "localStorage", "sessionStorage"}
        extra_first_party.append(urlsplit(url).hostname or "")
    if not decls.first_party_domains:
        extra_first_party += page_hosts
    findings += run_checks(CheckInput(
        declarations=decls, observations=tuple(observations), knowledge=knowledge,
        extra_first_party=tuple(h for h in extra_first_party if h), storages_observed=frozenset(storages)))
    findings = dedupe(findings)
    if not inputs:
        inputs.append("declarations only (no --har, --set-cookie-file or --url)")
    fmt = fmt or _format_from_suffix(output)
    report = render(fmt, findings, observations, inputs=inputs, version=_version(),
                    default_file=str(declarations_path))
    if output:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(report, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
        errors = sum(1 for f in findings if f.severity == "error")
        click.echo(f"{len(findings)} finding(s), {errors} error(s); report written to {output}", err=True)
    else:
        click.echo(report, nl=False)
    sys.stdout.flush()
    raise click.exceptions.Exit(exit_code(findings))


@cookies.command("import")
@click.option("--from", "kind", required=True, type=click.Choice(["klaro", "cookieconsent", "ocd"]),
              help="Format of FILE.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the declarations here instead of standard output.")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="A first-party domain to write into the draft (repeatable).")
@_one_line_errors
def import_(kind: str, file: Path, output: Path | None, domains: tuple[str, ...]) -> None:
    """Draft a cookies.yaml from a Klaro or cookieconsent config or the Open Cookie Database."""
    from .importers import import_file

    text = import_file(kind, file, domains=domains)
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _format_from_suffix(output: Path | None) -> str:
    suffix = output.suffix.lower() if output else ""
    return {".json": "json", ".sarif": "sarif", ".html": "html", ".htm": "html"}.get(suffix, "text")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("retention")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"

