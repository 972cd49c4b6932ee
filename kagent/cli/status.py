"""``kagent status [-o text|json|yaml]`` and ``kagent reload``: thin clients of
``<run>/status.sock``. The agent's answer is checked before it is used: a wrong status, a
body of the wrong shape or a broken connection is exit 4 naming the socket, never a crash."""

from __future__ import annotations

import json
from typing import Any

import click

from kagent.cli.app import AppContext
from kagent.errors import ComponentError, ConfigError, PreconditionError

_HINT = "check the agent's log (or restart it); is the process on this socket a kagent?"

# what render_text reads; every field of DESIGN §3's document
_AGENT_FIELDS: dict[str, type | tuple[type, ...]] = {"version": str, "role": str, "pid": int, "uptime_s": (int, float)}
_COMPONENT_FIELDS: dict[str, type | tuple[type, ...]] = {"name": str, "state": str, "pid": (int, type(None)), "restarts": int, "health": str,
                     "uptime_s": (int, float, type(None)), "last_exit": (dict, type(None))}
_PLAN_LISTS = ("restarted", "signalled", "started", "stopped", "unchanged")


def status_shape_error(doc: Any) -> str | None:
    """Pure. Why ``doc`` is not a status document, or None when it is."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    agent, comps = doc.get("agent"), doc.get("components")
    if not isinstance(agent, dict):
        return "'agent' is missing or not an object"
    for key, types in _AGENT_FIELDS.items():
        if not isinstance(agent.get(key), types) or isinstance(agent.get(key), bool):
            return f"agent.{key} is missing or of the wrong type"
    if not isinstance(comps, list):
        return "'components' is missing or not a list"
    for i, c in enumerate(comps):
        if not isinstance(c, dict):
            return f"components[{i}] is not an object"
        for key, types in _COMPONENT_FIELDS.items():
            if key not in c or not isinstance(c[key], types) or isinstance(c[key], bool):
                return f"components[{i}].{key} is missing or of the wrong type"
        last = c["last_exit"]
        if last is not None and not (isinstance(last.get("signal"), int) or isinstance(last.get("code"), int)):
            return f"components[{i}].last_exit has neither a signal nor a code"
    return None


def plan_shape_error(plan: Any) -> str | None:
    """Pure. Why ``plan`` is not a reload answer, or None when it is."""
    if not isinstance(plan, dict):
        return f"expected a JSON object, got {type(plan).__name__}"
    for key in _PLAN_LISTS:
        names = plan.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            return f"'{key}' is not a list of component names"
    if plan.get("error") is not None and not isinstance(plan["error"], str):
        return "'error' is not a string"
    if plan.get("backup") is not None and not isinstance(plan["backup"], str):
        return "'backup' is not a string"
    return None


def _answer(app: AppContext, code: int, body: Any, shape_error: str | None, *, ok: tuple[int, ...] = (200,)) -> None:
    sock = str(app.paths.status_sock)
    if code not in ok:
        detail = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else json.dumps(body)[:200]
        raise PreconditionError(sock, f"the agent answered HTTP {code}: {detail}", hint=_HINT)
    if shape_error:
        raise PreconditionError(sock, f"the agent's answer is not what kagent expects: {shape_error}", hint=_HINT)


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.001), default=10.0, show_default=True,
              help="Seconds to wait for the agent's answer.")
@click.pass_obj
def status(app: AppContext, output: str, timeout: float) -> None:
    """Show the running agent and each component's state, pid, restarts, uptime and health."""
    from kagent.supervisor.status import render_text, request

    code, doc = request(app.paths.status_sock, "GET", "/status", timeout=timeout)
    _answer(app, code, doc, status_shape_error(doc))
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())
    else:
        click.echo(render_text(doc))


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.001), default=600.0, show_default=True,
              help="Seconds to wait for the reload (restarted components becoming healthy).")
@click.pass_obj
def reload(app: AppContext, timeout: float) -> None:
    """Re-read the config (like SIGHUP) and restart only the components that changed."""
    from kagent.supervisor.status import render_plan, request

    code, plan = request(app.paths.status_sock, "POST", "/reload", timeout=timeout)
    if code == 409 and isinstance(plan, dict):
        raise PreconditionError("reload", str(plan.get("error") or "the agent cannot reload now"))
    _answer(app, code, plan, plan_shape_error(plan))
    if plan.get("rejected"):
        reason = str(plan.get("error") or "").removeprefix("error: ")
        raise ConfigError("", f"new config rejected, nothing was changed: {reason}",
                          hint="fix the config and run kagent reload again")
    click.echo(render_plan(plan))
    failing = plan.get("failing") or []
    if failing:
        raise ComponentError("reload", f"not healthy within the startup timeout after the reload: {', '.join(failing)}",
                             hint="see kagent status and the log lines with component=" + failing[0])
