"""Pure. Render and parse kubeconfig YAML with everything embedded as data.

One cluster, one user, one context: what kagent writes (admin.conf, ccm.conf, ...; cluster
``local``, context ``Default``, user ``user`` as k0s) and what ``kubeconfig create`` prints.
The rendering is deterministic, so a kubeconfig is rewritten only when its inputs change.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import yaml

from kagent.errors import PreconditionError


@dataclass(frozen=True, slots=True, kw_only=True)
class Kubeconfig:
    server: str
    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    cluster: str = "local"
    context: str = "Default"
    user: str = "user"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(kc: Kubeconfig) -> str:
    """YAML text of ``kc`` (client cert/key and/or token, CA embedded)."""
    user: dict[str, str] = {}
    if kc.cert_pem is not None:
        user["client-certificate-data"] = _b64(kc.cert_pem)
    if kc.key_pem is not None:
        user["client-key-data"] = _b64(kc.key_pem)
    if kc.token is not None:
        user["token"] = kc.token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"cluster": {"certificate-authority-data": _b64(kc.ca_pem), "server": kc.server}, "name": kc.cluster}],
        "contexts": [{"context": {"cluster": kc.cluster, "user": kc.user}, "name": kc.context}],
        "current-context": kc.context,
        "preferences": {},
        "users": [{"name": kc.user, "user": user}],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 30)


def _named(doc: dict[str, Any], key: str, name: str, where: str) -> dict[str, Any]:
    for item in doc.get(key) or []:
        if isinstance(item, dict) and item.get("name") == name:
            inner = item.get(key[:-1])
            if isinstance(inner, dict):
                return inner
    raise PreconditionError(where, f"no {key[:-1]} named {name!r}")


def _data(section: dict[str, Any], key: str, where: str) -> bytes | None:
    value = section.get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise PreconditionError(where, f"{key} is not base64") from None


def parse_kubeconfig(text: str, where: str = "kubeconfig") -> Kubeconfig:
    """The current context's server, CA, client cert/key and token. Only embedded data is
    read (``*-data`` fields); a kubeconfig pointing at files is refused."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PreconditionError(where, f"not YAML ({err})") from None
    if not isinstance(doc, dict):
        raise PreconditionError(where, "not a kubeconfig mapping")
    context_name = doc.get("current-context")
    if not isinstance(context_name, str):
        raise PreconditionError(where, "no current-context")
    context = _named(doc, "contexts", context_name, where)
    cluster_name, user_name = context.get("cluster"), context.get("user")
    cluster = _named(doc, "clusters", str(cluster_name), where)
    user = _named(doc, "users", str(user_name), where)
    ca = _data(cluster, "certificate-authority-data", where)
    if ca is None:
        raise PreconditionError(where, "cluster has no certificate-authority-data")
    server = cluster.get("server")
    if not isinstance(server, str):
        raise PreconditionError(where, "cluster has no server")
    token = user.get("token")
    return Kubeconfig(
        server=server,
        ca_pem=ca,
        cert_pem=_data(user, "client-certificate-data", where),
        key_pem=_data(user, "client-key-data", where),
        token=str(token) if token is not None else None,
        cluster=str(cluster_name),
        context=context_name,
        user=str(user_name),
    )
