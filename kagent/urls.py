"""Pure. An address as it goes into a URL (IPv6 in brackets), without importing the modules
that use it (a cold ``kagent restore`` needs only this)."""

from __future__ import annotations

import ipaddress


def url_host(address: str) -> str:
    """An address as it goes into a URL: IPv6 in brackets."""
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    except ValueError:
        pass
    return address


def https_url(host: str, port: int) -> str:
    """``https://host:port``, with brackets around an IPv6 address."""
    return f"https://{url_host(host)}:{port}"
