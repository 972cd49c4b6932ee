"""``kagent pki-apply`` (hidden): the PKI child the agent runs for each PKI apply and renewal
check (kagent.pki.child), so the long-lived agent never loads ``cryptography``. Reads one
plan as JSON on stdin, answers one JSON document on stdout; logs go to stderr. It dies with
the agent (``--parent-pid``: the agent's pid, checked after PR_SET_PDEATHSIG)."""

from __future__ import annotations

import sys

import click

from kagent.cli.app import AppContext


@click.command("pki-apply", hidden=True)
@click.option("--parent-pid", type=click.IntRange(min=1), required=True,
              help="The pid of the agent that runs this child; it exits at once when its parent is another.")
@click.pass_obj
def pki_apply(app: AppContext, parent_pid: int) -> int:
    """Apply the PKI plan on stdin (run by the agent, not by operators)."""
    from kagent.errors import PreconditionError
    from kagent.pki.child import die_with_parent, serve

    if not die_with_parent(parent_pid):  # the agent died before the prctl: this child is nobody's
        raise PreconditionError("pki", f"the agent (pid {parent_pid}) that started this PKI child is gone; nothing was written",
                                hint="the PKI child is run by the agent, not by hand")
    if sys.stdin.isatty():
        raise click.UsageError("pki-apply is run by the agent with a plan on stdin, not by hand")
    return serve(sys.stdin.buffer, sys.stdout.buffer, debug=app.debug)
