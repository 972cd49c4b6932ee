"""Edge. The node run flags of DESIGN §3 as reusable click options, and the one function that
turns them (plus this host's facts, binaries, containerd version and cluster CA) into the
``Context`` component modules read. Shared by ``config print-args`` and the run commands."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import click

from kagent.cli.app import AppContext
from kagent.components.context import Context, Role


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
    from kagent.bins import major_minor
    from kagent.errors import UsageError

    v = major_minor(text.strip())
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
) -> Context:
    """Validate the flags (UsageError on a bad one), detect what the pure modules need, build
    the Context. Reads the config, facts, binaries, pki/ca.crt, /etc/resolv.conf; writes nothing."""
    from kagent.components import parse_disabled
    from kagent.components.context import build, parse_kubelet_extra_args, parse_labels, parse_taints
    from kagent.errors import UsageError
    from kagent.node.detect import detect_node

    if role == Role.WORKER and (enable_worker or single):
        raise UsageError("--enable-worker" if enable_worker else "--single", "is a controller flag",
                         hint="a worker always runs containerd and kubelet")
    req = SimpleNamespace(
        role=role, enable_worker=enable_worker or single, single=single,
        disabled=parse_disabled(disable_components, role, enable_worker=enable_worker or single),
        labels=parse_labels(labels), taints=parse_taints(taints), no_taints=no_taints, profile=profile,
        kubelet_extra_args=parse_kubelet_extra_args(kubelet_extra_args),
    )
    version = _parse_version(containerd_version) if containerd_version else None
    detected = detect_node(app.paths, containerd_version=version)
    return build(config=app.load_config(), paths=app.paths, facts=app.facts(), req=req, detected=detected)
