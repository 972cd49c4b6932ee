"""Edge. A worker leaving the cluster on ``kagent reset``: both sides of
``POST /v1beta1/worker/leave``.

- the route (mounted through ``kagent.join.api.ROUTE_MODULES``): authenticated by the node's
  current kubelet client certificate (mTLS, no token, as ``/worker/renew``), it deletes the
  node's record, so its name may join again and its certificate can no longer be renewed;
  404 when no record exists (already removed), 401 for any other certificate;
- ``leave``: the worker's call, with the certificate from ``<data>/kubelet.conf`` and the
  controller API URL from ``<data>/join.json``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import http.client
from typing import Any

from aiohttp import web

from kagent.errors import PreconditionError
from kagent.join.api import ApiContext
from kagent.join.api_worker import presented_node
from kagent.join.nodes import node_of_cert
from kagent.join.server import HttpError
from kagent.join.worker import _client_context, _request, joined_control_api
from kagent.kubeconfig import parse_kubeconfig
from kagent.paths import Paths
from kagent.pki import issue

PATH = "/v1beta1/worker/leave"


def routes(api: ApiContext) -> list[web.RouteDef]:
    async def leave(request: web.Request) -> web.Response:
        node, presented = presented_node(api, request, refused_event="worker_leave_refused")
        found = await api.call(api.store.get_node, node)
        if found is None:
            raise HttpError(404, f"node {node} is not recorded (already removed)")
        if not found[0].accepts(issue.fingerprint(presented)):
            api.log.warning("worker_leave_refused", node=node, reason="certificate is not the node's current one", peer=request.remote)
            raise HttpError(401, f"unauthorized: that certificate is not node {node}'s current one")
        await api.call(api.store.remove_node, node)
        api.log.info("worker_left", node=node, peer=request.remote)
        return web.json_response({"removed": node})

    return [web.post(PATH, leave)]


def leave(paths: Paths, *, timeout: float = 10.0) -> tuple[str, str] | None:
    """Remove this worker's node record through the controller API it joined through.
    Returns (node, url) when removed or already gone; None when this is not a worker joined
    with a token. PreconditionError when the controller cannot be reached or refuses."""
    url = joined_control_api(paths)
    if url is None:
        return None
    where = str(paths.kubelet_conf)
    try:
        kc = parse_kubeconfig(paths.kubelet_conf.read_text(), where)
    except OSError as err:
        raise PreconditionError(where, f"cannot be read: {err.strerror or err}") from None
    if not kc.cert_pem or not kc.key_pem:
        raise PreconditionError(where, "has no client certificate to leave with")
    cert, ca = issue.load_cert(kc.cert_pem), issue.load_cert(kc.ca_pem)
    node = (node_of_cert(cert, ca) if cert is not None and ca is not None else None) or "<this node>"
    ctx = _client_context(kc.ca_pem)
    fd, tmp = tempfile.mkstemp(prefix=".leave.", suffix=".pem", dir=paths.data_dir)  # 0600, removed at once
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(kc.cert_pem + b"\n" + kc.key_pem)
        ctx.load_cert_chain(tmp)
    finally:
        os.unlink(tmp)
    api = f"controller API {url}"
    try:
        ans = _request(url, PATH, {}, ctx=ctx, token=None, timeout=timeout)
    except (OSError, http.client.HTTPException, ssl.SSLError) as err:
        raise PreconditionError(api, f"cannot be reached ({err})",
                                hint=f"run `kagent node remove {node}` on a controller") from None
    if ans.status in (200, 404):
        return node, url
    raise PreconditionError(api, f"refused to remove node {node}: HTTP {ans.status}: {ans.doc.get('error', '')}",
                            hint=f"run `kagent node remove {node}` on a controller")


__all__: list[Any] = ["routes", "leave"]
