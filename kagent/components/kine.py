"""Pure. kine: the etcd API over sqlite (``--single`` or ``spec.storage.type: kine``),
listening on a unix socket in the run dir (reference/k0s.md §2.2)."""

from __future__ import annotations

from kagent.components.common import STOP_TIMEOUT, assemble
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, UnixSocketCheck
from kagent.config.model import StorageType

NAME = "kine"
ROLES = (Role.CONTROLLER,)


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and ctx.storage == StorageType.KINE and not ctx.is_disabled(NAME)


def data_source(ctx: Context) -> str:
    src = ctx.config.storage.kine.data_source
    return src if src else f"sqlite://file:{ctx.paths.kine_db}?mode=rwc&_journal=WAL"


def listen_url(ctx: Context) -> str:
    return f"unix://{ctx.paths.kine_sock}"


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    kine = ctx.config.storage.kine
    defaults = {
        "compact-interval": "0",
        "endpoint": data_source(ctx),
        "listen-address": listen_url(ctx),
        "metrics-bind-address": ":2380",
    }
    args, notes = assemble(defaults, extra=kine.extra_args, extra_source="spec.storage.kine.extraArgs", raw=kine.raw_args)
    dirs = [(p.kine_sock_dir, 0o755)]
    if not kine.data_source:
        dirs.append((p.kine_db_dir, 0o750))
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        dirs=tuple(dirs),
        run_as=ctx.run_as(ctx.config.users.kine_user),
        health=UnixSocketCheck(path=p.kine_sock),
        stop_timeout=STOP_TIMEOUT,
        notes=notes,
    )
