"""``retention holds sync``: mirror our holds into S3 Object Lock legal holds."""

from __future__ import annotations

import click

from retention_core import ConfigError, RetentionError, covering_holds
from retention_core.host import config_option, open_runtime


@click.command("sync")
@config_option
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Only this S3 source (repeatable).")
def sync(config: str, dry_run: bool, sources: tuple[str, ...]) -> None:
    """Place S3 legal holds on versions our active holds cover; lift the ones we placed when released.

    Only versions this command switched ON are ever switched OFF (they are remembered in
    the state store); legal holds placed by anyone else are left alone.
    """
    from .backend import S3Backend
    from .holds_sync import sync_source

    failed = 0
    with open_runtime(config) as rt:
        chosen = [rt.policy.source(n) for n in sources] if sources else \
            [s for s in rt.policy.sources if s.backend == "s3"]
        if not chosen:
            raise ConfigError("no source uses backend 's3': nothing to sync", file=str(rt.policy.path))
        holds = rt.holds()
        for source in chosen:
            backend = rt.backend(source)
            if not isinstance(backend, S3Backend):
                raise ConfigError(f"source {source.name!r} uses backend {source.backend!r}, not s3",
                                  file=str(rt.policy.path), key="--source")
            if not backend.versioned() or not backend.lock_enabled():
                raise RetentionError(f"{source.name}: bucket {backend.settings.bucket!r} has no Object Lock "
                                     "(legal holds need a versioned bucket created with Object Lock)")
            result = sync_source(engine=rt.state.engine, client=backend.client, bucket=backend.settings.bucket,
                                 source=source.name, records=rt.records(source), holds=holds,
                                 covering=covering_holds, dry_run=dry_run)
            for change in result.changes:
                click.echo(f"{source.name}: {change.action.upper():7} {change.key} "
                           f"(version {change.version}): {change.detail}")
            verb = "would switch" if dry_run else "switched"
            click.echo(f"{source.name}: {verb} {result.count('on')} ON, {result.count('off')} OFF; "
                       f"{result.count('foreign')} held by someone else (untouched); {result.count('failed')} failed")
            failed += result.count("failed")
    if failed:
        raise click.exceptions.Exit(1)
