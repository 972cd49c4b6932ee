"""Pure. kubelet (reference/k0s.md §2.9): its KubeletConfiguration file is the worker
profile's values merged over k0s's defaults, then the node-local settings (client CA file,
runtime endpoint, resolv.conf, taints) on top; args name the kubeconfig, cert and root dirs,
labels and the node name."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Mapping


from kagent.components.common import CIPHER_SUITES, STOP_TIMEOUT, assemble
from kagent.components.context import CONTROL_PLANE_LABEL, CONTROL_PLANE_TAINT, Context, Role
from kagent.components.spec import ComponentSpec, FileSpec, HttpCheck
from kagent.errors import UsageError
from kagent.modes import MODE_CERT, MODE_KUBECONFIG

NAME = "kubelet"
ROLES = (Role.WORKER, Role.CONTROLLER)
DEFAULT_HEALTHZ_PORT = 10248
VOLUME_PLUGIN_DIR = "/usr/libexec/kagent/kubelet-plugins/volume/exec"


def enabled(ctx: Context) -> bool:
    return ctx.runs_worker and not ctx.is_disabled(NAME)


def cluster_dns(service_cidr: str) -> str:
    """The DNS service IP: the service range's base + 10 (+2 for tiny ranges), as k0s."""
    net = ipaddress.ip_network(service_cidr)
    offset = 10 if net.num_addresses > 16 else 2
    return str(net.network_address + offset)


def profile_defaults(ctx: Context) -> dict[str, Any]:
    """k0s's worker-profile defaults (workerconfig reconciler)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "clusterDNS": [cluster_dns(ctx.config.network.service_cidr)],
        "clusterDomain": ctx.config.network.cluster_domain,
        "eventRecordQPS": 0,
        "failSwapOn": False,
        "kubeReservedCgroup": "system.slice",
        "kubeletCgroups": "/system.slice/containerd.service",
        "rotateCertificates": True,
        "serverTLSBootstrap": True,
        "tlsCipherSuites": list(CIPHER_SUITES),
        "tlsMinVersion": "VersionTLS12",
        "volumePluginDir": VOLUME_PLUGIN_DIR,
    }


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_thaw(x) for x in v]
    return v


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``over`` replaces."""
    out = {k: _thaw(v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = _thaw(v)
    return out


def profile_values(ctx: Context) -> Mapping[str, Any]:
    name = ctx.options.profile
    prof = ctx.config.worker_profile(name)
    if prof is not None:
        return prof.values
    if name == "default":
        return {}
    known = ", ".join(p.name for p in ctx.config.worker_profiles) or "none defined"
    raise UsageError("--profile", f"worker profile {name!r} is not in spec.workerProfiles ({known})",
                     hint="add it to spec.workerProfiles or pass an existing name")


def taints(ctx: Context) -> list[dict[str, str]]:
    out = list(ctx.options.taints)
    if ctx.controller_with_worker and not ctx.options.single and not ctx.options.no_taints:
        out.insert(0, CONTROL_PLANE_TAINT)
    return [t.as_dict() for t in out]


def kubelet_config(ctx: Context) -> dict[str, Any]:
    p = ctx.paths
    cfg = deep_merge(profile_defaults(ctx), profile_values(ctx))
    node_local: dict[str, Any] = {
        "authentication": {"x509": {"clientCAFile": str(p.kubelet_ca)}},
        "containerRuntimeEndpoint": f"unix://{p.containerd_sock}",
        "resolvConf": str(ctx.options.resolv_conf),
    }
    registered = taints(ctx)
    if registered:
        node_local["registerWithTaints"] = registered
    return deep_merge(cfg, node_local)


def kubeconfig(ctx: Context) -> Path:
    return ctx.paths.kubelet_direct_conf if ctx.controller_with_worker else ctx.paths.kubelet_conf


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    node_name = ctx.facts.node_name
    labels = ([CONTROL_PLANE_LABEL] if ctx.controller_with_worker else []) + sorted(ctx.options.labels)
    defaults = {
        "cert-dir": str(p.kubelet_cert_dir),
        "config": str(p.kubelet_config),
        "containerd": str(p.containerd_sock),
        "hostname-override": node_name,
        "kubeconfig": str(kubeconfig(ctx)),
        "root-dir": str(p.kubelet_root),
        "runtime-cgroups": "/system.slice/containerd.service",
        "v": "1",
    }
    if labels:
        defaults["node-labels"] = ",".join(labels)
    extra = dict(ctx.options.kubelet_extra_args)
    # the node name is the one the PKI and the join used: --hostname-override always wins
    args, notes = assemble(defaults, extra=extra, extra_source="--kubelet-extra-args",
                           forced={"hostname-override": node_name}, forced_reason="the node name is fixed by the node's hostname")
    config = kubelet_config(ctx)
    port = config.get("healthzPort", DEFAULT_HEALTHZ_PORT)
    if not isinstance(port, int) or isinstance(port, bool):
        port = DEFAULT_HEALTHZ_PORT
    import yaml

    data = yaml.safe_dump(config, sort_keys=True, default_flow_style=False).encode()
    files = [FileSpec(path=p.kubelet_config, data=data, mode=MODE_KUBECONFIG)]
    if ctx.options.cluster_ca:
        files.append(FileSpec(path=p.kubelet_ca, data=ctx.options.cluster_ca, mode=MODE_CERT))
    after = ("containerd",) + (("kube-apiserver",) if ctx.controller_with_worker else ())
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        files=tuple(files),
        dirs=((p.kubelet_root, 0o755), (p.kubelet_run_dir, 0o755)),
        after=after,
        health=HttpCheck(url=f"http://127.0.0.1:{port}/healthz"),
        stop_timeout=STOP_TIMEOUT,
        reads=(kubeconfig(ctx),),
        notes=notes,
    )
