"""Edge. etcd membership for controller joins (DESIGN §7), on ``EtcdClient``: synchronous
functions the controller API's routes (``kagent.join.api_etcd``) and the CLI call.

A joining controller is added as an etcd **learner**: a learner does not count for quorum, so
a join that never comes up (etcd fails to start, the joiner is killed) leaves the cluster as
writable as before, and its member can always be removed again. The joiner promotes it to a
voting member once its etcd runs and has caught up (``promote``). Each add writes a pending
record; the member of a pending join is removed again

- by the joiner's next attempt (an add under the same node name replaces it), or
- by ``sweep`` after ``PENDING_TIMEOUT`` (every add sweeps, and each controller's agent
  sweeps periodically),

so the cluster never waits on a member that never comes. etcd refuses membership changes
while it is not ready for them (a member connected for less than 5 s, no leader, a learner
not in sync, one learner already): those calls are retried with backoff until a deadline.

etcd keys (under the kagent prefix, beside the tokens):

    /kagent/etcd/pending/<node>    {"node", "id" (hex), "peerURL", "added" (unix s)}
    /kagent/controllers/<node>     {"node", "peerURL", "apiURL", "seen" (unix s)}: how a
                                   stopped controller finds another controller's API to leave
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from kagent import log
from kagent.errors import PreconditionError
from kagent.join.etcdclient import EtcdClient, EtcdError, EtcdNotReady, Member

PENDING = "/kagent/etcd/pending/"
CONTROLLERS = "/kagent/controllers/"
PENDING_TIMEOUT = 120.0  # s: a learner not promoted by then is removed again
ADD_DEADLINE = 10.0  # s: how long one add/promote/remove call retries while etcd is not ready
_BACKOFF = (0.2, 0.4, 0.8, 1.5, 2.0)

NODE_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


class MembershipError(PreconditionError):
    """A membership change that cannot be made; ``status`` is the HTTP status the API answers
    (400 bad input, 404 no such member, 409 conflict, 503 etcd not ready: retry later)."""

    def __init__(self, where: str, what: str, *, hint: str | None = None, status: int = 400) -> None:
        super().__init__(where, what, hint=hint)
        self.status = status


@dataclass(frozen=True, slots=True)
class Added:
    member: Member
    members: tuple[Member, ...]
    existing: bool  # True: this node was already a voting member (a join repeated after it completed)

    def initial_cluster(self, node: str) -> list[str]:
        return initial_cluster(self.members, self.member.id, node)


def initial_cluster(members: tuple[Member, ...] | list[Member], new_id: int, node: str) -> list[str]:
    """Pure. ``name=peerURL`` for every member, as ``--initial-cluster`` wants it with
    ``--initial-cluster-state=existing`` (etcd matches them by peer URL): the new member under
    ``node``, another member not started yet under a placeholder."""
    out = []
    for m in members:
        name = node if m.id == new_id else (m.name or f"pending-{m.id:x}")
        out += [f"{name}={u}" for u in m.peer_urls]
    return out


def check_node_name(node: Any) -> str:
    if not isinstance(node, str) or not NODE_RE.match(node):
        raise MembershipError("node", f"{node!r} is not a member name (lowercase letters, digits, '-' and '.', 1-63)",
                              status=400)
    return node


def peer_url_of(address: Any, port: Any) -> str:
    """``https://<address>:<port>`` from a validated IP or DNS name and TCP port."""
    if not isinstance(address, str) or not address or len(address) > 253:
        raise MembershipError("peerAddress", f"{address!r} is not an address", status=400)
    host = address
    try:
        ip = ipaddress.ip_address(address)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", address):
            raise MembershipError("peerAddress", f"{address!r} is not an IP address or DNS name", status=400) from None
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise MembershipError("peerPort", f"{port!r} is not a TCP port (1-65535)", status=400)
    return f"https://{host}:{port}"


def peer_host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _retry(what: str, fn: Callable[[], Any], deadline: float, sleep: Callable[[float], None],
           transient: tuple[str, ...] = ()) -> Any:
    """``fn()``, retried with backoff while etcd is not ready (or fails with one of the
    ``transient`` messages) until ``deadline`` (monotonic), then a 503 ``MembershipError``."""
    attempt = 0
    while True:
        try:
            try:
                return fn()
            except EtcdError as e:
                if any(t in e.what for t in transient):
                    raise EtcdNotReady(e.where, e.what, code=e.code, status=e.status) from e
                raise
        except EtcdNotReady as e:
            if time.monotonic() >= deadline:
                raise MembershipError(e.where, f"{what}: etcd is not ready for a membership change: {e.what}",
                                      hint="retry in a few seconds (etcd waits until every member has been "
                                           "connected for 5 s)", status=503) from e
            log.get().info("etcd_member_change_retry", what=what, attempt=attempt + 1, reason=e.what)
            sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
            attempt += 1


def _pending(etcd: EtcdClient) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kv in etcd.range_prefix(PENDING):
        try:
            doc = json.loads(kv.value)
            out[str(doc["node"])] = doc
        except (ValueError, KeyError, TypeError):
            etcd.delete(kv.key)  # unreadable: nothing can use it
    return out


def sweep(etcd: EtcdClient, *, now: float, timeout: float = PENDING_TIMEOUT, keep: str | None = None) -> list[str]:
    """Remove the learners of pending joins older than ``timeout`` (and their records); a
    record whose member was promoted or is gone is dropped. Returns the nodes swept."""
    members = {m.id: m for m in etcd.member_list()}
    swept = []
    for node, rec in _pending(etcd).items():
        if node == keep:
            continue
        mid = int(str(rec.get("id", "0")), 16)
        m = members.get(mid)
        if m is not None and not m.is_learner:
            etcd.delete(PENDING + node)  # promoted: the join completed
            continue
        if m is None or now - float(rec.get("added", 0)) > timeout:
            if m is not None:
                try:
                    etcd.member_remove(mid)
                except EtcdError as e:
                    log.get().warning("etcd_pending_member_remove_failed", node=node, member_id=f"{mid:x}", reason=e.what)
                    continue
                log.get().warning("etcd_pending_member_removed", node=node, member_id=f"{mid:x}",
                                  reason=f"not promoted within {timeout:g}s")
            etcd.delete(PENDING + node)
            swept.append(node)
    return swept


def add(etcd: EtcdClient, node: str, peer_url: str, *, now: float, deadline_s: float = ADD_DEADLINE,
        sleep: Callable[[float], None] = time.sleep) -> Added:
    """Add ``node`` at ``peer_url`` as a learner and record the pending join.

    A member left by an earlier attempt of the same node (a learner, or a member at the same
    peer URL that never started) is removed first. ``node`` already a voting member at
    ``peer_url``: returned with ``existing=True`` (nothing changed). 409 when the peer URL
    belongs to another started member, or the name to a member at another peer URL."""
    check_node_name(node)
    deadline = time.monotonic() + deadline_s
    sweep(etcd, now=now, keep=node)
    pending = _pending(etcd).get(node)
    pending_id = int(str(pending["id"]), 16) if pending else None
    for m in etcd.member_list():
        same_url = peer_url in m.peer_urls
        ours = m.name == node or (pending_id is not None and m.id == pending_id)
        if not (same_url or ours):
            continue
        if m.name == node and same_url and not m.is_learner:
            members = tuple(etcd.member_list())
            return Added(member=m, members=members, existing=True)
        if m.name and m.name != node and not (pending_id is not None and m.id == pending_id):
            raise MembershipError(f"etcd member {m.name}", f"peer URL {peer_url} is already used by member {m.name}",
                                  hint="give this controller another spec.storage.etcd.peerAddress/peerPort, "
                                       f"or remove the old member first (kagent etcd leave --peer-address "
                                       f"{peer_host(peer_url)} on a controller)", status=409)
        if m.name == node and not same_url and not m.is_learner:
            raise MembershipError(f"etcd member {node}", f"a member named {node} already runs at {', '.join(m.peer_urls)}",
                                  hint="two controllers share a member name: reset one of them", status=409)
        # an earlier attempt of this node (a learner, or never started): replace it
        _retry(f"remove the stale member {m.id:x}", lambda mid=m.id: etcd.member_remove(mid), deadline, sleep)  # type: ignore[misc]
        log.get().info("etcd_stale_member_removed", node=node, member_id=f"{m.id:x}", peer_url=",".join(m.peer_urls))
    # right after a member is removed, etcd may answer an add with "member not found" for a moment
    added = _retry(f"add member {node}", lambda: etcd.member_add([peer_url], learner=True), deadline, sleep,
                   transient=("member not found",))
    assert isinstance(added.member, Member)
    etcd.put(PENDING + node, json.dumps({"node": node, "id": f"{added.member.id:x}", "peerURL": peer_url, "added": now}))
    log.get().info("etcd_member_added", node=node, member_id=f"{added.member.id:x}", peer_url=peer_url, learner=True)
    return Added(member=added.member, members=tuple(added.members), existing=False)


def find(members: list[Member] | tuple[Member, ...], *, node: str | None = None, address: str | None = None,
         pending_id: int | None = None) -> Member | None:
    """Pure. The member named ``node`` (or the pending one with ``pending_id``), or the one
    whose peer URL host is ``address``."""
    for m in members:
        if node is not None and (m.name == node or (pending_id is not None and m.id == pending_id)):
            return m
        if address is not None and any(peer_host(u) == address.lower().strip("[]") for u in m.peer_urls):
            return m
    return None


def promote(etcd: EtcdClient, node: str, *, deadline_s: float = ADD_DEADLINE,
            sleep: Callable[[float], None] = time.sleep) -> Member:
    """Promote ``node``'s learner; retried while it is not in sync yet. Idempotent: a voting
    member is returned as it is. 404 when ``node`` is no member (its join timed out)."""
    check_node_name(node)
    deadline = time.monotonic() + deadline_s
    pending = _pending(etcd).get(node)
    pending_id = int(str(pending["id"]), 16) if pending else None
    m = find(etcd.member_list(), node=node, pending_id=pending_id)
    if m is None:
        raise MembershipError(f"etcd member {node}", "no such member (its join may have timed out and been removed)",
                              hint="join again with a controller token", status=404)
    if m.is_learner:
        _retry(f"promote member {node}", lambda: etcd.member_promote(m.id), deadline, sleep)
        log.get().info("etcd_member_promoted", node=node, member_id=f"{m.id:x}")
    etcd.delete(PENDING + node)
    after = find(etcd.member_list(), node=node, pending_id=m.id)
    return after or m


def remove(etcd: EtcdClient, *, node: str | None = None, address: str | None = None,
           deadline_s: float = ADD_DEADLINE, sleep: Callable[[float], None] = time.sleep) -> tuple[Member, list[Member]]:
    """Remove the member named ``node`` or with peer host ``address``; returns it and the
    members left. 404 when there is none; refused (409) when it is the last member."""
    deadline = time.monotonic() + deadline_s
    members = etcd.member_list()
    pending = _pending(etcd).get(node) if node else None
    m = find(members, node=node, address=address, pending_id=int(str(pending["id"]), 16) if pending else None)
    what = node or address or "?"
    if m is None:
        raise MembershipError(f"etcd member {what}", "no such member", hint="see kagent etcd member-list", status=404)
    if len(members) == 1:
        raise MembershipError(f"etcd member {what}", "is the only member: removing it would destroy the cluster",
                              hint="to take the whole cluster down, stop the controller and run kagent reset", status=409)
    name = m.name or node
    if name:
        # first: a member removing itself (kagent etcd leave on a running controller) stops serving at once
        etcd.delete(PENDING + name)
        etcd.delete(CONTROLLERS + name)
    left = _retry(f"remove member {what}", lambda: etcd.member_remove(m.id), deadline, sleep)
    log.get().info("etcd_member_removed", node=name or "", member_id=f"{m.id:x}", peer_url=",".join(m.peer_urls))
    return m, left


def register_controller(etcd: EtcdClient, node: str, peer_url: str, api_url: str, *, now: float) -> None:
    """Record this controller (how a stopped one finds another's API); written only when changed."""
    doc = {"node": node, "peerURL": peer_url, "apiURL": api_url}
    kv = etcd.get(CONTROLLERS + node)
    if kv is not None:
        try:
            old = json.loads(kv.value)
            if {k: old.get(k) for k in doc} == doc:
                return
        except ValueError:
            pass
    etcd.put(CONTROLLERS + node, json.dumps({**doc, "seen": now}))


def controllers(etcd: EtcdClient) -> list[dict[str, Any]]:
    out = []
    for kv in etcd.range_prefix(CONTROLLERS):
        try:
            doc = json.loads(kv.value)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("apiURL"), str):
            out.append(doc)
    return out
