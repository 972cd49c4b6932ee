"""``kagent reset [--dry-run]``: stop this instance's leftovers, unmount, remove its data."""

from __future__ import annotations

from pathlib import Path

import click

from kagent.cli.app import AppContext
from kagent.errors import KagentError


class ResetFailed(KagentError):
    """Some steps failed (each already printed with its path); exit 1."""


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be stopped, unmounted and removed; change nothing.")
@click.option("--root", "service_root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Where the service files are (as `kagent uninstall --root`: tests, image builds).")
@click.option("--force", is_flag=True, help="Reset a member of a multi-member etcd cluster without leaving it first "
              "(when no other controller can be reached).")
@click.pass_obj
def reset(app: AppContext, dry_run: bool, service_root: Path, force: bool) -> int:
    """Remove this node's kagent state: the installed service that runs this data dir, leftover
    children (and their containers), every mount below the data dir, kubelet root and run dir,
    then the data dir's contents and the run dir. A controller that is one member of a
    multi-member etcd cluster first leaves it through another controller's API (refused when
    none answers, unless --force); a worker joined with a token first removes its node record.
    Refused while the agent runs. Safe to run twice."""
    from kagent.reset import reset as do_reset

    report = do_reset(app.paths, dry_run=dry_run, force=force, service_root=service_root.absolute())
    plan = report.plan
    if dry_run:
        for what in plan.leave:
            click.echo(f"would leave: {what}")
        for unit in plan.services:
            click.echo(f"would remove service: {unit}")
        for t in plan.stop:
            click.echo(f"would stop: pid {t.pid} {t.name} ({t.reason})")
        for m in plan.unmount:
            click.echo(f"would unmount: {m}")
        for r in plan.remove:
            click.echo(f"would remove: {r}")
        for k in plan.keep_mounted:
            click.echo(f"would empty: {k} (a mount point: kept mounted)")
        for n in plan.notes:
            click.echo(f"note: {n}")
        if plan.empty:
            click.echo("nothing to reset")
        return 0
    for line in report.done:
        click.echo(line)
    for n in (*plan.notes, *report.notes):
        click.echo(f"note: {n}")
    if plan.empty:
        click.echo("nothing to reset")
    if report.failures:
        for f in report.failures:
            click.echo(f"error: {f.path}: {f.what}", err=True)
        raise ResetFailed("reset", f"{len(report.failures)} step(s) failed (listed above); the rest was done",
                          hint="fix what is named and run kagent reset again")
    return 0
