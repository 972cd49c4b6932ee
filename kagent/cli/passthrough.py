"""``kagent kubectl ARGS..`` and ``kagent ctr ARGS..``: exec the real tool with the admin
kubeconfig / the containerd socket and the k8s.io namespace preset (k0s's multi-call pattern;
``kagent`` invoked through a link named ``kubectl`` or ``ctr`` lands here too)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from kagent.cli.app import AppContext
from kagent.errors import PreconditionError
from kagent.paths import Paths

_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _has_flag(args: tuple[str, ...], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def _tool(paths: Paths, name: str, package: str) -> tuple[Path, dict[str, str]]:
    """The tool's path (``<data>/bin`` first) and an environment with ``<data>/bin`` on PATH."""
    from kagent.bins import find_binary

    binary = find_binary(name, paths)
    if binary is None:
        raise PreconditionError(name, "not found in <data>/bin or PATH",
                                hint=f"install {package} (apt-get install {package}) or place {name} in {paths.bin_dir}")
    env = dict(os.environ)
    env["PATH"] = f"{paths.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    return binary, env


def _exec(argv: list[str], env: dict[str, str]) -> None:
    try:
        os.execve(argv[0], argv, env)
    except OSError as err:
        raise PreconditionError(argv[0], f"cannot run: {err.strerror}") from None


@click.command(context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def kubectl(app: AppContext, args: tuple[str, ...]) -> None:
    """kubectl with the admin kubeconfig (<data>/pki/admin.conf) preset."""
    paths = app.paths
    binary, env = _tool(paths, "kubectl", "kubectl")
    if not _has_flag(args, "--kubeconfig") and not env.get("KUBECONFIG"):
        if not paths.admin_conf.exists():
            raise PreconditionError(str(paths.admin_conf), "no admin kubeconfig in this data dir",
                                    hint="run this on a controller (kagent controller --init), or pass --kubeconfig")
        env["KUBECONFIG"] = str(paths.admin_conf)
    _exec([str(binary), *args], env)


@click.command(context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def ctr(app: AppContext, args: tuple[str, ...]) -> None:
    """ctr with kagent's containerd socket and the k8s.io namespace preset."""
    paths = app.paths
    binary, env = _tool(paths, "ctr", "containerd")
    pre: list[str] = []
    if not _has_flag(args, "--address", "-a"):
        pre += ["--address", str(paths.containerd_sock)]
    if not _has_flag(args, "--namespace", "-n") and not os.environ.get("CONTAINERD_NAMESPACE"):
        pre += ["--namespace", "k8s.io"]
    _exec([str(binary), *pre, *args], env)
