"""``kagent sysinfo [-o text|json] [--controller] [--worker]``."""

from __future__ import annotations

import click

from kagent.cli.app import AppContext


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--controller", is_flag=True, help="Check what a controller needs.")
@click.option("--worker", is_flag=True, help="Check what a worker needs.")
@click.pass_obj
def sysinfo(app: AppContext, output: str, controller: bool, worker: bool) -> None:
    """Preflight checks, each pass/warn/fail with the value seen. Without --controller and
    --worker, checks both roles. Ports and the storage binary follow the config (-c).
    Exit 0 when nothing failed, 4 otherwise."""
    from kagent import sysinfo as si
    from kagent.errors import PreconditionError

    roles = {r for r, on in ((si.Role.CONTROLLER, controller), (si.Role.WORKER, worker)) if on}
    checks = si.preflight(roles, app.load_config(), app.paths)  # neither flag: both roles
    click.echo(si.render_json(checks) if output == "json" else si.render_text(checks), nl=False)
    bad = si.failed(checks)
    if bad:
        raise PreconditionError("sysinfo", f"{len(bad)} of {len(checks)} checks failed: {', '.join(c.name for c in bad)}",
                                hint="fix the FAIL lines above, then run kagent sysinfo again")
