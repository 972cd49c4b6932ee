"""Edge. The worker routes of the controller API (DESIGN §7):

- ``POST /v1beta1/worker/join {"node", "csr"}`` (worker token): signs the worker's kubelet
  client CSR with the cluster CA, records the node, answers ``{"cert", "ca", "apiserver"}``.
  A name already recorded with another key: 409 with a hint.
- ``POST /v1beta1/worker/renew {"csr"}`` (mTLS with the node's current kubelet client
  certificate, no token): a fresh certificate for a recorded node; a removed node gets 401.

One log event per join (``worker_joined``) with the token id and the node name; the secret is
never seen here (``ApiContext.authenticate`` keeps it).
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from cryptography import x509

from kagent.join.api import ApiContext
from kagent.join.nodes import (
    CsrError,
    check_node_name,
    new_node_record,
    node_of_cert,
    parse_node_csr,
    public_key_sha256,
    sign_node_csr,
)
from kagent.join.server import HttpError, read_json
from kagent.join.token import TokenRole
from kagent.pki import issue


def _answer(api: ApiContext, cert_pem: bytes) -> web.Response:
    return web.json_response({"cert": cert_pem.decode(), "ca": api.ca.cert_pem.decode(), "apiserver": api.apiserver_url})


def presented_node(api: ApiContext, request: web.Request, *, refused_event: str) -> tuple[str, x509.Certificate]:
    """The node named by the kubelet client certificate of this cluster that the peer
    presented over mTLS (the routes a joined worker calls without a token), or 401."""
    presented = api.client_cert(request)
    node = node_of_cert(presented, api.ca.cert) if presented is not None else None
    if presented is None or node is None:
        api.log.warning(refused_event, reason="no kubelet client certificate of this cluster", peer=request.remote)
        raise HttpError(401, "unauthorized: present the node's current kubelet client certificate")
    return node, presented


def routes(api: ApiContext) -> list[web.RouteDef]:
    async def join(request: web.Request) -> web.Response:
        token = await api.authenticate(request, TokenRole.WORKER)
        body = await read_json(request)
        try:
            node = check_node_name(body.get("node"))
            csr = parse_node_csr(body.get("csr"), node)
        except CsrError as err:
            raise HttpError(400, str(err)) from None
        now = api.now()
        cert = sign_node_csr(csr, node, api.ca, lifetime=api.cert_lifetime, now=now, serial=issue.serial_from(os.urandom(20)))
        rec = new_node_record(node, cert, token_id=token.token_id, now=now)
        # one transaction: the record if the name is free, and the token use
        created = await api.call(api.store.create_node, rec, token_use=(token.token_id, now))
        existing = None
        if not created:
            existing = await api.call(api.store.get_node, node)
            if existing is not None and existing[0].public_key_sha256 == public_key_sha256(csr.public_key()):  # type: ignore[arg-type]
                # the same worker (same key, proven by the CSR signature) retrying a join whose answer it lost
                created = await api.call(api.store.replace_node, rec, existing[1])
                if created:
                    await api.call(api.store.record_use, token.token_id, node, now)
        if not created:
            api.log.warning("worker_join_refused", node=node, token_id=token.token_id, reason="node name already joined")
            raise HttpError(409, f"node {node} has already joined this cluster",
                            hint=f"give this worker another name, or run `kagent node remove {node}` on a controller if the old node is gone")
        api.log.info("worker_joined", node=node, token_id=token.token_id, sha256=rec.fingerprint,
                     retry=existing is not None, peer=request.remote)
        return _answer(api, issue.cert_pem(cert))

    async def renew(request: web.Request) -> web.Response:
        node, presented = presented_node(api, request, refused_event="worker_renew_refused")
        found = await api.call(api.store.get_node, node)
        fp = issue.fingerprint(presented)
        if found is None or not found[0].accepts(fp):
            reason = "node not recorded (removed?)" if found is None else "certificate is not the node's current one"
            api.log.warning("worker_renew_refused", node=node, reason=reason, peer=request.remote)
            raise HttpError(401, f"unauthorized: node {node} may not renew ({reason})",
                            hint="join the node again with a worker token")
        body = await read_json(request)
        try:
            csr = parse_node_csr(body.get("csr"), node)
        except CsrError as err:
            raise HttpError(400, str(err)) from None
        now = api.now()
        cert = sign_node_csr(csr, node, api.ca, lifetime=api.cert_lifetime, now=now, serial=issue.serial_from(os.urandom(20)))
        rec, rev = found
        if not await api.call(api.store.replace_node, rec.renewed(cert, fp, now), rev):
            raise HttpError(409, f"node {node} changed during the renewal", hint="retry")
        api.log.info("worker_renewed", node=node, sha256=issue.fingerprint(cert), not_after=cert.not_valid_after_utc.isoformat())
        return _answer(api, issue.cert_pem(cert))

    return [web.post("/v1beta1/worker/join", join), web.post("/v1beta1/worker/renew", renew)]


__all__: list[Any] = ["presented_node", "routes"]
