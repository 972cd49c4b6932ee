"""``kagent etcd member-list [-o text|json]`` and ``kagent etcd leave [--peer-address A]``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from kagent.cli.app import AppContext

if TYPE_CHECKING:
    from kagent.config.model import ClusterConfig
    from kagent.join.etcdclient import EtcdClient


@click.group()
def etcd() -> None:
    """Manage this controller's etcd membership."""


def _local(app: AppContext) -> tuple[ClusterConfig, EtcdClient]:
    from kagent.errors import PreconditionError
    from kagent.join.etcdclient import local_client

    config = app.load_config()
    if not app.paths.etcd_pki("ca.crt").exists():
        raise PreconditionError(str(app.paths.data_dir), "holds no etcd PKI (pki/etcd/ca.crt): not a controller's data dir",
                                hint="run this on a controller, or pass its --data-dir")
    return config, local_client(app.paths, config.storage.etcd.client_port, timeout=5)


@etcd.command("member-list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def member_list(app: AppContext, output: str) -> int:
    """List the etcd members, through this controller's etcd (it must be running)."""
    from kagent.errors import PreconditionError
    from kagent.join.etcdclient import EtcdUnavailable

    _config, client = _local(app)
    with client:
        try:
            members = client.member_list()
        except EtcdUnavailable as e:
            raise PreconditionError(e.where, e.what, hint="is this controller running? (kagent status)") from e
    if output == "json":
        click.echo(json.dumps({"members": [m.to_json() for m in members]}, indent=2))
        return 0
    rows = [("ID", "NAME", "PEER URLS", "CLIENT URLS", "LEARNER")]
    for m in members:
        rows.append((f"{m.id:x}", m.name or "(not started)", ",".join(m.peer_urls), ",".join(m.client_urls),
                     "yes" if m.is_learner else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


@etcd.command()
@click.option("--peer-address", default=None, metavar="A",
              help="Remove the member whose peer address is A (default: this controller's own member).")
@click.pass_obj
def leave(app: AppContext, peer_address: str | None) -> int:
    """Remove an etcd member cleanly; the remaining cluster stays writable.

    Without --peer-address: this controller's own member, through its own etcd when that
    runs, else through another controller's API (authenticated by pki/etcd/member.crt).
    With --peer-address: that member, through this controller's etcd."""
    from kagent import log
    from kagent.errors import PreconditionError
    from kagent.join import controller as cj
    from kagent.join import membership
    from kagent.join.etcdclient import EtcdUnavailable

    log.configure(fmt=app.log_format, verbose=app.verbose, debug=app.debug)
    config, client = _local(app)
    own = config.storage.etcd.peer_address
    st = cj.load_state(app.paths)
    self_leave = peer_address is None or peer_address.strip("[]").lower() == own.lower()
    with client:
        try:
            reachable = client.health(timeout=3)
        except EtcdUnavailable:
            reachable = False
        if not self_leave:
            if not reachable:
                raise PreconditionError(f"etcd {client.endpoints[0]}", "this controller's etcd is not running",
                                        hint="run kagent etcd leave --peer-address on a running controller")
            removed, left = membership.remove(client, address=peer_address, deadline_s=30)
            click.echo(f"removed etcd member {removed.name or f'{removed.id:x}'} ({','.join(removed.peer_urls)}); "
                       f"{len(left)} left")
            return 0
        if st is None:
            raise PreconditionError(str(cj.state_path(app.paths)), "this data dir holds no etcd member",
                                    hint="run it on a controller that ran etcd")
        if reachable:
            removed, left = membership.remove(client, node=st.name, deadline_s=30)
            cj.save_state(app.paths, cj.MemberState(name=st.name, state="left", api_urls=st.api_urls))
            through = "its own etcd"
        else:
            from kagent.pki.plan import https_url

            own_api = https_url(config.api.address, config.api.control_api_port)
            through = cj.leave_through_api(app.paths, name=st.name, api_urls=[u for u in st.api_urls if u != own_api])
    click.echo(f"etcd member {st.name} left the cluster (through {through})")
    click.echo("hint: stop this controller and reset it (kagent reset) before reusing the host", err=True)
    return 0
