"""``kagent kubectl ARGS..`` and ``kagent ctr ARGS..``: exec the real tool with the admin
kubeconfig / the containerd socket and the k8s.io namespace preset (k0s's multi-call pattern;
``kagent`` invoked through a link named ``kubectl`` or ``ctr`` lands here too)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Sequence

import click

from kagent.cli.app import AppContext
from kagent.errors import PreconditionError
from kagent.paths import Paths

_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _has_flag(args: tuple[str, ...], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


# Set in the tool's environment: "<tool> <pid> <args hash> <path>[:<path>..]", the paths kagent
# exec'd as that tool with those arguments. exec keeps the pid, so meeting our own pid (or our
# parent's, for a wrapper that forks kagent) with the same tool and the same arguments means the
# "tool" was kagent again: those paths are passed over. A kubectl plugin that calls
# `kagent kubectl` with other arguments is not mistaken for a loop.
_GUARD = "KAGENT_PASSTHROUGH"


def _args_key(args: Sequence[str]) -> str:
    return hashlib.sha256("\0".join(args).encode()).hexdigest()[:16]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _looped(name: str, args: Sequence[str]) -> list[Path]:
    """The paths that already ran kagent again as ``name`` with ``args`` in this exec chain."""
    fields = os.environ.get(_GUARD, "").split(" ", 3)
    if len(fields) != 4:
        return []
    tool, pid, key, seen = fields
    if tool != name or key != _args_key(args) or not pid.isdigit() or int(pid) not in (os.getpid(), os.getppid()):
        return []
    return [Path(x) for x in seen.split(os.pathsep) if x]


class _Tool:
    """The real tool: its path (``<data>/bin`` first, then PATH) and an environment with
    ``<data>/bin`` on PATH. A candidate that is kagent itself (a ``kubectl``/``ctr`` link to it
    earlier on PATH) or one that already led back here (a wrapper script) is passed over, so
    kagent never execs itself in a loop."""

    def __init__(self, paths: Paths, name: str, package: str, args: Sequence[str]) -> None:
        from kagent.bins import find_binary

        me = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
        self.name = name
        self.looped = _looped(name, args)

        def is_kagent(candidate: Path) -> bool:
            return (me is not None and _same_file(candidate, me)) or any(_same_file(candidate, x) for x in self.looped)

        self.env = dict(os.environ)
        self.env["PATH"] = f"{paths.bin_dir}:{self.env.get('PATH', '/usr/bin:/bin')}"
        binary = find_binary(name, paths, search_path=self.env["PATH"], exclude=is_kagent)
        if binary is None:
            also = f" ({', '.join(map(str, self.looped))} only run kagent again)" if self.looped else ""
            raise PreconditionError(name, f"not found in <data>/bin or PATH{also}",
                                    hint=f"install {package} (apt-get install {package}) or place the real {name} in {paths.bin_dir}")
        self.binary = binary

    def exec(self, args: Sequence[str]) -> None:
        argv = [str(self.binary), *args]
        self.env[_GUARD] = f"{self.name} {os.getpid()} {_args_key(args)} {os.pathsep.join(map(str, [*self.looped, self.binary]))}"
        try:
            os.execve(argv[0], argv, self.env)
        except OSError as err:
            raise PreconditionError(argv[0], f"cannot run: {err.strerror}") from None


@click.command(context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def kubectl(app: AppContext, args: tuple[str, ...]) -> None:
    """kubectl with the admin kubeconfig (<data>/pki/admin.conf) preset."""
    paths = app.paths
    tool = _Tool(paths, "kubectl", "kubectl", args)
    if not _has_flag(args, "--kubeconfig") and not tool.env.get("KUBECONFIG"):
        if not paths.admin_conf.exists():
            raise PreconditionError(str(paths.admin_conf), "no admin kubeconfig in this data dir",
                                    hint="run this on a controller (kagent controller --init), or pass --kubeconfig")
        tool.env["KUBECONFIG"] = str(paths.admin_conf)
    tool.exec(args)


@click.command(context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def ctr(app: AppContext, args: tuple[str, ...]) -> None:
    """ctr with kagent's containerd socket and the k8s.io namespace preset."""
    paths = app.paths
    tool = _Tool(paths, "ctr", "containerd", args)
    pre: list[str] = []
    if not _has_flag(args, "--address", "-a"):
        pre += ["--address", str(paths.containerd_sock)]
    if not _has_flag(args, "--namespace", "-n") and not os.environ.get("CONTAINERD_NAMESPACE"):
        pre += ["--namespace", "k8s.io"]
    tool.exec([*pre, *args])
