"""``kagent config create | validate | print-args``."""

from __future__ import annotations

import click

from kagent.cli.app import AppContext
from kagent.cli.nodeopts import node_flags, node_context


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


@config.command("print-args")
@click.argument("component")
@click.option("--role", type=click.Choice(["controller", "worker"]), default=None,
              help="Node role (default: worker for containerd/kubelet, controller otherwise).")
@node_flags
@click.pass_obj
def print_args(app: AppContext, /, component: str, role: str | None, **flags: object) -> None:
    """Print COMPONENT's exact argv, one item per line (the binary first), as this node would
    run it with the given flags. Notes about overridden flags go to stderr."""
    from kagent.components import NAMES, module_of, specs_for
    from kagent.components.context import Role
    from kagent.errors import UsageError

    module = module_of(component)
    if module is None:
        raise UsageError("print-args", f"{component!r} is not a component", hint=f"components: {', '.join(NAMES)}")
    node_role = Role(role) if role else module.ROLES[0]
    ctx = node_context(app, node_role, **flags)  # type: ignore[arg-type]
    spec = next((s for s in specs_for(ctx) if s.name == component), None)
    if spec is None:
        raise UsageError("print-args", f"{component} does not run on a {node_role} with these flags and this config",
                         hint=_not_running_hint(component))
    for note in spec.notes:
        click.echo(f"note: {component}: {note}", err=True)
    if not spec.binary.exists():
        click.echo(f"note: {component}: {spec.binary} does not exist yet", err=True)
    click.echo("\n".join(spec.argv))


def _not_running_hint(component: str) -> str:
    return {
        "kine": "kine runs with --single or spec.storage.type: kine",
        "etcd": "etcd runs on a controller without --single when spec.storage.type is etcd",
        "konnectivity-server": "konnectivity-server runs on a controller without --single",
        "containerd": "containerd runs on a worker, or a controller with --enable-worker/--single",
        "kubelet": "kubelet runs on a worker, or a controller with --enable-worker/--single",
    }.get(component, "check --role and --disable-components")
