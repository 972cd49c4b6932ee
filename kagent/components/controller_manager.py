"""Pure. kube-controller-manager (reference/k0s.md §2.7): ccm.conf kubeconfig, signs kubelet
certs with the cluster CA, leader election off on a single controller."""

from __future__ import annotations

import ipaddress

from kagent.components.common import control_loop_spec
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec

NAME = "kube-controller-manager"
ROLES = (Role.CONTROLLER,)
DEFAULT_SECURE_PORT = 10257


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and not ctx.is_disabled(NAME)


def node_cidr_mask(pod_cidr: str) -> str:
    return "117" if ipaddress.ip_network(pod_cidr).version == 6 else "24"


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    conf = str(p.pki("ccm.conf"))
    net = ctx.config.network
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
    return control_loop_spec(ctx, name=NAME, defaults=defaults, overrides=ctx.config.controller_manager,
                             source="spec.controllerManager.extraArgs", default_port=DEFAULT_SECURE_PORT,
                             run_as=ctx.run_as(ctx.config.users.kube_apiserver_user),  # as k0s: the apiserver user
                             reads=(p.pki("ccm.conf"), p.pki("ca.crt"), p.pki("ca.key"), p.pki("front-proxy-ca.crt"), p.pki("sa.key")))
