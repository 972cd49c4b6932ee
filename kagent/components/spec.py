"""Pure. What a component is, as data: the contract between the component modules (which
only build specs) and the supervisor (which only runs them).

A component module never starts anything; the supervisor never knows what etcd is.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, NamedTuple, Union


class OnChange(StrEnum):
    """What a changed spec means on SIGHUP reload."""

    RESTART = "restart"  # stop, then start with the new spec
    SIGNAL = "signal"  # write the new files, then send ``reload_signal`` (same PID)


# The small value types are NamedTuples: immutable and hashable as frozen dataclasses are, and
# several times cheaper to define (~0.15 against ~1 ms each: the supervisor imports this
# module on its way to the first spawn). ComponentSpec stays a dataclass (``replace`` on it
# is everywhere).


class FileSpec(NamedTuple):
    """A file written atomically before the component starts (and on reload)."""

    path: Path
    data: bytes
    mode: int = 0o644


class HttpCheck(NamedTuple):
    """GET ``url``; healthy on ``expect_status``. TLS verified against ``ca_file`` when given,
    client certificate from ``cert_file``/``key_file`` when given."""

    url: str
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    expect_status: int = 200
    timeout: float = 2.0


class TcpCheck(NamedTuple):
    host: str
    port: int
    timeout: float = 2.0


class UnixSocketCheck(NamedTuple):
    """Healthy when a connect() to the socket succeeds."""

    path: Path
    timeout: float = 2.0


class CommandCheck(NamedTuple):
    """Healthy when the command exits 0 within ``timeout``."""

    argv: tuple[str, ...]
    timeout: float = 5.0
    env: tuple[tuple[str, str], ...] = ()


HealthCheck = Union[HttpCheck, TcpCheck, UnixSocketCheck, CommandCheck]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentSpec:
    name: str  # "kube-apiserver": pidfile name, `component` log field, status row
    binary: Path  # absolute path of the executable
    args: tuple[str, ...] = ()  # argv[1:], rendered, final
    env: tuple[tuple[str, str], ...] = ()  # added to the child's environment (on top of kagent's markers)
    files: tuple[FileSpec, ...] = ()  # written before spawn; their bytes are part of the hash
    dirs: tuple[tuple[Path, int], ...] = ()  # (dir, mode) made before spawn
    run_as: str | None = None  # system user name; None = the agent's user
    cwd: Path | None = None
    after: tuple[str, ...] = ()  # names that must be healthy before this one starts
    health: HealthCheck | None = None  # gates start-up and is probed periodically
    startup_timeout: float = 60.0  # how long the initial health gate waits
    health_interval: float = 10.0  # seconds between probes once running
    stop_timeout: float = 5.0  # SIGTERM -> wait -> SIGKILL
    stop_signal: int = signal.SIGTERM
    on_change: OnChange = OnChange.RESTART
    reload_signal: int = signal.SIGHUP
    # kagent-managed files the process reads (certs, kubeconfigs): when the PKI renews one,
    # only the components that read it are restarted
    reads: tuple[Path, ...] = ()
    # files the process reads that kagent does not write (containerd.d drop-ins), as
    # (path, sha256 of the bytes): part of the hash, so a changed one restarts the component
    inputs: tuple[tuple[str, str], ...] = ()
    # dirs this spec replaces: once it runs healthy, every other entry of each dir's parent
    # (an old <run>/containerd-hosts/<hash>) is removed
    prune_siblings_of: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "extraArgs overrides --leader-elect"; logged by the edge

    @property
    def argv(self) -> tuple[str, ...]:
        return (str(self.binary), *self.args)


def spec_hash(spec: ComponentSpec) -> str:
    """A stable hash over everything that affects the running process (argv, env, files'
    bytes and modes, user, cwd, stop behaviour). Health checks, timeouts and notes are
    excluded: changing them does not need a restart."""
    import hashlib  # here: not on the agent's way to its first spawn (it loads OpenSSL)

    doc = {
        "name": spec.name,
        "binary": str(spec.binary),
        "args": list(spec.args),
        "env": [list(kv) for kv in spec.env],
        "files": [[str(f.path), f.mode, hashlib.sha256(f.data).hexdigest()] for f in spec.files],
        "dirs": [[str(d), m] for d, m in spec.dirs],
        "run_as": spec.run_as,
        "cwd": str(spec.cwd) if spec.cwd else None,
        "stop_signal": int(spec.stop_signal),
        "inputs": [list(i) for i in spec.inputs],
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class Args(NamedTuple):
    """Ordered flags with DESIGN §4's precedence: defaults < derived < extraArgs < rawArgs.

    ``Args.of({...}).override(extra)`` returns new Args plus the keys the user overrode;
    ``render()`` gives ``("--flag=value", ...)`` sorted by flag, raw args last.
    Keys are stored without leading dashes.
    """

    flags: Mapping[str, str] = MappingProxyType({})
    raw: tuple[str, ...] = ()

    @classmethod
    def of(cls, flags: Mapping[str, str]) -> Args:
        return cls(flags={k.lstrip("-"): v for k, v in flags.items()})

    def set(self, **kv: str) -> Args:
        return Args(flags={**self.flags, **{k.replace("_", "-"): v for k, v in kv.items()}}, raw=self.raw)

    def merge(self, flags: Mapping[str, str]) -> Args:
        return Args(flags={**self.flags, **{k.lstrip("-"): v for k, v in flags.items()}}, raw=self.raw)

    def override(self, extra: Mapping[str, str]) -> tuple[Args, tuple[str, ...]]:
        overridden = tuple(sorted(k.lstrip("-") for k in extra if k.lstrip("-") in self.flags and self.flags[k.lstrip("-")] != extra[k]))
        return self.merge(extra), overridden

    def with_raw(self, raw: tuple[str, ...]) -> Args:
        return Args(flags=self.flags, raw=self.raw + tuple(raw))

    def render(self) -> tuple[str, ...]:
        return tuple(f"--{k}={self.flags[k]}" for k in sorted(self.flags)) + self.raw
