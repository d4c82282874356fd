"""What the ``retention`` command line offers the commands a plugin attaches to it.

A plugin's command takes the same ``--config`` option as the core's and opens the policy with
the plugins the command line loaded, so it imports these from here, never from
:mod:`retention_core.cli`. Everything else a plugin needs is exported by :mod:`retention_core`.
"""

from __future__ import annotations

import click

from .plugins import Plugins, load_plugins
from .runtime import Runtime

#: The environment variable ``--config`` falls back to.
CONFIG_ENV = "RETENTION_CONFIG"
#: Where the running command line keeps its plugins in the click context (``ctx.meta``).
PLUGINS_META = "retention.plugins"

#: ``-c/--config FILE`` (or ``$RETENTION_CONFIG``): the policy file, passed as ``config``.
config_option = click.option(
    "-c", "--config", "config", envvar=CONFIG_ENV, required=True, metavar="FILE",
    type=click.Path(dir_okay=False), help=f"Policy YAML file (or ${CONFIG_ENV}).")


def share_plugins(plugins: Plugins) -> None:
    """Make *plugins* the ones every command of the current ``retention`` invocation uses."""
    click.get_current_context().meta[PLUGINS_META] = plugins


def current_plugins() -> Plugins:
    """The plugins of the running ``retention`` command; outside one, freshly loaded ones."""
    ctx = click.get_current_context(silent=True)
    shared = ctx.meta.get(PLUGINS_META) if ctx is not None else None
    return shared if isinstance(shared, Plugins) else load_plugins()


def open_runtime(config: str) -> Runtime:
    """The policy at *config* opened with :func:`current_plugins`; use it as ``with open_runtime(…) as rt``."""
    return Runtime.open(config, current_plugins())


__all__ = ["CONFIG_ENV", "config_option", "current_plugins", "open_runtime", "share_plugins"]
