"""Edge. The controller-join routes of the controller API (DESIGN §7), mounted by
``kagent.join.api`` (``ROUTE_MODULES``):

- ``GET /v1beta1/ca`` (controller token): the cluster CA, front-proxy CA and etcd CA (cert
  and key each) and the SA key pair, all shared by every controller.
- ``POST /v1beta1/etcd/members {"node", "peerAddress", "peerPort"}`` (controller token; port
  default 2380): adds ``node`` as an etcd learner at ``https://<peerAddress>:<peerPort>``
  (retried while etcd is not ready), records the pending join, answers ``{"member": {"name",
  "id"}, "existing", "initialCluster": ["name=url", ..], "etcdCa": {"cert", "key"},
  "controllers": [API URLs]}``.
- ``POST /v1beta1/etcd/members/<name>/promote`` and ``DELETE /v1beta1/etcd/members/<name>``
  (mTLS, no token): authenticated by that controller's own member certificate
  ``pki/etcd/member.crt`` (signed by the etcd CA, CN ``kagent-etcd-member:<name>``), so only
  the controller itself promotes or removes its member; the DELETE is how ``kagent etcd
  leave`` and ``kagent reset`` on a stopped controller leave through another controller.

Errors are ``{"error", "hint"}`` with 400 (bad body), 401, 404 (no such member), 409 (the
peer URL or name is taken, or the last member) and 503 (etcd not ready for a membership
change yet: retry).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from cryptography import x509

from kagent.join import membership
from kagent.join.api import ApiContext
from kagent.join.controller import shared_material
from kagent.join.etcdclient import EtcdClient, EtcdError, Member
from kagent.join.server import HttpError, read_json
from kagent.join.token import TokenRole
from kagent.pki import issue
from kagent.pki.plan import ETCD_MEMBER_ORG, etcd_member_cn


def member_json(m: Member, name: str | None = None) -> dict[str, Any]:
    return {"name": name or m.name, "id": f"{m.id:x}", "peerURLs": list(m.peer_urls), "isLearner": m.is_learner}


def member_of_cert(cert: x509.Certificate | None, etcd_ca: x509.Certificate) -> str | None:
    """The member name a client cert proves: signed by the etcd CA, O ``kagent-etcd-members``,
    CN ``kagent-etcd-member:<name>``; None for anything else."""
    if cert is None or not issue.signed_by(cert, etcd_ca):
        return None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    if len(cns) != 1 or ETCD_MEMBER_ORG not in orgs:
        return None
    cn = str(cns[0].value)
    name = cn.removeprefix(etcd_member_cn(""))
    return name if cn != name and membership.NODE_RE.match(name) else None


def _status(err: EtcdError | membership.MembershipError) -> HttpError:
    if isinstance(err, membership.MembershipError):
        return HttpError(err.status, f"{err.where}: {err.what}", err.hint)
    return HttpError(503, f"{err.where}: {err.what}", "the local etcd is not available; retry, or use another controller")


def routes(api: ApiContext) -> list[web.RouteDef]:
    etcd = api.kv
    if not isinstance(etcd, EtcdClient):  # membership changes need the etcd client, not only its kv calls
        raise TypeError("the controller-join routes need ApiContext.kv to be an EtcdClient")
    etcd_ca_path = api.paths.etcd_pki("ca.crt")

    def etcd_ca() -> x509.Certificate:
        ca = issue.load_cert(etcd_ca_path.read_bytes())
        if ca is None:
            raise HttpError(500, "the etcd CA of this controller is unreadable")
        return ca

    def authorized_member(request: web.Request, name: str) -> None:
        proven = member_of_cert(api.client_cert(request), etcd_ca())
        if proven != name:
            api.log.warning("etcd_member_request_refused", member=name, presented=proven, path=request.path,
                            peer=request.remote)
            raise HttpError(401, f"unauthorized: present the member certificate of {name}",
                            hint="only a controller itself (pki/etcd/member.crt) may promote or remove its member")

    async def ca(request: web.Request) -> web.Response:
        token = await api.authenticate(request, TokenRole.CONTROLLER)
        doc = await api.call(shared_material, api.paths)
        api.log.info("controller_ca_fetched", token_id=token.token_id, peer=request.remote)
        return web.json_response(doc)

    async def add(request: web.Request) -> web.Response:
        token = await api.authenticate(request, TokenRole.CONTROLLER)
        body = await read_json(request)
        try:
            node = membership.check_node_name(body.get("node"))
            peer_url = membership.peer_url_of(body.get("peerAddress"), body.get("peerPort", 2380))
            added = await api.call(membership.add, etcd, node, peer_url, now=time.time())
            ctrls = await api.call(membership.controllers, etcd)
        except (membership.MembershipError, EtcdError) as err:
            api.log.warning("controller_join_refused", node=body.get("node"), token_id=token.token_id,
                            reason=f"{err.where}: {err.what}", peer=request.remote)
            raise _status(err) from None
        await api.call(api.store.record_use, token.token_id, f"controller-{node}", api.now())
        api.log.info("controller_joined", node=node, token_id=token.token_id, member_id=f"{added.member.id:x}",
                     existing=added.existing, peer=request.remote)
        # this API as the joiner reached it (the token's URL), then the other controllers it knows
        urls = list(dict.fromkeys([f"https://{request.host}", *(c["apiURL"] for c in ctrls if c.get("node") != node)]))
        material = await api.call(shared_material, api.paths)
        return web.json_response({
            "member": member_json(added.member, node), "existing": added.existing,
            "initialCluster": added.initial_cluster(node), "etcdCa": material["etcdCa"], "controllers": urls,
        })

    async def promote(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        authorized_member(request, name)
        try:
            m = await api.call(membership.promote, etcd, name)
        except (membership.MembershipError, EtcdError) as err:
            raise _status(err) from None
        return web.json_response({"member": member_json(m, name)})

    async def remove(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        authorized_member(request, name)
        try:
            m, left = await api.call(membership.remove, etcd, node=name)
        except (membership.MembershipError, EtcdError) as err:
            raise _status(err) from None
        api.log.info("controller_left", node=name, member_id=f"{m.id:x}", peer=request.remote)
        return web.json_response({"removed": member_json(m, name), "members": [member_json(x) for x in left]})

    return [
        web.get("/v1beta1/ca", ca),
        web.post("/v1beta1/etcd/members", add),
        web.post("/v1beta1/etcd/members/{name}/promote", promote),
        web.delete("/v1beta1/etcd/members/{name}", remove),
    ]
