"""Pure. konnectivity-server (reference/k0s.md §2.4): the apiserver's egress proxy, on a unix
socket in the run dir; agents connect on ``spec.konnectivity.agentPort``.

k0s passes a random ``--server-id`` per start; kagent uses the node name so the spec (and its
hash) is the same on every rebuild and a SIGHUP does not restart konnectivity for nothing."""

from __future__ import annotations

from kagent.components.common import CIPHER_SUITES, STOP_TIMEOUT, assemble
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, HttpCheck

NAME = "konnectivity-server"
ROLES = (Role.CONTROLLER,)
HEALTH_PORT = 8092


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and ctx.konnectivity


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    konn = ctx.config.konnectivity
    defaults = {
        "admin-port": str(konn.admin_port),
        "agent-namespace": "kube-system",
        "agent-port": str(konn.agent_port),
        "agent-service-account": "konnectivity-agent",
        "authentication-audience": "system:konnectivity-server",
        "cipher-suites": ",".join(CIPHER_SUITES),
        "cluster-cert": str(p.pki("server.crt")),
        "cluster-key": str(p.pki("server.key")),
        "delete-existing-uds-file": "true",
        "enable-profiling": "false",
        "graceful-shutdown-timeout": "1ns",
        "health-bind-address": "localhost",
        "health-port": str(HEALTH_PORT),
        "kubeconfig": str(p.pki("konnectivity.conf")),
        "logtostderr": "true",
        "mode": "grpc",
        "proxy-strategies": "destHost,defaultRoute,default",
        "server-count": "1",
        "server-id": ctx.facts.node_name,
        "server-port": "0",
        "stderrthreshold": "1",
        "uds-name": str(p.konnectivity_sock),
        "v": "1",
    }
    args, notes = assemble(defaults)
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        dirs=((p.konnectivity_sock_dir, 0o755),),
        run_as=ctx.run_as(ctx.config.users.konnectivity_user),
        health=HttpCheck(url=f"http://127.0.0.1:{HEALTH_PORT}/healthz"),
        stop_timeout=STOP_TIMEOUT,
        reads=(p.pki("server.crt"), p.pki("server.key"), p.pki("konnectivity.conf")),
        notes=notes,
    )
