"""``kagent controller`` and ``kagent worker``: parse flags, build a RunRequest, run the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from kagent.cli.app import AppContext


F = TypeVar("F", bound=Callable[..., Any])


def _common(f: F) -> F:
    opts = [
        click.option("--labels", default="", metavar="K=V,..", help="Node labels for the kubelet."),
        click.option("--taints", default="", metavar="K[=V]:EFFECT,..", help="Node taints for the kubelet."),
        click.option("--profile", default="default", show_default=True, help="Worker profile (spec.workerProfiles) for the kubelet."),
        click.option("--kubelet-extra-args", default="", metavar='"--flag=value .."', help="Extra kubelet flags."),
        click.option("--log-dir", type=click.Path(path_type=Path), default=None,
                     help="Also write each component's output to <dir>/<component>.log."),
        # not click.Path(exists=True): the token file is validated by the join (exit 4 naming the file)
        click.option("--token-file", type=click.Path(path_type=Path, dir_okay=True), default=None, metavar="FILE",
                     help="Join a cluster with this token (from `kagent token create`); ignored once joined."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command()
@click.option("--init", is_flag=True, help="Create a new cluster when the data dir holds none (idempotent when it does).")
@click.option("--enable-worker", is_flag=True, help="Also run containerd and the kubelet on this node.")
@click.option("--single", is_flag=True, help="Single node: kine storage, no konnectivity, worker enabled, no taints.")
@click.option("--disable-components", default="", metavar="A,B", help="Components not to run (e.g. the Kubernetes ones, for an etcd-only controller).")
@click.option("--no-taints", is_flag=True, help="With --enable-worker: do not taint the node as control-plane.")
@click.option("--init-only", is_flag=True, help="Prepare the data dir, PKI and configs, then exit without starting anything.")
@_common
@click.pass_obj
def controller(app: AppContext, init: bool, enable_worker: bool, single: bool, disable_components: str, no_taints: bool,
               init_only: bool, labels: str, taints: str, profile: str, kubelet_extra_args: str, log_dir: Path | None,
               token_file: Path | None) -> int:
    """Run a controller node: etcd (or kine), kube-apiserver, kube-controller-manager,
    kube-scheduler and konnectivity-server as supervised children."""
    from kagent import log
    from kagent.agent import Agent, RunRequest
    from kagent.components import parse_disabled
    from kagent.components.context import Role, parse_kubelet_extra_args, parse_labels, parse_taints

    log.configure(fmt=app.log_format, verbose=app.verbose, debug=app.debug, hold=True)
    req = RunRequest(
        role=Role.CONTROLLER, init=init, enable_worker=enable_worker or single, single=single,
        disabled=parse_disabled(disable_components, Role.CONTROLLER, enable_worker=enable_worker or single),
        labels=parse_labels(labels), taints=parse_taints(taints), no_taints=no_taints or single, profile=profile,
        kubelet_extra_args=parse_kubelet_extra_args(kubelet_extra_args), init_only=init_only, log_dir=log_dir,
        token_file=token_file.absolute() if token_file else None,
    )
    return Agent(app, req).run()


@click.command()
@click.option("--disable-components", default="", metavar="kubelet", help="Components not to run (kubelet: containerd alone).")
@_common
@click.pass_obj
def worker(app: AppContext, disable_components: str, labels: str, taints: str, profile: str, kubelet_extra_args: str,
           log_dir: Path | None, token_file: Path | None) -> int:
    """Run a worker node: containerd and the kubelet as supervised children.

    With --token-file (a worker token): joins the cluster first (kubelet client cert signed by
    the controller API, written to <data>/kubelet.conf). A worker that joined before starts
    from its data dir and ignores the token."""
    from kagent import log
    from kagent.agent import Agent, RunRequest
    from kagent.components import parse_disabled
    from kagent.components.context import Role, parse_kubelet_extra_args, parse_labels, parse_taints

    log.configure(fmt=app.log_format, verbose=app.verbose, debug=app.debug, hold=True)
    req = RunRequest(
        role=Role.WORKER, disabled=parse_disabled(disable_components, Role.WORKER),
        labels=parse_labels(labels), taints=parse_taints(taints), profile=profile,
        kubelet_extra_args=parse_kubelet_extra_args(kubelet_extra_args), log_dir=log_dir,
        token_file=token_file.absolute() if token_file else None,
    )
    return Agent(app, req).run()
