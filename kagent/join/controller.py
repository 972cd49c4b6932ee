"""Edge. The joining side of a controller join, the local member state, and leaving the
cluster through another controller's API (DESIGN §7).

    kagent controller --token-file F  (data dir without a cluster, or a join not completed)
      1. the token is parsed and checked (controller role) before anything is written
      2. GET  /v1beta1/ca             -> cluster CA, front-proxy CA, etcd CA, SA key pair; the
                                         cluster CA must be the token's (pinned: the TLS
                                         handshake already verified the server against it)
      3. the shared CAs are written (validated first), then the agent plans this node's leaves
      4. POST /v1beta1/etcd/members   -> this node is an etcd learner; the answer has the
                                         initial cluster, etcd starts with state=existing
      5. POST /v1beta1/etcd/members/<name>/promote (mTLS, pki/etcd/member.crt), retried until
         the learner is in sync; the state file then says ``joined``

The member state lives in ``<data>/etcd-member.json`` (0600): the member name (the node name
plus a short random id made once, so cloned hosts with one hostname get distinct members),
``state`` (``initial``: this node created the cluster; ``pending``: a join not completed;
``joined``; ``left``), the initial cluster of the join, and the controller API URLs this
node knows (refreshed by the running agent), which is how a stopped controller leaves.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

from kagent import fsutil, log
from kagent.errors import PreconditionError
from kagent.paths import Paths

if TYPE_CHECKING:
    from kagent.join.token import JoinToken

STATE_FILE = "etcd-member.json"
CLIENT_TIMEOUT = 20.0  # s: an add may wait (with retries) for etcd to accept a membership change


class JoinError(PreconditionError):
    """The join could not be made (exit 4): the API refused it, or its answer was unusable."""


# ---- the local member state ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberState:
    name: str
    state: str = "initial"  # initial | pending | joined | left
    initial_cluster: tuple[str, ...] = ()
    api_urls: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return (json.dumps({"name": self.name, "state": self.state, "initialCluster": list(self.initial_cluster),
                            "apiURLs": list(self.api_urls)}, indent=1) + "\n").encode()


def state_path(paths: Paths) -> Path:
    return paths.data_dir / STATE_FILE


def load_state(paths: Paths) -> MemberState | None:
    p = state_path(paths)
    try:
        doc = json.loads(p.read_bytes())
        return MemberState(name=str(doc["name"]), state=str(doc.get("state", "initial")),
                           initial_cluster=tuple(str(x) for x in doc.get("initialCluster") or ()),
                           api_urls=tuple(str(x) for x in doc.get("apiURLs") or ()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PreconditionError(str(p), f"unreadable member state: {e}",
                                hint="restore it from a backup, or reset this controller and join it again") from e


def save_state(paths: Paths, st: MemberState) -> None:
    fsutil.write_atomic(state_path(paths), st.to_json(), mode=fsutil.MODE_PRIVATE_KEY)


def new_member_name(node_name: str) -> str:
    """``<node name>-<6 hex>``, at most 63 characters."""
    return f"{node_name[:56].rstrip('-.')}-{secrets.token_hex(3)}"


def ensure_member_name(paths: Paths, node_name: str) -> MemberState:
    """The member state, made on first use. A data dir whose etcd already holds a member
    made before names carried an id keeps the node name (the member's name in the cluster)."""
    st = load_state(paths)
    if st is not None:
        return st
    legacy = (paths.etcd_data_dir / "member").is_dir()
    st = MemberState(name=node_name if legacy else new_member_name(node_name))
    fsutil.ensure_dir(paths.data_dir, fsutil.MODE_DATA_DIR)
    save_state(paths, st)
    return st


def reset_etcd_data(paths: Paths) -> None:
    """Empty ``<data>/etcd`` (the data of a join attempt whose member was replaced): never
    follows a symlink out of it."""
    d = paths.etcd_data_dir
    if d.is_symlink() or not d.is_dir():
        return
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# ---- the HTTPS client of the controller API --------------------------------------------------


@dataclass
class ApiClient:
    """The controller API at ``server`` (``https://host:port``), its certificate verified
    against ``ca_pem`` (pinned: from the token, or this node's cluster CA), authenticated by a
    bearer token or a client cert."""

    server: str
    ca_pem: bytes
    bearer: str | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = CLIENT_TIMEOUT
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never show the bearer token
        return f"ApiClient(server={self.server!r})"

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode())
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert and self.key:
                ctx.load_cert_chain(str(self.cert), str(self.key))
            self._ctx = ctx
        return self._ctx

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        u = urlsplit(self.server)
        where = f"controller API {self.server}"
        if u.scheme != "https" or not u.hostname:
            raise JoinError(where, "is not an https:// URL")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=self.timeout, context=self._context())
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(1 << 20)
        except ssl.SSLCertVerificationError as e:
            raise JoinError(where, f"its certificate is not signed by the pinned CA ({e.verify_message})",
                            hint="the token names another cluster's CA, or this is not that cluster's controller: "
                                 "create a token on a controller of the cluster to join") from e
        except (ssl.SSLError, OSError, http.client.HTTPException) as e:
            what = f"no answer within {self.timeout:g}s" if isinstance(e, (TimeoutError, socket.timeout)) else str(e)
            raise JoinError(where, f"{method} {path}: {what}",
                            hint="is the controller running and its control API port reachable from here?") from e
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        return resp.status, doc if isinstance(doc, dict) else {}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``request`` that raises ``JoinError`` (with the API's error and hint) unless 2xx."""
        status, doc = self.request(method, path, body)
        if 200 <= status < 300:
            return doc
        hint = doc.get("hint") if isinstance(doc.get("hint"), str) else None
        if status == 401:
            hint = hint or "the token is invalid, expired or invalidated: create a new one with kagent token create --role controller"
        raise JoinError(f"controller API {self.server}", f"{method} {path}: HTTP {status}: {doc.get('error') or 'refused'}",
                        hint=hint)


# ---- the shared CAs ------------------------------------------------------------------------

# (answer key, cert file, key file) for the CAs and the SA key pair a joining controller receives
SHARED = (("ca", "ca.crt", "ca.key"), ("frontProxyCa", "front-proxy-ca.crt", "front-proxy-ca.key"),
          ("etcdCa", "etcd/ca.crt", "etcd/ca.key"))


def shared_material(paths: Paths) -> dict[str, Any]:
    """The answer of ``GET /v1beta1/ca``: every shared CA (cert and key) and the SA key pair."""
    out: dict[str, Any] = {}
    for name, crt, key in SHARED:
        out[name] = {"cert": paths.pki(crt).read_text(), "key": paths.pki(key).read_text()}
    out["sa"] = {"key": paths.pki("sa.key").read_text(), "pub": paths.pki("sa.pub").read_text()}
    return out


def _pem_pair(doc: dict[str, Any], name: str, a: str, b: str, where: str) -> tuple[bytes, bytes]:
    part = doc.get(name)
    if not isinstance(part, dict) or not isinstance(part.get(a), str) or not isinstance(part.get(b), str):
        raise JoinError(where, f"the answer has no {name}.{a}/{name}.{b}")
    return part[a].encode(), part[b].encode()


def validate_shared(doc: dict[str, Any], token_ca: bytes, where: str) -> dict[Path, tuple[bytes, int]]:
    """Every file of a ``GET /v1beta1/ca`` answer, checked (each CA cert parses, is a CA,
    matches its key; the cluster CA is the pinned one; the SA halves match): relative path ->
    (bytes, mode). Nothing is written here."""
    from kagent.pki import issue  # a joining controller only: the running agent needs no cryptography

    files: dict[Path, tuple[bytes, int]] = {}
    pinned = issue.load_cert(token_ca)
    for name, crt, key in SHARED:
        cert_pem, key_pem = _pem_pair(doc, name, "cert", "key", where)
        cert, k = issue.load_cert(cert_pem), issue.load_key(key_pem)
        if cert is None or k is None or not issue.is_ca(cert) or not issue.same_public_key(cert.public_key(), k):  # type: ignore[arg-type]
            raise JoinError(where, f"{name} is not a CA certificate with its matching key")
        if name == "ca" and (pinned is None or issue.fingerprint(cert) != issue.fingerprint(pinned)):
            raise JoinError(where, "the cluster CA it sent is not the CA in the token", hint="create a new token on the cluster to join")
        files[Path(crt)] = (cert_pem, fsutil.MODE_CERT)
        files[Path(key)] = (key_pem, fsutil.MODE_PRIVATE_KEY)
    sa_key, sa_pub = _pem_pair(doc, "sa", "key", "pub", where)
    k, pub = issue.load_key(sa_key), issue.load_public(sa_pub)
    if k is None or pub is None or not issue.same_public_key(pub, k):
        raise JoinError(where, "the SA key pair does not match")
    files[Path("sa.key")] = (sa_key, fsutil.MODE_PRIVATE_KEY)
    files[Path("sa.pub")] = (sa_pub, fsutil.MODE_PUBLIC)
    return files


def write_shared(paths: Paths, files: dict[Path, tuple[bytes, int]]) -> None:
    fsutil.ensure_dir(paths.pki_dir, fsutil.MODE_PRIVATE_DIR)
    fsutil.ensure_dir(paths.etcd_pki_dir, fsutil.MODE_PRIVATE_DIR)
    for rel, (data, mode) in files.items():
        fsutil.write_atomic(paths.pki_dir / rel, data, mode=mode)


def check_same_cluster(paths: Paths, token_ca: bytes) -> None:
    """A data dir that already holds a cluster CA joins only the cluster of that CA."""
    from kagent.pki import issue

    ca = paths.pki("ca.crt")
    if not ca.exists():
        return
    have, want = issue.load_cert(ca.read_bytes()), issue.load_cert(token_ca)
    if have is None or want is None or issue.fingerprint(have) != issue.fingerprint(want):
        raise JoinError(str(ca), "this data dir belongs to another cluster than the token's",
                        hint="reset this node (kagent reset) before joining it to another cluster")


# ---- join, promote, leave ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    name: str
    member_id: str
    existing: bool
    initial_cluster: tuple[str, ...]
    api_urls: tuple[str, ...]


def request_member(client: ApiClient, name: str, peer_address: str, peer_port: int) -> JoinAnswer:
    where = f"controller API {client.server}"
    doc = client.call("POST", "/v1beta1/etcd/members", {"node": name, "peerAddress": peer_address, "peerPort": peer_port})
    ic = doc.get("initialCluster")
    member = doc.get("member") or {}
    if not isinstance(ic, list) or not ic or not all(isinstance(x, str) and "=https://" in x for x in ic):
        raise JoinError(where, "the answer has no usable initialCluster")
    if not isinstance(member, dict) or member.get("name") != name:
        raise JoinError(where, "the answer names another member")
    urls = [u for u in doc.get("controllers") or [] if isinstance(u, str) and u.startswith("https://")]
    return JoinAnswer(name=name, member_id=str(member.get("id", "")), existing=bool(doc.get("existing")),
                      initial_cluster=tuple(ic), api_urls=tuple(dict.fromkeys([client.server, *urls])))


def member_client(paths: Paths, server: str, timeout: float = CLIENT_TIMEOUT) -> ApiClient:
    """A client of another controller's API authenticated by this controller's member cert."""
    return ApiClient(server=server, ca_pem=paths.pki("ca.crt").read_bytes(), cert=paths.etcd_pki("member.crt"),
                     key=paths.etcd_pki("member.key"), timeout=timeout)


def promote_self(paths: Paths, name: str, api_urls: Sequence[str], *, deadline_s: float = 120.0) -> str:
    """Ask one of ``api_urls`` to promote this node's learner, retried (with backoff) until it
    succeeds or ``deadline_s`` passes. Returns the URL that promoted it."""
    deadline = time.monotonic() + deadline_s
    delay = 0.5
    last: Exception | None = None
    while True:
        for url in api_urls:
            try:
                member_client(paths, url).call("POST", f"/v1beta1/etcd/members/{name}/promote", {})
                return url
            except JoinError as e:
                last = e
                if "HTTP 404" in e.what:
                    raise
        if time.monotonic() >= deadline:
            assert last is not None
            raise last
        log.get().info("etcd_promote_retry", member=name, reason=str(last))
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def leave_through_api(paths: Paths, *, name: str | None = None, api_urls: Sequence[str] | None = None,
                      timeout: float = CLIENT_TIMEOUT) -> str:
    """Remove this controller's etcd member through another controller's API, for a
    controller whose own etcd is stopped (``kagent etcd leave``, ``kagent reset``).

    ``paths``: this controller's data/run dirs; ``name`` (default: from
    ``<data>/etcd-member.json``): its member name; ``api_urls`` (default: the controller API
    URLs in that file, refreshed while the agent ran; its own API is skipped by the caller's
    choice of list): tried in order. Authenticated by ``<data>/pki/etcd/member.crt`` (mTLS,
    no token). Returns the URL that removed the member; a member already gone (404) counts as
    removed. Raises ``JoinError`` (exit 4) when no controller could remove it, naming each
    failure. Marks the member state ``left``."""
    st = load_state(paths)
    name = name or (st.name if st else None)
    if not name:
        raise JoinError(str(state_path(paths)), "no etcd member name in this data dir", hint="this controller never ran etcd")
    urls = list(api_urls if api_urls is not None else (st.api_urls if st else ()))
    if not urls:
        raise JoinError(str(state_path(paths)), "knows no other controller's API",
                        hint="run kagent etcd leave --peer-address <this node> on another controller")
    failures = []
    for url in urls:
        client = member_client(paths, url, timeout)
        try:
            status, doc = client.request("DELETE", f"/v1beta1/etcd/members/{name}")
        except JoinError as e:
            failures.append(f"{url}: {e.what}")
            continue
        if status in (200, 404):
            if st is not None:
                save_state(paths, MemberState(name=st.name, state="left", api_urls=st.api_urls))
            log.get().info("etcd_left", member=name, through=url)
            return url
        failures.append(f"{url}: HTTP {status}: {doc.get('error') or 'refused'}")
    raise JoinError(f"etcd member {name}", "no controller removed it: " + "; ".join(failures),
                    hint="start this controller and run kagent etcd leave, or run kagent etcd leave --peer-address "
                         "<its peer address> on another controller")


# ---- the agent's steps -------------------------------------------------------------------------


def check_controller_join(paths: Paths, token_file: Path | None) -> JoinToken | None:
    """Before anything is written: the controller token to join with, or None when this data
    dir is a member already (a joined controller starts from its data dir and ignores a stale
    or expired token) or no token was given. Refuses a data dir whose join did not complete or
    that left the cluster, when no token is given."""
    st = load_state(paths)
    has_ca = paths.pki("ca.crt").exists()
    if st is not None and st.state == "left" and token_file is None:
        raise PreconditionError(str(state_path(paths)), f"etcd member {st.name} left the cluster",
                                hint="reset this controller (kagent reset), then join it again with --token-file")
    if has_ca and (st is None or st.state in ("initial", "joined")):
        if token_file is not None:
            log.get().info("controller_join_skipped", reason="already a member", member=st.name if st else None)
        return None
    if token_file is None:
        if st is not None and st.state == "pending":
            raise PreconditionError(str(state_path(paths)), f"the join of etcd member {st.name} did not complete",
                                    hint="run again with --token-file FILE (a controller token)")
        return None
    from kagent.join.token import TokenRole
    from kagent.join.worker import load_token_file

    token = load_token_file(token_file, TokenRole.CONTROLLER)  # exit 4 naming the file, nothing written
    check_same_cluster(paths, token.ca_pem)
    return token


def fetch_shared(paths: Paths, token: JoinToken) -> None:
    """``GET /v1beta1/ca`` with the token (the server pinned to the token's CA), validated,
    then written: the cluster, front-proxy and etcd CAs and the SA key pair."""
    client = ApiClient(server=token.server, ca_pem=token.ca_pem, bearer=token.value)
    files = validate_shared(client.call("GET", "/v1beta1/ca"), token.ca_pem, f"controller API {token.server}")
    write_shared(paths, files)
    log.get().info("controller_cas_fetched", server=token.server, token_id=token.token_id)


def join_etcd(paths: Paths, token: JoinToken, name: str, peer_address: str, peer_port: int) -> JoinAnswer:
    """``POST /v1beta1/etcd/members``: this node becomes a learner. A fresh member starts
    from an empty etcd data dir (the data of an earlier attempt is dropped); the state file
    says ``pending`` with the initial cluster until ``finish_join``."""
    client = ApiClient(server=token.server, ca_pem=token.ca_pem, bearer=token.value)
    answer = request_member(client, name, peer_address, peer_port)
    if not answer.existing:
        reset_etcd_data(paths)
    save_state(paths, MemberState(name=name, state="joined" if answer.existing else "pending",
                                  initial_cluster=answer.initial_cluster, api_urls=answer.api_urls))
    log.get().info("etcd_member_requested", member=name, member_id=answer.member_id, existing=answer.existing,
                   initial_cluster=",".join(answer.initial_cluster))
    return answer


def finish_join(paths: Paths, client_port: int, *, deadline_s: float = 120.0) -> None:
    """After this node's etcd answers: have it promoted through another controller's API,
    then mark the state ``joined`` (a restart then needs no token)."""
    from kagent.join.etcdclient import EtcdError, local_client

    st = load_state(paths)
    if st is None or st.state != "pending":
        return
    deadline = time.monotonic() + deadline_s
    with local_client(paths, client_port, timeout=2) as etcd:
        while True:
            try:
                if etcd.health():
                    break
            except EtcdError:
                pass
            if time.monotonic() >= deadline:
                raise JoinError(f"etcd member {st.name}", f"the local etcd did not come up within {deadline_s:g}s",
                                hint="see the etcd log lines; the learner is removed again by the cluster after a timeout")
            time.sleep(0.3)
    url = promote_self(paths, st.name, [u for u in st.api_urls], deadline_s=max(5.0, deadline - time.monotonic()))
    save_state(paths, MemberState(name=st.name, state="joined", initial_cluster=st.initial_cluster, api_urls=st.api_urls))
    log.get().info("controller_join_completed", member=st.name, promoted_by=url)


def keep_membership(paths: Paths, *, client_port: int, peer_url: str, api_url: str | None) -> None:
    """One round of what a running controller does periodically: record itself in etcd (so
    others find its API), refresh the other controllers' API URLs in its state file, and
    sweep joins that never completed. etcd errors are logged and retried next round."""
    from kagent.join import membership
    from kagent.join.etcdclient import EtcdError, local_client

    st = load_state(paths)
    if st is None or st.state not in ("initial", "joined"):
        return
    try:
        with local_client(paths, client_port, timeout=5) as etcd:
            now = time.time()
            if api_url:
                membership.register_controller(etcd, st.name, peer_url, api_url, now=now)
            urls = tuple(sorted(c["apiURL"] for c in membership.controllers(etcd) if c.get("node") != st.name))
            if not urls and len(etcd.member_list()) > 1:
                urls = st.api_urls  # other members that have not registered yet: keep what the join said
            if urls != st.api_urls:  # emptied too when no other member is left: nobody to leave through
                save_state(paths, MemberState(name=st.name, state=st.state, initial_cluster=st.initial_cluster,
                                              api_urls=urls))
            membership.sweep(etcd, now=now)
    except EtcdError as e:
        log.get().warning("etcd_membership_round_failed", reason=f"{e.where}: {e.what}")
