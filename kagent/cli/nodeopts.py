"""Edge. The node run flags of DESIGN §3 as reusable click options, and the one function that
turns them (plus this host's facts, binaries, containerd version and cluster CA) into the
``Context`` component modules read. Shared by ``config print-args`` and the run commands."""

from __future__ import annotations

import platform
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import click

from kagent.cli.app import AppContext
from kagent.components.context import Context, NodeOptions, Role


def node_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    """--enable-worker --single --disable-components --labels --taints --no-taints --profile
    --kubelet-extra-args --containerd-version."""
    opts = [
        click.option("--enable-worker", is_flag=True, help="Also run containerd and kubelet on this controller."),
        click.option("--single", is_flag=True, help="Single node: kine (sqlite) storage, no konnectivity, implies --enable-worker."),
        click.option("--disable-components", "disable_components", metavar="A,B", default=None,
                     help="Components not to run (comma-separated)."),
        click.option("--labels", metavar="K=V,..", default=None, help="Node labels for the kubelet."),
        click.option("--taints", metavar="K=V:EFFECT,..", default=None, help="Node taints for the kubelet."),
        click.option("--no-taints", is_flag=True, help="No control-plane taint on a controller with --enable-worker."),
        click.option("--profile", default="default", show_default=True, help="Worker profile (spec.workerProfiles[].name)."),
        click.option("--kubelet-extra-args", "kubelet_extra_args", metavar='"--FLAG=V .."', default=None,
                     help="Extra kubelet flags; they override kagent's."),
        click.option("--containerd-version", "containerd_version", metavar="X.Y", default=None,
                     help="Render containerd's config for this version instead of asking the binary."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _parse_version(text: str) -> tuple[int, int]:
    from kagent.bins import parse_version
    from kagent.errors import UsageError

    v = parse_version(text)
    if v is None:
        raise UsageError("--containerd-version", f"{text!r} is not a version", hint="write MAJOR.MINOR, e.g. 1.7 or 2.1")
    return v


def node_context(
    app: AppContext,
    role: Role,
    *,
    enable_worker: bool = False,
    single: bool = False,
    disable_components: str | None = None,
    labels: str | None = None,
    taints: str | None = None,
    no_taints: bool = False,
    profile: str = "default",
    kubelet_extra_args: str | None = None,
    containerd_version: str | None = None,
    join: bool = False,
    initial_cluster: tuple[str, ...] = (),
) -> Context:
    """Validate the flags (UsageError on a bad one), gather what the pure modules need, build
    the Context. Reads: facts, the binaries, ``containerd --version``, pki/ca.crt or the kubelet
    kubeconfig's CA, /etc/resolv.conf. Writes nothing."""
    from kagent import bins
    from kagent.components import ALL_MODULES, parse_disabled
    from kagent.components.context import go_arch, parse_kubelet_extra_args, parse_labels, parse_taints, pick_resolv_conf

    if role == Role.WORKER and (enable_worker or single):
        from kagent.errors import UsageError

        raise UsageError("--enable-worker" if enable_worker else "--single", "is a controller flag", hint="a worker always runs containerd and kubelet")
    paths = app.paths
    found = {m.NAME: bins.find_binary(m.NAME, paths) for m in ALL_MODULES}
    if containerd_version:
        ctd_version = _parse_version(containerd_version)
    else:
        ctd_bin = found.get("containerd")
        ctd_version = (bins.binary_version(ctd_bin) if ctd_bin else None) or NodeOptions().containerd_version
    etcd_bin = found.get("etcd")
    etcd_version = (bins.binary_version(etcd_bin) if etcd_bin else None) or NodeOptions().etcd_version
    options = NodeOptions(
        enable_worker=enable_worker or single,
        single=single,
        disabled=parse_disabled(disable_components, role, enable_worker=enable_worker or single),
        labels=parse_labels(labels),
        taints=parse_taints(taints),
        no_taints=no_taints,
        profile=profile,
        kubelet_extra_args=parse_kubelet_extra_args(kubelet_extra_args),
        join=join,
        initial_cluster=initial_cluster,
        containerd_version=ctd_version,
        etcd_version=etcd_version,
        bins=MappingProxyType({k: v for k, v in found.items() if v is not None}),
        arch=go_arch(platform.machine()),
        cluster_ca=_cluster_ca(paths.pki("ca.crt"), paths.kubelet_conf),
        resolv_conf=pick_resolv_conf(_read(Path("/etc/resolv.conf"))),
    )
    return Context(config=app.load_config(), paths=paths, facts=app.facts(), role=role, options=options)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _cluster_ca(ca_file: Path, kubeconfig: Path) -> bytes:
    """The cluster CA PEM: pki/ca.crt on a controller, else the kubelet kubeconfig's
    certificate-authority-data; empty when neither is there yet."""
    try:
        return ca_file.read_bytes()
    except OSError:
        pass
    text = _read(kubeconfig)
    if not text:
        return b""
    import base64
    import binascii

    import yaml

    try:
        doc = yaml.safe_load(text)
        data = doc["clusters"][0]["cluster"]["certificate-authority-data"]
        return base64.b64decode(data)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, binascii.Error):
        return b""
