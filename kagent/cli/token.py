"""``kagent token create|list|invalidate``: join tokens, kept in the running controller's etcd."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from kagent.cli.app import AppContext

if TYPE_CHECKING:
    from datetime import timedelta

    from kagent.join.store import JoinStore


def _store(app: AppContext) -> JoinStore:
    from kagent.join.store import local_store

    return local_store(app.paths, app.load_config().storage.etcd.client_port)


def _expiry(text: str) -> timedelta:
    from datetime import timedelta

    from kagent.config.load import parse_duration
    from kagent.errors import ConfigError, UsageError

    if text.strip() in ("0", "0s"):
        return timedelta(0)
    try:
        d = parse_duration(text, "--expiry")
    except ConfigError:
        raise UsageError("--expiry", f"{text!r} is not a duration", hint="write e.g. 24h, 90m, 7d, or 0 for a token that never expires") from None
    return d


def _iso(t: object) -> str | None:
    from datetime import datetime, timezone

    if not isinstance(t, datetime):
        return None
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.group()
def token() -> None:
    """Join tokens: create one for a worker or controller, list them, invalidate them."""


@token.command("create")
@click.option("--role", type=click.Choice(["worker", "controller"]), default="worker", show_default=True)
@click.option("--expiry", default="24h", show_default=True, metavar="DURATION",
              help="How long the token may be used (0: never expires; not recommended).")
@click.pass_obj
def create(app: AppContext, role: str, expiry: str) -> None:
    """Create a join token and print it (the only time the secret is shown)."""
    from kagent.agent import utcnow
    from kagent.join.token import TokenRole, encode_token, server_url
    from kagent.pki.store import load_ca

    lifetime = _expiry(expiry)
    config = app.load_config()
    ca = load_ca(app.paths)
    store = _store(app)
    host = config.api.external_address or config.api.address
    tok = store.create_token(role=TokenRole(role), expiry=lifetime, now=utcnow(),
                             server=server_url(host, config.api.control_api_port), ca_pem=ca.cert_pem)
    if not lifetime:
        click.echo(f"warning: token {tok.token_id} never expires; invalidate it when done: kagent token invalidate {tok.token_id}",
                   err=True)
    click.echo(encode_token(tok))


@token.command("list")
@click.option("--role", type=click.Choice(["worker", "controller"]), default=None, help="Only tokens of this role.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def list_(app: AppContext, role: str | None, output: str) -> None:
    """List the tokens: id, role, created, expires, uses (never the secrets)."""
    from kagent.agent import utcnow

    now = utcnow()
    rows = []
    for rec, uses in sorted(_store(app).list_tokens(), key=lambda ru: (ru[0].created, ru[0].token_id)):
        if role and str(rec.role) != role:
            continue
        rows.append({"id": rec.token_id, "role": str(rec.role), "created": _iso(rec.created), "expires": _iso(rec.expires),
                     "expired": rec.expired(now), "uses": uses})
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no join tokens")
        return
    click.echo(f"{'ID':<8}{'ROLE':<12}{'CREATED':<22}{'EXPIRES':<22}USES")
    for r in rows:
        expires = str(r["expires"] or "never")
        if r["expired"]:
            expires += " (expired)"
        click.echo(f"{r['id']:<8}{r['role']:<12}{r['created']:<22}{expires:<22}{r['uses']}")


@token.command("invalidate")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.pass_obj
def invalidate(app: AppContext, ids: tuple[str, ...]) -> None:
    """Invalidate tokens by id: they are refused (401) from now on."""
    from kagent.errors import UsageError
    from kagent.join.token import ID_RE

    for tid in ids:
        if not ID_RE.match(tid):
            raise UsageError("ID", f"{tid!r} is not a token id ([a-z0-9]{{6}})", hint="see `kagent token list`")
    store = _store(app)
    for tid in ids:
        if store.invalidate(tid):
            click.echo(f"token {tid} invalidated")
        else:
            click.echo(f"token {tid}: no such token (already invalidated?)", err=True)
