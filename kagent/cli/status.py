"""``kagent status [-o text|json|yaml]`` and ``kagent reload``: thin clients of
``<run>/status.sock``."""

from __future__ import annotations

import json

import click

from kagent.cli.app import AppContext
from kagent.errors import ComponentError, ConfigError, PreconditionError


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True)
@click.pass_obj
def status(app: AppContext, output: str) -> None:
    """Show the running agent and each component's state, pid, restarts, uptime and health."""
    from kagent.supervisor.status import render_text, request

    code, doc = request(app.paths.status_sock, "GET", "/status")
    if code != 200:
        raise PreconditionError(str(app.paths.status_sock), f"the agent answered HTTP {code}: {doc}")
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())
    else:
        click.echo(render_text(doc))


@click.command()
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait for the reload (restarted components becoming healthy).")
@click.pass_obj
def reload(app: AppContext, timeout: float) -> None:
    """Re-read the config (like SIGHUP) and restart only the components that changed."""
    from kagent.supervisor.status import render_plan, request

    code, plan = request(app.paths.status_sock, "POST", "/reload", timeout=timeout)
    if code == 409:
        raise PreconditionError("reload", plan.get("error") or "the agent cannot reload now")
    if code != 200:
        raise PreconditionError(str(app.paths.status_sock), f"the agent answered HTTP {code}: {plan}")
    if plan.get("rejected"):
        reason = (plan.get("error") or "").removeprefix("error: ")
        raise ConfigError("", f"new config rejected, nothing was changed: {reason}",
                          hint="fix the config and run kagent reload again")
    click.echo(render_plan(plan))
    failing = plan.get("failing") or []
    if failing:
        raise ComponentError("reload", f"not healthy within the startup timeout after the reload: {', '.join(failing)}",
                             hint="see kagent status and the log lines with component=" + failing[0])
