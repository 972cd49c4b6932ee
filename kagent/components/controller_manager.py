"""Pure. kube-controller-manager (reference/k0s.md §2.7): ccm.conf kubeconfig, signs kubelet
certs with the cluster CA, leader election off on a single controller."""

from __future__ import annotations

import ipaddress

from kagent.components.common import STOP_TIMEOUT, assemble, flag_value, port_of
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, HttpCheck

NAME = "kube-controller-manager"
ROLES = (Role.CONTROLLER,)
DEFAULT_SECURE_PORT = 10257
SINGLE_REASON = "leader election is off on a single controller"


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and not ctx.is_disabled(NAME)


def node_cidr_mask(pod_cidr: str) -> str:
    return "117" if ipaddress.ip_network(pod_cidr).version == 6 else "24"


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    conf = str(p.pki("ccm.conf"))
    net = ctx.config.network
    over = ctx.config.controller_manager
    defaults = {
        "allocate-node-cidrs": "true",
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "client-ca-file": str(p.pki("ca.crt")),
        "cluster-cidr": net.pod_cidr,
        "cluster-name": ctx.config.name,
        "cluster-signing-cert-file": str(p.pki("ca.crt")),
        "cluster-signing-key-file": str(p.pki("ca.key")),
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": conf,
        "leader-elect": "true",
        "node-cidr-mask-size": node_cidr_mask(net.pod_cidr),
        "profiling": "false",
        "requestheader-client-ca-file": str(p.pki("front-proxy-ca.crt")),
        "root-ca-file": str(p.pki("ca.crt")),
        "service-account-private-key-file": str(p.pki("sa.key")),
        "service-cluster-ip-range": net.service_cidr,
        "terminated-pod-gc-threshold": "12500",
        "use-service-account-credentials": "true",
        "v": "1",
    }
    forced = {"leader-elect": "false"} if ctx.single_controller else {}
    args, notes = assemble(defaults, extra=over.extra_args, extra_source="spec.controllerManager.extraArgs",
                           forced=forced, forced_reason=SINGLE_REASON, raw=over.raw_args)
    port = port_of(flag_value(args, "secure-port", str(DEFAULT_SECURE_PORT)), DEFAULT_SECURE_PORT)
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        after=("kube-apiserver",),
        health=HttpCheck(url=f"https://127.0.0.1:{port}/healthz", ca_file=None),
        stop_timeout=STOP_TIMEOUT,
        reads=(p.pki("ccm.conf"), p.pki("ca.crt"), p.pki("ca.key"), p.pki("front-proxy-ca.crt"), p.pki("sa.key")),
        notes=notes,
    )
