"""Edge. The worker's side of the join protocol (DESIGN §7):

- ``load_token_file``: read (bounded) and validate a worker token before anything is written;
- ``join``: make the kubelet client key here (it never leaves this host; kept 0600 in
  ``<data>/join.key`` until the join is done, so a retry after a lost answer presents the same
  key and the controller recognises the same worker), send the CSR to the controller API with
  the token, pinning the CA from the token (a server with another CA is refused), then write
  ``kubelet.conf`` (0600) and ``join.json`` (the controller API URL, for renewals);
- ``renew``: when the kubelet client certificate expires within ``renewBefore``, ask for a new
  one with the current certificate (mTLS, no token) and rewrite ``kubelet.conf``.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kagent import fsutil
from kagent.config.model import KeyAlgorithm
from kagent.errors import PreconditionError
from kagent.join.nodes import make_csr, node_user
from kagent.join.token import MAX_TOKEN_BYTES, JoinToken, TokenError, TokenRole, decode_token, require_role
from kagent.kubeconfig import Kubeconfig, parse_kubeconfig, render_kubeconfig
from kagent.paths import Paths
from kagent.pki import issue

JOIN_TIMEOUT = 120.0  # how long a worker keeps retrying a controller API that does not answer
REQUEST_TIMEOUT = 15.0
MAX_ANSWER = 256 * 1024


def join_key_path(paths: Paths) -> Path:
    return paths.data_dir / "join.key"


def join_state_path(paths: Paths) -> Path:
    return paths.data_dir / "join.json"


def load_token_file(path: Path, role: TokenRole = TokenRole.WORKER) -> JoinToken:
    """The token in ``path``; TokenError (exit 4) naming the file when it is unreadable,
    too large, garbage, truncated or of the wrong role."""
    where = f"token file {path}"
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise TokenError(where, "does not exist", hint="pass the file holding the output of `kagent token create`") from None
    except IsADirectoryError:
        raise TokenError(where, "is a directory, not a token file") from None
    except PermissionError:
        raise TokenError(where, "is not readable (permission denied)") from None
    except OSError as err:
        raise TokenError(where, f"cannot be read: {err.strerror or err}") from None
    return require_role(decode_token(data, where), role, where)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    doc: dict[str, Any]


class _Transient(Exception):
    pass


def _request(url: str, path: str, body: dict[str, Any], *, ctx: ssl.SSLContext, token: str | None,
             timeout: float = REQUEST_TIMEOUT) -> Answer:
    u = urlsplit(url)
    assert u.hostname is not None
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        raw = resp.read(MAX_ANSWER + 1)
    finally:
        conn.close()
    try:
        doc = json.loads(raw) if raw and len(raw) <= MAX_ANSWER else {}
    except ValueError:
        doc = {}
    return Answer(resp.status, doc if isinstance(doc, dict) else {})


def _client_context(ca_pem: bytes) -> ssl.SSLContext:
    """Trusts exactly ``ca_pem`` (the CA pinned from the token or kubelet.conf)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _call(url: str, path: str, body: dict[str, Any], *, ctx: ssl.SSLContext, token: str | None, log: Any,
          deadline: float) -> Answer:
    """POST with retries on what may pass (refused, reset, timeout, 5xx) until ``deadline``;
    a certificate the pinned CA did not sign is final."""
    where = f"controller API {url}"
    delay = 1.0
    attempt = 0
    while True:
        attempt += 1
        try:
            ans = _request(url, path, body, ctx=ctx, token=token)
            if ans.status < 500 and ans.status not in (408, 429):
                return ans
            reason = f"HTTP {ans.status}: {ans.doc.get('error', '')}"
        except ssl.SSLCertVerificationError as err:
            raise PreconditionError(where, f"presents a certificate the pinned cluster CA did not sign ({err.verify_message})",
                                    hint="the token belongs to another cluster, or something else answers at this address") from None
        except (OSError, http.client.HTTPException, ssl.SSLError) as err:
            reason = f"{type(err).__name__}: {err}"
        if time.monotonic() + delay > deadline:
            raise PreconditionError(where, f"not answering ({reason}) after {attempt} attempts",
                                    hint="check that the controller runs and that its controlApiPort is reachable from here")
        log.warning("controller_api_retry", url=url, path=path, attempt=attempt, reason=reason, retry_in_s=delay)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def _check_answer(ans: Answer, where: str, key: issue.PrivateKey, node: str, ca_pem: bytes) -> tuple[bytes, str]:
    """(cert PEM, apiserver URL) from a 200 answer whose cert is for our key, our node, signed by the pinned CA."""
    cert_pem = str(ans.doc.get("cert") or "").encode()
    apiserver = ans.doc.get("apiserver")
    cert = issue.load_cert(cert_pem)
    ca = issue.load_cert(ca_pem)
    if cert is None or ca is None or not issue.signed_by(cert, ca) or not issue.same_public_key(cert.public_key(), key):  # type: ignore[arg-type]
        raise PreconditionError(where, "answered with a certificate that is not for this node's key or not signed by the pinned CA")
    if cert.subject != issue.subject_name(node_user(node), ("system:nodes",)):
        raise PreconditionError(where, f"answered with a certificate for {cert.subject.rfc4514_string()}, not {node_user(node)}")
    if not isinstance(apiserver, str) or not apiserver.startswith("https://"):
        raise PreconditionError(where, "answered without an apiserver URL")
    return cert_pem, apiserver


def _refused(ans: Answer, where: str, what: str) -> PreconditionError:
    hint = ans.doc.get("hint") if isinstance(ans.doc.get("hint"), str) else None
    error = ans.doc.get("error") or f"HTTP {ans.status}"
    return PreconditionError(where, f"{what}: {error}", hint=hint)


def _kubeconfig(node: str, apiserver: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> str:
    return render_kubeconfig(Kubeconfig(server=apiserver, ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem,
                                        cluster="kagent", context="kagent", user=node_user(node)))


def _join_key(paths: Paths, algorithm: KeyAlgorithm) -> tuple[issue.PrivateKey, bytes]:
    path = join_key_path(paths)
    try:
        pem = path.read_bytes()
        key = issue.load_key(pem)
        if key is not None:
            return key, pem
    except FileNotFoundError:
        pass
    key = issue.new_key(algorithm)
    pem = issue.key_pem(key)
    fsutil.write_atomic(path, pem, mode=fsutil.MODE_PRIVATE_KEY)
    return key, pem


def join(paths: Paths, token: JoinToken, *, node: str, key_algorithm: KeyAlgorithm, log: Any, now: datetime,
         timeout: float = JOIN_TIMEOUT) -> None:
    """Join the cluster of ``token`` as ``node``: kubelet.conf (0600) and join.json on success;
    PreconditionError (exit 4) when refused (401, 409, another CA) or unreachable."""
    where = f"controller API {token.server}"
    key, key_pem = _join_key(paths, key_algorithm)
    ctx = _client_context(token.ca_pem)
    log.info("worker_join_started", url=token.server, node=node, token_id=token.token_id)
    ans = _call(token.server, "/v1beta1/worker/join", {"node": node, "csr": make_csr(node, key).decode()},
                ctx=ctx, token=token.value, log=log, deadline=time.monotonic() + timeout)
    if ans.status == 401:
        raise PreconditionError(where, f"refused token {token.token_id} (expired, invalidated or not a worker token)",
                                hint="create a new one on a controller: kagent token create --role worker")
    if ans.status != 200:
        raise _refused(ans, where, "refused the join")
    cert_pem, apiserver = _check_answer(ans, where, key, node, token.ca_pem)
    # join.json first: kubelet.conf is what marks "joined", so a kill between the two writes
    # leaves a worker that joins again (same key: accepted), never one that cannot renew
    state = {"controlApi": token.server, "node": node, "tokenId": token.token_id, "joinedAt": now.isoformat(timespec="seconds")}
    fsutil.write_atomic(join_state_path(paths), json.dumps(state, indent=2) + "\n", mode=fsutil.MODE_CONFIG)
    fsutil.write_atomic(paths.kubelet_conf, _kubeconfig(node, apiserver, token.ca_pem, cert_pem, key_pem),
                        mode=fsutil.MODE_KUBECONFIG)
    join_key_path(paths).unlink(missing_ok=True)
    log.info("worker_joined", url=token.server, node=node, token_id=token.token_id, kubeconfig=str(paths.kubelet_conf))


def joined_control_api(paths: Paths) -> str | None:
    """The controller API URL this worker joined through (None: not joined with a token)."""
    try:
        doc = json.loads(join_state_path(paths).read_text())
    except (OSError, ValueError):
        return None
    url = doc.get("controlApi") if isinstance(doc, dict) else None
    return url if isinstance(url, str) and url.startswith("https://") else None


def renew(paths: Paths, *, node: str, renew_before: timedelta, key_algorithm: KeyAlgorithm, now: datetime, log: Any,
          timeout: float = 10.0) -> tuple[Path, ...]:
    """Renew the kubelet client certificate when it expires within ``renew_before``; returns
    the rewritten paths (kubelet.conf) or () when nothing was due. PreconditionError when the
    controller refuses (a removed node) or cannot be reached; nothing is changed then. The
    retry window is short (``timeout``): this runs as a command of the agent's loop, and the
    next renewal tick tries again."""
    url = joined_control_api(paths)
    if url is None:
        return ()
    where = str(paths.kubelet_conf)
    kc = parse_kubeconfig(paths.kubelet_conf.read_text(), where)
    cert = issue.load_cert(kc.cert_pem or b"")
    if cert is None or kc.key_pem is None:
        raise PreconditionError(where, "has no client certificate and key to renew with")
    if cert.not_valid_after_utc - now > renew_before:
        return ()
    new_key = issue.new_key(key_algorithm)
    new_key_pem = issue.key_pem(new_key)
    ctx = _client_context(kc.ca_pem)
    fd, tmp = tempfile.mkstemp(prefix=".renew.", suffix=".pem", dir=paths.data_dir)  # 0600, removed at once
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write((kc.cert_pem or b"") + b"\n" + kc.key_pem)
        ctx.load_cert_chain(tmp)
    finally:
        os.unlink(tmp)
    log.info("kubelet_cert_renewing", node=node, not_after=cert.not_valid_after_utc.isoformat(), url=url)
    ans = _call(url, "/v1beta1/worker/renew", {"csr": make_csr(node, new_key).decode()}, ctx=ctx, token=None, log=log,
                deadline=time.monotonic() + timeout)
    api_where = f"controller API {url}"
    if ans.status != 200:
        raise _refused(ans, api_where, "refused the renewal")
    cert_pem, _ = _check_answer(ans, api_where, new_key, node, kc.ca_pem)
    fsutil.write_atomic(paths.kubelet_conf, _kubeconfig(node, kc.server, kc.ca_pem, cert_pem, new_key_pem),
                        mode=fsutil.MODE_KUBECONFIG)
    log.info("kubelet_cert_renewed", node=node, sha256=issue.fingerprint(issue.load_cert(cert_pem)))  # type: ignore[arg-type]
    return (paths.kubelet_conf,)


__all__ = ["join", "joined_control_api", "load_token_file", "renew"]
