"""Pure. What a leaf certificate says, as plain data (no ``cryptography``): the plan is built
from these in the agent process, and the PKI child (kagent.pki.child) issues from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Usage(StrEnum):
    """Extended key usages a leaf may carry."""

    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertRequest:
    """What a leaf certificate says: subject, SANs, usages, lifetime."""

    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    usages: tuple[Usage, ...] = (Usage.CLIENT,)
    lifetime: timedelta
