"""Pure. kube-scheduler (reference/k0s.md §2.6): scheduler.conf kubeconfig, leader election
off on a single controller."""

from __future__ import annotations

from kagent.components.common import STOP_TIMEOUT, assemble, flag_value, port_of
from kagent.components.context import Context, Role
from kagent.components.controller_manager import SINGLE_REASON
from kagent.components.spec import ComponentSpec, HttpCheck

NAME = "kube-scheduler"
ROLES = (Role.CONTROLLER,)
DEFAULT_SECURE_PORT = 10259


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and not ctx.is_disabled(NAME)


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    conf = str(p.pki("scheduler.conf"))
    over = ctx.config.scheduler
    defaults = {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "kubeconfig": conf,
        "leader-elect": "true",
        "profiling": "false",
        "v": "1",
    }
    forced = {"leader-elect": "false"} if ctx.single_controller else {}
    args, notes = assemble(defaults, extra=over.extra_args, extra_source="spec.scheduler.extraArgs",
                           forced=forced, forced_reason=SINGLE_REASON, raw=over.raw_args)
    port = port_of(flag_value(args, "secure-port", str(DEFAULT_SECURE_PORT)), DEFAULT_SECURE_PORT)
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        after=("kube-apiserver",),
        health=HttpCheck(url=f"https://127.0.0.1:{port}/healthz", ca_file=None),
        stop_timeout=STOP_TIMEOUT,
        reads=(p.pki("scheduler.conf"),),
        notes=notes,
    )
