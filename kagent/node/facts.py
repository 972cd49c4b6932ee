"""Edge. Gathers NodeFacts (defined in the pure ``kagent.node.model``) once per command.

Pure builders read ``ctx.facts``; nothing else in the core asks the machine.
"""

from __future__ import annotations

import os

from kagent.node.model import NodeFacts as NodeFacts
from kagent.node.model import pick_default_address as pick_default_address


def interface_addresses() -> tuple[str, ...]:
    import socket

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


def identity() -> NodeFacts:
    """Hostname and uid only, for a command that needs no address (``restore``): ``addresses``
    is empty, so ``default_address`` must not be used (use ``gather``)."""
    return NodeFacts(hostname=os.uname().nodename, addresses=(), uid=os.geteuid())  # gethostname(), without socket


def gather() -> NodeFacts:
    import socket

    return NodeFacts(hostname=socket.gethostname(), addresses=interface_addresses(), uid=os.geteuid())
