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
_SUFFIX = {"text": "txt", "json": "json", "sarif": "sarif", "html": "html"}
FORMATS = tuple(_SUFFIX)


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
@click.option("--observations", "saved", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Judge observations saved by --save-observations again, offline (repeatable).")
@click.option("--url", default=None, help="Visit this page in Chromium and record what it sets, stores and requests.")
@click.option("--reject", "reject_selector", default=None, metavar="SELECTOR",
              help="Scenario after-reject: click this (the banner's reject button) after the first visit.")
@click.option("--accept", "accept_selector", default=None, metavar="SELECTOR",
              help="Scenario after-accept: in a fresh profile, load the page and click this.")
@click.option("--click", "click_selector", default=None, metavar="SELECTOR",
              help="After the first visit, click this and record a scenario 'after click SELECTOR'.")
@click.option("--settle", default=2.0, show_default=True, type=click.FloatRange(0, 120),
              help="Seconds to wait after load (and after each click) for late scripts.")
@click.option("--third-party-cookies", "third_party_cookies", type=click.Choice(["allow", "block"]),
              default="allow", show_default=True, help="The visiting browser's third-party cookie setting.")
@click.option("--chromium", default=None, metavar="PATH",
              help="Chromium executable [default: $RETENTION_CHROMIUM or /usr/bin/chromium].")
@click.option("--chromium-arg", "chromium_args", multiple=True, metavar="FLAG",
              help="An extra Chromium flag (repeatable), e.g. --ignore-certificate-errors-spki-list=… "
                   "to trust a staging CA.")
@click.option("--ocd", "ocd_csv", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also use an Open Cookie Database CSV as knowledge of analytics/marketing cookies.")
@click.option("--format", "formats", multiple=True, type=click.Choice(list(FORMATS)),
              help="Report format (repeatable, one per --output, or several with --output-dir) "
                   "[default: from --output's suffix, else text].")
@click.option("-o", "--output", "outputs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write a report here instead of standard output (repeatable).")
@click.option("--output-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Write cookies.<format> here for every --format [default formats: json, sarif, html].")
@click.option("--save-observations", "save_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write everything observed (cookies, storage, requests) as JSON for --observations.")
@_one_line_errors
def check(declarations_path: Path, hars: tuple[Path, ...], set_cookie_files: tuple[Path, ...],
          origin: str | None, saved: tuple[Path, ...], url: str | None, reject_selector: str | None,
          accept_selector: str | None, click_selector: str | None, settle: float, third_party_cookies: str,
          chromium: str | None, chromium_args: tuple[str, ...], ocd_csv: Path | None, formats: tuple[str, ...],
          outputs: tuple[Path, ...], output_dir: Path | None, save_path: Path | None) -> None:
    """Check observed cookies, storage and requests against the declarations; exit 1 on any error."""
    from .checks import CheckInput, classify_requests, dedupe, exit_code, run_checks
    from .declarations import load_declarations
    from .knowledge import builtin, ocd_facts
    from .output import render
    from .record import Evidence

    if (click_selector or reject_selector or accept_selector) and not url:
        raise click.UsageError("--click, --reject and --accept need --url")
    if origin and not set_cookie_files:
        raise click.UsageError("--origin only applies to --set-cookie-file")
    targets = _targets(formats, outputs, output_dir)
    decls = load_declarations(declarations_path)
    knowledge = builtin()
    if ocd_csv:
        knowledge = knowledge.extended(ocd_facts(ocd_csv))
    evidence = Evidence()
    expect_cookies = any(c.storage == "cookie" for _, c in decls.cookies())
    for har in hars:
        evidence.add(_from_har(har, expect_cookies))
    if set_cookie_files:
        if origin is None:
            if not decls.first_party_domains:
                raise click.UsageError("--set-cookie-file needs --origin when no first_party_domains are declared")
            origin = f"https://{decls.first_party_domains[0]}/"
        evidence.add(_from_set_cookie_files(set_cookie_files, origin))
    for path in saved:
        from .record import load

        evidence.add(load(path))
    if url:
        evidence.add(_from_browser(url, click=click_selector, reject=reject_selector, accept=accept_selector,
                                   settle=settle, executable=chromium, third_party_cookies=third_party_cookies,
                                   extra_args=chromium_args))
    if save_path:
        from .record import save

        _write(save_path, lambda: save(evidence, save_path))
    hosts = evidence.first_party_hosts + ([] if decls.first_party_domains else evidence.page_hosts)
    first_party = tuple(h for h in hosts if h)
    evidence.requests = classify_requests(evidence.requests, decls.first_party_domains + first_party, knowledge)
    findings = dedupe(evidence.findings + run_checks(CheckInput(
        declarations=decls, observations=tuple(evidence.observations), knowledge=knowledge,
        extra_first_party=first_party, storages_observed=frozenset(evidence.storages),
        requests=tuple(evidence.requests))))
    inputs = evidence.inputs or ["declarations only (no --har, --set-cookie-file, --observations or --url)"]
    for fmt, target in targets:
        report = render(fmt, findings, evidence.observations, inputs=inputs, version=_version(),
                        default_file=str(declarations_path), requests=evidence.requests, visits=evidence.visits)
        if target is None:
            click.echo(report, nl=False)
            continue
        _write(target, functools.partial(target.write_text, report, encoding="utf-8"))
        errors = sum(1 for f in findings if f.severity == "error")
        click.echo(f"{len(findings)} finding(s), {errors} error(s); {fmt} report written to {target}", err=True)
    sys.stdout.flush()
    raise click.exceptions.Exit(exit_code(findings))


def _targets(formats: tuple[str, ...], outputs: tuple[Path, ...],
             output_dir: Path | None) -> list[tuple[str, Path | None]]:
    """Which report goes where: every format comes from the same observations (one visit)."""
    if output_dir is not None:
        if outputs:
            raise click.UsageError("use --output or --output-dir, not both")
        chosen = list(dict.fromkeys(formats)) or ["json", "sarif", "html"]
        return [(fmt, output_dir / f"cookies.{_SUFFIX[fmt]}") for fmt in chosen]
    if outputs:
        if formats and len(formats) != len(outputs):
            raise click.UsageError(f"{len(formats)} --format for {len(outputs)} --output: give one per "
                                   "output, or none to take each format from its file suffix")
        return [(formats[i] if formats else _format_from_suffix(path), path) for i, path in enumerate(outputs)]
    if len(formats) > 1:
        raise click.UsageError("several --format need an --output each, or --output-dir")
    return [(formats[0] if formats else "text", None)]


def _from_har(har: Path, expect_cookies: bool) -> Any:
    from .har import read_har
    from .record import Evidence

    result = read_har(har, expect_cookies=expect_cookies)
    evidence = Evidence(observations=result.observations, findings=result.findings, inputs=[f"HAR {har}"])
    if result.first_url:
        evidence.page_hosts.append(urlsplit(result.first_url).hostname or "")
    if not result.sanitized:
        evidence.storages.add("cookie")
    return evidence


def _from_set_cookie_files(paths: tuple[Path, ...], origin: str) -> Any:
    from .observe import read_set_cookie_file
    from .record import Evidence

    evidence = Evidence(page_hosts=[urlsplit(origin).hostname or ""], storages={"cookie"})
    for path in paths:
        obs, found = read_set_cookie_file(path, origin)
        evidence.observations += obs
        evidence.findings += found
        evidence.inputs.append(f"Set-Cookie lines {path}")
    return evidence


def _from_browser(url: str, **options: Any) -> Any:
    from .browser import observe_url
    from .record import Evidence

    result = observe_url(url, **options)
    meta = result.meta
    visit = {"url": url, "scenarios": result.scenarios} | meta
    return Evidence(
        observations=result.observations, findings=result.findings, requests=result.requests,
        inputs=[f"browser {url} ({', '.join(result.scenarios)}; {meta.get('browser', '?')}, settle "
                f"{meta.get('settle_seconds')} s, third-party cookies {meta.get('third_party_cookies')})"],
        storages={"cookie", "localStorage", "sessionStorage"}, first_party_hosts=[urlsplit(url).hostname or ""],
        visits=[visit])


def _write(path: Path, write: Callable[[], Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


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

