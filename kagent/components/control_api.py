"""Pure. control-api: the controller API (DESIGN §7) as its own supervised child, like
k0s's ``k0s api``: the kagent executable itself (``Context.options.kagent_argv``) running the
hidden ``kagent api`` on ``spec.api.controlApiPort`` with ``pki/control-api.crt``. Started
after etcd (tokens and node records live there); health is ``GET /healthz`` over TLS,
verified against the cluster CA. Needs etcd storage: with kine there is nothing to join.

It listens on every address (k0s's ``:9443``) unless ``spec.api.extraArgs.bind-address``
names one, as in k0s."""

from __future__ import annotations

from pathlib import Path

from kagent.components.common import STOP_TIMEOUT, url_host
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, HttpCheck
from kagent.config.model import StorageType

NAME = "control-api"
ROLES = (Role.CONTROLLER,)
_ANY = ("", "0.0.0.0", "::")


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and ctx.storage == StorageType.ETCD and not ctx.is_disabled(NAME)


def bind_address(ctx: Context) -> str:
    return ctx.config.api.extra_args.get("bind-address", "")


def probe_host(ctx: Context) -> str:
    bind = bind_address(ctx)
    if bind in _ANY:
        return "::1" if bind == "::" else "127.0.0.1"
    return bind


def apiserver_url(ctx: Context) -> str:
    """The apiserver URL joined workers get (pki.plan.external_api_url, without importing the PKI)."""
    api = ctx.config.api
    return f"https://{url_host(api.external_address or api.address)}:{api.port}"


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    port = ctx.config.api.control_api_port
    argv = ctx.options.kagent_argv
    args = (
        *argv[1:],
        f"--data-dir={p.data_dir}",
        f"--run-dir={p.run_dir}",
        "api",
        f"--bind-address={bind_address(ctx)}",
        f"--port={port}",
        f"--etcd-endpoint=https://127.0.0.1:{ctx.config.storage.etcd.client_port}",
        f"--apiserver-url={apiserver_url(ctx)}",
        f"--certificate-expiry={int(ctx.config.pki.certificates_expire_after.total_seconds())}s",
    )
    return ComponentSpec(
        name=NAME,
        binary=Path(argv[0]),
        args=args,
        after=("etcd",),
        health=HttpCheck(url=f"https://{url_host(probe_host(ctx))}:{port}/healthz", ca_file=p.pki("ca.crt")),
        startup_timeout=30.0,
        stop_timeout=STOP_TIMEOUT,
        reads=(p.pki("ca.crt"), p.pki("ca.key"), p.pki("control-api.crt"), p.pki("control-api.key"),
               p.etcd_pki("ca.crt"), p.pki("apiserver-etcd-client.crt"), p.pki("apiserver-etcd-client.key")),
    )
