"""Pure. Small pieces every component module shares: the TLS cipher list, URL hosts, and the
one way argv is assembled (defaults < derived < extraArgs < forced < rawArgs)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from kagent.components.context import Context
from kagent.components.spec import Args, ComponentSpec, HttpCheck
from kagent.config.model import ComponentOverrides
from kagent.urls import url_host as url_host

# k0s's six TLS 1.2 suites (etcd, kube-apiserver, konnectivity-server, kubelet)
CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)

STOP_TIMEOUT = 5.0



def assemble(
    defaults: Mapping[str, str],
    *,
    extra: Mapping[str, str] = {},
    extra_source: str = "extraArgs",
    forced: Mapping[str, str] = {},
    forced_reason: str = "",
    raw: tuple[str, ...] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Render argv (sorted ``--flag=value``, raw last) and the notes about user overrides.

    ``defaults`` already holds the config-derived values on top of the fixed defaults;
    ``extra`` (the user's extraArgs) overrides them and each override is reported; ``forced``
    values win over ``extra`` (e.g. leader election off on a single controller); ``raw`` is
    appended verbatim."""
    args, overridden = Args.of(defaults).override(extra)
    base = Args.of(defaults).flags
    notes = [f"{extra_source} overrides --{k} (default {base[k]!r}, now {args.flags[k]!r})" for k in overridden]
    for k, v in forced.items():
        key = k.lstrip("-")
        if key in {e.lstrip("-") for e in extra} and args.flags.get(key) != v:
            notes.append(f"{extra_source} sets --{key}={args.flags[key]!r}, ignored: {forced_reason}")
    args = args.merge(forced).with_raw(raw)
    return args.render(), tuple(notes)


def flag_value(args: tuple[str, ...], name: str, default: str) -> str:
    """The last ``--name=value`` in a rendered argv (raw args can repeat a flag: last wins)."""
    prefix = f"--{name}="
    found = default
    for a in args:
        if a.startswith(prefix):
            found = a[len(prefix):]
    return found


def port_of(value: str, default: int) -> int:
    try:
        port = int(value)
    except ValueError:
        return default
    return port if 0 < port < 65536 else default


def control_loop_spec(ctx: Context, *, name: str, defaults: Mapping[str, str], overrides: ComponentOverrides,
                      source: str, default_port: int, reads: tuple[Path, ...], run_as: str | None) -> ComponentSpec:
    """kube-controller-manager and kube-scheduler: leader election forced off on a single
    controller, ``/healthz`` over TLS on ``--secure-port`` (self-signed: not verified), after
    the apiserver."""
    forced = {"leader-elect": "false"} if ctx.single_controller else {}
    args, notes = assemble({**defaults, "leader-elect": "true"}, extra=overrides.extra_args, extra_source=source,
                           forced=forced, forced_reason="leader election is off on a single controller", raw=overrides.raw_args)
    port = port_of(flag_value(args, "secure-port", str(default_port)), default_port)
    return ComponentSpec(
        name=name,
        binary=ctx.binary(name),
        args=args,
        after=("kube-apiserver",),
        health=HttpCheck(url=f"https://127.0.0.1:{port}/healthz", ca_file=None),
        stop_timeout=STOP_TIMEOUT,
        run_as=run_as,
        reads=reads,
        notes=notes,
    )
