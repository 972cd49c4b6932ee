"""Pure. Everything a component module may look at to build its spec, in one frozen value.

The edge (the run commands, ``config print-args``) gathers facts, resolves binaries, detects
the containerd version and reads the cluster CA; component modules only read ``Context``.
The small parsers for the run flags (``--labels``, ``--taints``, ``--kubelet-extra-args``)
live here too so every command parses them the same way.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from kagent.config.model import ClusterConfig, StorageType
from kagent.errors import UsageError
from kagent.node.model import Detected as Detected  # re-exported: the type build() takes
from kagent.node.model import NodeFacts
from kagent.paths import Paths


class Role(StrEnum):
    CONTROLLER = "controller"
    WORKER = "worker"


# etcd runs without ETCD_UNSUPPORTED_ARCH on these (Go arch names)
ETCD_SUPPORTED_ARCHES = frozenset({"amd64", "arm64", "ppc64le", "s390x"})

_MACHINE_TO_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                      "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
                      "riscv64": "riscv64", "i686": "386", "i386": "386"}


def go_arch(machine: str) -> str:
    """``platform.machine()`` -> Go's GOARCH name (``x86_64`` -> ``amd64``)."""
    return _MACHINE_TO_GOARCH.get(machine.lower(), machine.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def as_dict(self) -> dict[str, str]:
        d = {"key": self.key}
        if self.value:
            d["value"] = self.value
        d["effect"] = self.effect
        return d


CONTROL_PLANE_TAINT = Taint(key="node-role.kubernetes.io/control-plane", effect="NoSchedule")
CONTROL_PLANE_LABEL = "node.kagent.dev/role=control-plane"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeOptions:
    """The run flags of DESIGN §3 plus what the edge detected for this node."""

    enable_worker: bool = False
    single: bool = False
    disabled: frozenset[str] = frozenset()
    labels: tuple[str, ...] = ()  # "k=v", validated by parse_labels
    taints: tuple[Taint, ...] = ()
    no_taints: bool = False
    profile: str = "default"  # worker profile name (spec.workerProfiles[].name)
    kubelet_extra_args: tuple[tuple[str, str], ...] = ()  # (flag without dashes, value)
    # joining an existing etcd cluster: --initial-cluster-state=existing and this member list
    join: bool = False
    initial_cluster: tuple[str, ...] = ()  # "name=https://peer:port", from the join answer
    etcd_name: str = ""  # this controller's etcd member name (kept in the data dir); "" = the node name
    containerd_version: tuple[int, int] = (1, 7)  # detected from the binary by the edge
    etcd_version: tuple[int, ...] = (3, 5, 8)  # (major, minor, patch), detected from the binary by the edge
    bins: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    arch: str = "amd64"  # Go arch name of this node (go_arch(platform.machine()))
    cluster_ca: bytes = b""  # PEM of the cluster CA (kubelet's client CA file); read by the edge
    kagent_argv: tuple[str, ...] = ("/usr/local/bin/kagent",)  # runs kagent itself (bins.self_argv())
    resolv_conf: Path = Path("/etc/resolv.conf")  # pick_resolv_conf() of the edge
    containerd_dropins: tuple[tuple[str, str], ...] = ()  # (path, sha256) of <imports dir>/*.toml


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    config: ClusterConfig
    paths: Paths
    facts: NodeFacts
    role: Role
    options: NodeOptions = field(default_factory=NodeOptions)

    def binary(self, name: str) -> Path:
        """The resolved binary for ``name`` (filled by the edge), else ``<data>/bin/<name>``."""
        found = self.options.bins.get(name)
        return Path(found) if found is not None else self.paths.bin_dir / name

    def run_as(self, user: str) -> str | None:
        """The system user a control-plane component runs as (spec.install.users); None (the
        agent's own user) when the agent is not root, as k0s: switching users needs root."""
        return user if self.facts.is_root else None

    def is_disabled(self, name: str) -> bool:
        return name in self.options.disabled

    @property
    def is_controller(self) -> bool:
        return self.role == Role.CONTROLLER

    @property
    def runs_worker(self) -> bool:
        """containerd+kubelet run here: a worker, or a controller with --enable-worker/--single."""
        return self.role == Role.WORKER or self.options.enable_worker or self.options.single

    @property
    def controller_with_worker(self) -> bool:
        return self.is_controller and self.runs_worker

    @property
    def storage(self) -> StorageType:
        """``--single`` means kine (sqlite), whatever the config's storage type."""
        return StorageType.KINE if self.options.single else self.config.storage.type

    @property
    def kine_joinable(self) -> bool:
        src = self.config.storage.kine.data_source
        return src is not None and not src.startswith("sqlite")

    @property
    def single_controller(self) -> bool:
        """Leader election off: --single, or storage no other controller can share (sqlite)."""
        return self.options.single or (self.storage == StorageType.KINE and not self.kine_joinable)

    @property
    def konnectivity(self) -> bool:
        return self.is_controller and not self.options.single and not self.is_disabled("konnectivity-server")


# ---- parsers for the run flags -----------------------------------------------------------

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _split_list(text: str | tuple[str, ...] | list[str] | None) -> list[str]:
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def parse_labels(text: str | tuple[str, ...] | list[str] | None, flag: str = "--labels") -> tuple[str, ...]:
    """``"a=b,x/y=z"`` -> ``("a=b", "x/y=z")``, each a valid Kubernetes label."""
    out: list[str] = []
    for item in _split_list(text):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise UsageError(flag, f"{item!r} is not a label key=value", hint="write e.g. --labels env=prod,example.com/tier=db")
        out.append(f"{key}={value}")
    return tuple(out)


def parse_taints(text: str | tuple[str, ...] | list[str] | None, flag: str = "--taints") -> tuple[Taint, ...]:
    """``"k=v:NoSchedule,k2:NoExecute"`` -> Taints (effect required, value optional)."""
    out: list[Taint] = []
    for item in _split_list(text):
        kv, sep, effect = item.rpartition(":")
        key, _, value = kv.partition("=")
        if not sep or effect not in TAINT_EFFECTS or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise UsageError(flag, f"{item!r} is not a taint key[=value]:effect",
                             hint=f"write e.g. --taints dedicated=db:NoSchedule (effect one of {', '.join(TAINT_EFFECTS)})")
        out.append(Taint(key=key, value=value, effect=effect))
    return tuple(out)


def parse_kubelet_extra_args(text: str | None, flag: str = "--kubelet-extra-args") -> tuple[tuple[str, str], ...]:
    """``"--max-pods=50 --v 2 --fail-swap-on"`` -> ``(("max-pods","50"),("v","2"),("fail-swap-on","true"))``.

    Unlike k0s, a flag without a value is ``true`` (not an empty string), and ``--`` inside a
    value is kept."""
    if not text:
        return ()
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise UsageError(flag, f"cannot split {text!r}: {err}") from None
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise UsageError(flag, f"{tok!r} is not a --flag", hint='write e.g. --kubelet-extra-args "--max-pods=50 --v=2"')
        name, sep, value = tok[2:].partition("=")
        if not sep:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        out.append((name, value))
        i += 1
    return tuple(out)


def pick_resolv_conf(text: str | None) -> Path:
    """k0s's rule: when the only nameserver is systemd-resolved's stub (127.0.0.53), the kubelet
    gets the real upstream file ``/run/systemd/resolve/resolv.conf``."""
    servers = [line.split()[1] for line in (text or "").splitlines() if line.strip().startswith("nameserver") and len(line.split()) > 1]
    if servers == ["127.0.0.53"]:
        return Path("/run/systemd/resolve/resolv.conf")
    return Path("/etc/resolv.conf")


# ---- building a Context from a run request -------------------------------------------------


def build(*, config: ClusterConfig, paths: Paths, facts: NodeFacts, req: Any, detected: Detected) -> Context:
    """A run request (``kagent.agent.RunRequest``: role, enable_worker, single, disabled,
    labels as (k, v) pairs, taints as validated ``k[=v]:Effect`` strings, no_taints, profile,
    kubelet_extra_args; optional join/initial_cluster) plus what the edge detected -> Context."""
    labels = tuple(item if isinstance(item, str) else f"{item[0]}={item[1]}" for item in req.labels)
    taints = tuple(t if isinstance(t, Taint) else parse_taints(t)[0] for t in req.taints)
    options = NodeOptions(
        enable_worker=bool(req.enable_worker or req.single),
        single=bool(req.single),
        disabled=frozenset(req.disabled),
        labels=labels,
        taints=taints,
        no_taints=bool(req.no_taints),
        profile=req.profile,
        kubelet_extra_args=tuple(req.kubelet_extra_args),
        join=bool(getattr(req, "join", False)),
        initial_cluster=tuple(getattr(req, "initial_cluster", ())),
        etcd_name=str(getattr(req, "etcd_name", "") or ""),
        containerd_version=detected.containerd_version,
        etcd_version=detected.etcd_version,
        bins=detected.bins,
        arch=detected.arch,
        cluster_ca=detected.cluster_ca,
        kagent_argv=detected.kagent_argv,
        resolv_conf=detected.resolv_conf,
        containerd_dropins=detected.containerd_dropins,
    )
    return Context(config=config, paths=paths, facts=facts, role=Role(req.role), options=options)
