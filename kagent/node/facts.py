"""Edge. NodeFacts: what kagent needs to know about this host, gathered once per command.

Pure builders read ``ctx.facts``; nothing else in the core asks the machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass


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


def interface_addresses() -> tuple[str, ...]:
    import psutil

    v4: list[str] = []
    v6: list[str] = []
    for _name, addrs in sorted(psutil.net_if_addrs().items()):
        for a in addrs:
            if a.family == socket.AF_INET:
                v4.append(a.address)
            elif a.family == socket.AF_INET6:
                v6.append(a.address.split("%", 1)[0])
    seen: dict[str, None] = {}
    for addr in v4 + v6:
        seen.setdefault(addr, None)
    return tuple(seen)


def gather() -> NodeFacts:
    return NodeFacts(hostname=socket.gethostname(), addresses=interface_addresses(), uid=os.geteuid())
