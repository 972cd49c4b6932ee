"""``kagent kubeconfig create USER`` and ``kagent kubeconfig admin``: print a kubeconfig on
stdout. Both need the cluster CA in ``<data>/pki`` (exit 4 without it) and write nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from kagent.cli.app import AppContext


@click.group()
def kubeconfig() -> None:
    """Print the admin kubeconfig or create one for a user."""


@kubeconfig.command()
@click.argument("user")
@click.option("--groups", default="", metavar="G1,G2", help="Comma-separated groups; each becomes one O of the certificate.")
@click.option("--certificate-expires-after", "expires_after", default="8760h", show_default=True, metavar="DURATION",
              help="Lifetime of the client certificate (Go duration, or d for days).")
@click.option("--context-name", default="kagent", show_default=True, help="Name of the cluster and the context.")
@click.pass_obj
def create(app: AppContext, user: str, groups: str, expires_after: str, context_name: str) -> None:
    """Print a kubeconfig for USER with a fresh client certificate signed by the cluster CA.

    The server is https://<externalAddress or api address>:<port>. The key exists only in
    the printed text: nothing is left in <data>/pki. Exit 4 when the data dir holds no CA."""
    from kagent.config.load import parse_duration
    from kagent.errors import ConfigError, UsageError
    from kagent.pki.plan import external_api_url
    from kagent.pki.store import issue_client_kubeconfig

    if not user.strip():
        raise UsageError("kubeconfig create", "USER must not be empty")
    try:
        lifetime = parse_duration(expires_after, "--certificate-expires-after")
    except ConfigError as err:
        raise UsageError("--certificate-expires-after", err.what, hint=err.hint) from None
    if lifetime.total_seconds() <= 0:
        raise UsageError("--certificate-expires-after", f"{expires_after!r} must be longer than zero")
    config = app.load_config()
    text = issue_client_kubeconfig(
        app.paths, config, user=user, groups=[g.strip() for g in groups.split(",") if g.strip()],
        expires_after=lifetime, context_name=context_name, server=external_api_url(config),
        now=datetime.now(timezone.utc),
    )
    click.echo(text, nl=False)


@kubeconfig.command()
@click.pass_obj
def admin(app: AppContext) -> None:
    """Print the admin kubeconfig (system:masters) with the external server URL
    (https://<externalAddress or api address>:<port>). Exit 4 when the data dir holds no CA."""
    from kagent.pki.plan import external_api_url
    from kagent.pki.store import read_admin_kubeconfig

    click.echo(read_admin_kubeconfig(app.paths, external_api_url(app.load_config())), nl=False)
