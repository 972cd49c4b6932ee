"""The controller API against a real etcd and the real ``kagent api`` child on loopback:
token auth (expired, invalidated, wrong role, replay: 401), worker join (the cert is for the
worker's own key, signed by the cluster CA), re-join (409, or the same key retrying),
renewal by mTLS (a removed node cannot), body cap, slow clients, and the secret appears
neither in etcd nor in any log line."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509

from kagent.config.model import KeyAlgorithm
from kagent.join.nodes import make_csr
from kagent.join.token import decode_token
from kagent.pki import issue
from tests.conftest import free_port, kagent_cmd, kagent_env
from tests.integration.conftest import etcdctl
from tests.integration.join.api_fixtures import api_call, api_context, controller  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
SECRETS: list[str] = []  # every secret this module created: none may show up in etcd or a log


def create_token(n, *args: str) -> tuple[str, object]:
    r = n.kagent("token", "create", *args)
    assert r.returncode == 0, r.stderr
    tok = decode_token(r.stdout.strip(), "stdout")
    SECRETS.append(tok.secret)
    return r.stdout.strip(), tok


def tokens(n) -> dict[str, dict]:
    r = n.kagent("token", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    return {t["id"]: t for t in json.loads(r.stdout)}


def join(n, tok, node: str, key=None):
    key = key or issue.new_key(KeyAlgorithm.ECDSA_P256)
    body = {"node": node, "csr": make_csr(node, key).decode()}
    return api_call(n.ports["control"], "POST", "/v1beta1/worker/join", body, ca=n.data / "pki" / "ca.crt",
                    token=tok.value if tok else None), key


def test_token_create_list_and_auth(controller):
    n = controller
    text, tok = create_token(n, "--role", "worker")
    assert tok.server == f"https://127.0.0.1:{n.ports['control']}"
    assert tok.ca_pem == (n.data / "pki" / "ca.crt").read_bytes()
    listed = tokens(n)[tok.token_id]
    assert listed["role"] == "worker" and listed["uses"] == 0 and listed["expires"] is not None
    assert "kubelet-bootstrap" not in text and tok.secret not in json.dumps(listed)

    assert join(n, None, "anon")[0].status == 401
    forged = type(tok)(server=tok.server, ca_pem=tok.ca_pem, role=tok.role, token_id=tok.token_id, secret="0" * 16)
    assert join(n, forged, "forged")[0].status == 401
    _, ctl = create_token(n, "--role", "controller")
    assert join(n, ctl, "wrong-role")[0].status == 401

    ans, key = join(n, tok, "worker-a")
    assert ans.status == 200, ans.doc
    cert = x509.load_pem_x509_certificate(ans.doc["cert"].encode())
    ca = x509.load_pem_x509_certificate((n.data / "pki" / "ca.crt").read_bytes())
    assert issue.signed_by(cert, ca) and issue.same_public_key(cert.public_key(), key)
    assert cert.subject.rfc4514_string() == "CN=system:node:worker-a,O=system:nodes"
    assert ans.doc["ca"].encode() == (n.data / "pki" / "ca.crt").read_bytes()
    assert ans.doc["apiserver"] == f"https://127.0.0.1:{n.ports['api']}"
    assert tokens(n)[tok.token_id]["uses"] == 1

    r = n.kagent("token", "invalidate", tok.token_id)
    assert r.returncode == 0 and tok.token_id in r.stdout
    assert join(n, tok, "replayed")[0].status == 401  # replay after invalidation
    assert tok.token_id not in tokens(n)

    _, short = create_token(n, "--role", "worker", "--expiry", "1s")
    time.sleep(1.5)
    assert join(n, short, "too-late")[0].status == 401
    assert tokens(n)[short.token_id]["expired"] is True

    r = n.kagent("token", "create", "--expiry", "0")
    assert r.returncode == 0 and "never expires" in r.stderr
    SECRETS.append(decode_token(r.stdout.strip(), "stdout").secret)
    assert n.kagent("token", "create", "--expiry", "soon").returncode == 2
    assert n.kagent("token", "invalidate", "NOT-AN-ID").returncode == 2
    r = n.kagent("token", "list", "--role", "controller")
    assert ctl.token_id in r.stdout and short.token_id not in r.stdout


def test_rejoin_is_409_unless_it_is_the_same_key(controller):
    n = controller
    _, tok = create_token(n, "--role", "worker")
    first, key = join(n, tok, "worker-b")
    assert first.status == 200
    again, _ = join(n, tok, "worker-b")  # another key: another host with the token
    assert again.status == 409
    assert "already joined" in again.doc["error"] and "kagent node remove worker-b" in again.doc["hint"]
    retry, _ = join(n, tok, "worker-b", key)  # the same worker whose answer was lost
    assert retry.status == 200
    bad = api_call(n.ports["control"], "POST", "/v1beta1/worker/join", {"node": "worker-c", "csr": make_csr(
        "someone-else", issue.new_key(KeyAlgorithm.ECDSA_P256)).decode()}, ca=n.data / "pki" / "ca.crt", token=tok.value)
    assert bad.status == 400 and "CN=system:node:worker-c" in bad.doc["error"]
    assert api_call(n.ports["control"], "POST", "/v1beta1/worker/join", {"node": "Bad_Name", "csr": "x"},
                    ca=n.data / "pki" / "ca.crt", token=tok.value).status == 400


def _pem_files(tmp_path, name, cert_pem: bytes, key) -> tuple:
    c, k = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    c.write_bytes(cert_pem)
    k.write_bytes(issue.key_pem(key))
    return c, k


def test_renew_by_mtls_and_removed_node_cannot(controller, tmp_path):
    n = controller
    ca = n.data / "pki" / "ca.crt"
    _, tok = create_token(n, "--role", "worker")
    ans, key = join(n, tok, "worker-r")
    assert ans.status == 200
    c1, k1 = _pem_files(tmp_path, "one", ans.doc["cert"].encode(), key)
    new_key = issue.new_key(KeyAlgorithm.ECDSA_P256)
    renew = {"csr": make_csr("worker-r", new_key).decode()}
    assert api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", renew, ca=ca).status == 401  # no cert
    assert api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", renew, ca=ca, token=tok.value).status == 401
    r1 = api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", renew, ca=ca, cert=c1, key=k1)
    assert r1.status == 200, r1.doc
    renewed = x509.load_pem_x509_certificate(r1.doc["cert"].encode())
    assert issue.same_public_key(renewed.public_key(), new_key)
    # a certificate of another node cannot renew this one
    other = api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", {"csr": make_csr("worker-b", new_key).decode()},
                     ca=ca, cert=c1, key=k1)
    assert other.status == 400

    listed = json.loads(n.kagent("node", "list", "-o", "json").stdout)
    row = next(r for r in listed if r["name"] == "worker-r")
    assert row["tokenId"] == tok.token_id and row["fingerprint"] == issue.fingerprint(renewed)
    assert "worker-r" in n.kagent("node", "list").stdout

    r = n.kagent("node", "remove", "worker-r")
    assert r.returncode == 0, r.stderr
    c2, k2 = _pem_files(tmp_path, "two", r1.doc["cert"].encode(), new_key)
    gone = api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", {"csr": make_csr("worker-r", new_key).decode()},
                    ca=ca, cert=c2, key=k2)
    assert gone.status == 401
    again = n.kagent("node", "remove", "worker-r")
    assert again.returncode == 4 and "is not a joined node" in again.stderr
    # removed: the name may join again
    assert join(n, tok, "worker-r")[0].status == 200


def test_body_cap_and_a_foreign_client_cert(controller, tmp_path):
    n = controller
    ca = n.data / "pki" / "ca.crt"
    _, tok = create_token(n, "--role", "worker")
    big = api_call(n.ports["control"], "POST", "/v1beta1/worker/join", raw=b"{" + b" " * (70 * 1024) + b"}", ca=ca,
                   token=tok.value)
    assert big.status == 413
    junk = api_call(n.ports["control"], "POST", "/v1beta1/worker/join", raw=b"not json", ca=ca, token=tok.value)
    assert junk.status == 400
    assert api_call(n.ports["control"], "GET", "/healthz", ca=ca).status == 200
    # a client cert from a CA the server does not trust: the handshake is refused
    own = issue.new_key(KeyAlgorithm.ECDSA_P256)
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    foreign = issue.Signer(issue.make_ca("evil", own, lifetime=timedelta(days=1), now=now, serial=3), own)
    leaf = issue.issue_leaf(issue.CertRequest(common_name="system:node:worker-a", organizations=("system:nodes",),
                                              lifetime=timedelta(days=1)), own, foreign, now=now, serial=4)
    c, k = _pem_files(tmp_path, "evil", issue.cert_pem(leaf), own)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        api_call(n.ports["control"], "POST", "/v1beta1/worker/renew", {"csr": "x"}, ca=ca, cert=c, key=k)


def test_slow_clients_are_cut_off(controller, procs):
    """A second ``kagent api`` on the same etcd and PKI with short limits."""
    n = controller
    port = free_port()
    argv = kagent_cmd(*n.flags(), "--log-format", "json", "api", f"--port={port}", "--bind-address=127.0.0.1",
                      f"--etcd-endpoint=https://127.0.0.1:{n.ports['etcd_client']}", "--apiserver-url=https://127.0.0.1:6443",
                      "--head-timeout=1", "--request-timeout=1")
    p = procs.popen(argv, env=kagent_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ca = n.data / "pki" / "ca.crt"
    deadline = time.monotonic() + 20
    while True:
        try:
            if api_call(port, "GET", "/healthz", ca=ca).status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline and p.poll() is None, "kagent api did not come up"
        time.sleep(0.1)

    ctx = api_context(ca)
    # slow head: a request line trickled in, never finished
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"POST /v1beta1/worker/join HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        got = s.recv(4096)  # the server closes the connection
        assert got == b"" and time.monotonic() - t0 < 8
    # slow body: headers complete, body never sent
    _, tok = create_token(n, "--role", "worker")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"POST /v1beta1/worker/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + tok.value.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
        t0 = time.monotonic()
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 8
    # the server still serves
    assert api_call(port, "GET", "/healthz", ca=ca).status == 200
    p.terminate()
    p.wait(10)
    SECRETS_LOGS.append(p.stderr.read().decode(errors="replace") if p.stderr else "")


SECRETS_LOGS: list[str] = []


def test_secret_is_in_neither_etcd_nor_any_log(controller):
    n = controller
    assert SECRETS, "the tests above created tokens"
    dump = etcdctl(n, "get", "--prefix", "/kagent/")
    assert dump.returncode == 0 and "/kagent/tokens/" in dump.stdout
    logs = n.log_text() + "".join(SECRETS_LOGS)
    assert "worker_joined" in logs and "api_auth_refused" in logs
    for secret in SECRETS:
        assert secret not in dump.stdout
        assert secret not in logs
    # one worker_joined event per join, naming the token id and the node
    api_events = []
    for e in n.events():
        if e.get("event") == "child_output" and e.get("component") == "control-api":
            try:
                api_events.append(json.loads(e["line"]))
            except ValueError:
                pass
    joined = [e for e in api_events if e.get("event") == "worker_joined"]
    assert len(joined) >= 4 and all(e.get("token_id") and e.get("node") for e in joined)
    assert {"worker-a", "worker-b", "worker-r"} <= {e["node"] for e in joined}


def test_token_commands_without_a_running_controller(tmp_path):
    from tests.conftest import run_kagent

    r = run_kagent("--data-dir", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r"), "token", "list")
    assert r.returncode == 4 and "hint:" in r.stderr
    assert not (tmp_path / "d").exists()
