"""``kagent etcd member-list [-o text|json]`` and ``kagent etcd leave [--peer-address A]``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from kagent.cli.app import AppContext

if TYPE_CHECKING:
    from pathlib import Path

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

    Without --peer-address: this controller's own member. With its agent running, the agent
    removes it and stops etcd and what needs it (kagent status shows etcd as left); else
    through another controller's API (authenticated by pki/etcd/member.crt).
    With --peer-address: that member, through this controller's etcd."""
    from kagent import log
    from kagent.errors import PreconditionError
    from kagent.join import membership
    from kagent.join.etcdclient import EtcdUnavailable

    log.configure(fmt=app.log_format, verbose=app.verbose, debug=app.debug)
    config, client = _local(app)
    own = config.storage.etcd.peer_address
    if peer_address is not None and peer_address.strip("[]").lower() != own.lower():
        with client:
            try:
                reachable = client.health(timeout=3)
            except EtcdUnavailable:
                reachable = False
            if not reachable:
                raise PreconditionError(f"etcd {client.endpoints[0]}", "this controller's etcd is not running",
                                        hint="run kagent etcd leave --peer-address on a running controller")
            removed, left = membership.remove(client, address=peer_address, deadline_s=30)
        click.echo(f"removed etcd member {removed.name or f'{removed.id:x}'} ({','.join(removed.peer_urls)}); "
                   f"{len(left)} left")
        return 0
    client.close()
    from kagent.node.lock import is_held

    if is_held(app.paths.lock_file) and _agent_socket_up(app):
        name, through, stopped = _leave_through_agent(app)
        click.echo(f"etcd member {name} left the cluster (through {through}); stopped: {', '.join(stopped) or 'nothing'}")
    else:
        from kagent.join.leave import remove_own_member
        from kagent.pki.plan import https_url

        name, through = remove_own_member(app.paths, client_port=config.storage.etcd.client_port,
                                          own_api=https_url(config.api.address, config.api.control_api_port))
        click.echo(f"etcd member {name} left the cluster (through {through})")
    click.echo("hint: stop this controller and reset it (kagent reset) before reusing the host", err=True)
    return 0


AGENT_SOCKET_WAIT_S = 5.0  # how long a leave waits for a starting agent's status socket


def _agent_socket_up(app: AppContext) -> bool:
    """The lock is held: a running agent, or one still starting (PKI, specs: its status socket
    is not up yet). Wait briefly for the socket: True once it is there, False when the lock is
    let go meanwhile (no agent runs); still held without a socket is exit 4 naming the holder."""
    import time

    from kagent.errors import PreconditionError
    from kagent.node.lock import holder, is_held

    deadline = time.monotonic() + AGENT_SOCKET_WAIT_S
    while not _answers(app.paths.status_sock) and is_held(app.paths.lock_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _answers(app.paths.status_sock):
        return True
    if not is_held(app.paths.lock_file):
        return False
    _, who = holder(app.paths)
    raise PreconditionError(str(app.paths.lock_file),
                            f"{who} holds this run dir but its status socket ({app.paths.status_sock}) is not up "
                            f"after {AGENT_SOCKET_WAIT_S:g} s: the agent is still starting (or a backup or restore runs)",
                            hint="retry kagent etcd leave once it is up (kagent status answers then)")


def _answers(sock: Path) -> bool:
    """Something accepts connections on ``sock`` (not a stale socket file of an agent killed before)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _leave_through_agent(app: AppContext) -> tuple[str, str, list[str]]:
    """``POST /etcd/leave`` on the running agent's status socket: (member, through, stopped)."""
    from kagent.errors import PreconditionError
    from kagent.join.leave import ROUTE
    from kagent.supervisor.status import request

    sock = str(app.paths.status_sock)
    code, doc = request(app.paths.status_sock, *ROUTE, timeout=120)
    err = doc.get("error") if isinstance(doc, dict) else None
    if code == 404:
        raise PreconditionError(sock, "the running agent runs no etcd member",
                                hint="kagent etcd leave applies to a controller with spec.storage.type etcd")
    if code != 200 or not isinstance(doc, dict):
        hint = doc.get("hint") if isinstance(doc, dict) and isinstance(doc.get("hint"), str) else None
        raise PreconditionError(sock, f"the agent did not leave (HTTP {code}): {err or doc}",
                                hint=hint or "see kagent status and the agent's log")
    stopped = doc.get("stopped")
    if not (isinstance(doc.get("member"), str) and isinstance(doc.get("through"), str) and isinstance(stopped, list)):
        raise PreconditionError(sock, f"the agent's answer is not what kagent expects: {doc!r:.200}",
                                hint="is the process on this socket the same version as this command? (kagent version)")
    return doc["member"], doc["through"], [str(n) for n in stopped]
