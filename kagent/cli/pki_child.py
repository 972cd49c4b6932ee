"""``kagent pki-apply`` (hidden): the PKI child the agent runs for each PKI apply and renewal
check (kagent.pki.child), so the long-lived agent never loads ``cryptography``. Reads one
plan as JSON on stdin, answers one JSON document on stdout; logs go to stderr."""

from __future__ import annotations

import sys

import click

from kagent.cli.app import AppContext


@click.command("pki-apply", hidden=True)
@click.pass_obj
def pki_apply(app: AppContext) -> int:
    """Apply the PKI plan on stdin (run by the agent, not by operators)."""
    from kagent.pki.child import serve

    if sys.stdin.isatty():
        raise click.UsageError("pki-apply is run by the agent with a plan on stdin, not by hand")
    return serve(sys.stdin.buffer, sys.stdout.buffer, debug=app.debug)
