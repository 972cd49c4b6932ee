"""``kagent config create | validate | print-args``."""

from __future__ import annotations

import click

from kagent.cli.app import AppContext


@click.group()
def config() -> None:
    """Create, validate or explain the cluster config."""


@config.command()
@click.pass_obj
def create(app: AppContext) -> None:
    """Print the full default config (with this host's address) as YAML."""
    from kagent.config.load import dump_config, load_config

    click.echo(dump_config(load_config(None, host_address=app.facts().default_address)), nl=False)


@config.command()
@click.pass_obj
def validate(app: AppContext) -> None:
    """Check the config given with -c FILE (or '-' for stdin): exit 0 when valid, 3 when not."""
    from kagent.errors import UsageError

    if app.config_arg is None:
        raise UsageError("config validate", "no config given", hint="pass it with -c FILE (or -c - for stdin)")
    cfg = app.load_config()
    for w in cfg.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{app.config_source()}: valid")
