"""Pure. kube-scheduler (reference/k0s.md §2.6): scheduler.conf kubeconfig, leader election
off on a single controller."""

from __future__ import annotations

from kagent.components.common import control_loop_spec
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec

NAME = "kube-scheduler"
ROLES = (Role.CONTROLLER,)
DEFAULT_SECURE_PORT = 10259


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and not ctx.is_disabled(NAME)


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    conf = str(p.pki("scheduler.conf"))
    defaults = {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "kubeconfig": conf,
        "profiling": "false",
        "v": "1",
    }
    return control_loop_spec(ctx, name=NAME, defaults=defaults, overrides=ctx.config.scheduler,
                             source="spec.scheduler.extraArgs", default_port=DEFAULT_SECURE_PORT,
                             run_as=ctx.run_as(ctx.config.users.kube_scheduler_user),
                             reads=(p.pki("scheduler.conf"),))
