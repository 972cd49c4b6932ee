"""Pure. What the edge found out about this node, as data: ``NodeFacts`` (host name, addresses,
uid; gathered by ``kagent.node.facts``) and ``Detected`` (binaries, versions, arch, cluster CA,
resolv.conf; found by ``kagent.node.detect``). The pure core reads these; only the edges fill them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFacts:
    hostname: str
    addresses: tuple[str, ...]  # every interface address, IPv4 first
    uid: int = 0

    @property
    def node_name(self) -> str:
        """Kubernetes node name: the lowercased hostname (as k0s)."""
        return self.hostname.lower()

    @property
    def default_address(self) -> str:
        return pick_default_address(self.addresses)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def pick_default_address(addresses: tuple[str, ...] | list[str]) -> str:
    """Pure. The first non-loopback, non-link-local IPv4 address; 127.0.0.1 when there is none."""
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if ip.version == 4 and not ip.is_loopback and not ip.is_link_local:
            return a
    return "127.0.0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Detected:
    """What the edge found on this node (``kagent.node.detect.detect_node``)."""

    bins: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    containerd_version: tuple[int, int] = (1, 7)
    etcd_version: tuple[int, ...] = (3, 5, 8)  # (major, minor, patch)
    arch: str = "amd64"
    cluster_ca: bytes = b""
    # argv prefix that runs this kagent (its own children: control-api); bins.self_argv()
    kagent_argv: tuple[str, ...] = ("/usr/local/bin/kagent",)
    resolv_conf: Path = Path("/etc/resolv.conf")
    # containerd's drop-ins (<imports dir>/*.toml) as (path, sha256), sorted by path
    containerd_dropins: tuple[tuple[str, str], ...] = ()
