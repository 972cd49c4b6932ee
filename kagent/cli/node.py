"""``kagent node list|remove``: the worker nodes the controller API recorded at join."""

from __future__ import annotations

import json

import click

from kagent.cli.app import AppContext


@click.group()
def node() -> None:
    """Worker nodes joined with a token (recorded in the cluster's etcd)."""


@node.command("list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def list_(app: AppContext, output: str) -> None:
    """List joined nodes: name, joined at, token id, certificate expiry."""
    from kagent.join.store import local_store

    nodes = sorted(local_store(app.paths, app.load_config().storage.etcd.client_port).list_nodes(), key=lambda n: n.name)
    rows = [n.as_row() for n in nodes]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no joined nodes")
        return
    width = max(12, *(len(r["name"]) + 2 for r in rows))
    click.echo(f"{'NAME':<{width}}{'JOINED':<22}{'TOKEN':<8}CERT-EXPIRES")
    for r in rows:
        click.echo(f"{r['name']:<{width}}{r['joinedAt']:<22}{r['tokenId']:<8}{r['certificateNotAfter']}")


@node.command("remove")
@click.argument("name")
@click.pass_obj
def remove(app: AppContext, name: str) -> None:
    """Forget a joined node: its name may join again, and it can no longer renew its certificate."""
    from kagent.errors import PreconditionError
    from kagent.join.store import local_store

    if not local_store(app.paths, app.load_config().storage.etcd.client_port).remove_node(name):
        raise PreconditionError(f"node {name}", "is not a joined node", hint="see `kagent node list`")
    click.echo(f"node {name} removed")
