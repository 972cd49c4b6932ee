"""The etcd certificates are accepted by a real etcd (``/usr/bin/etcd`` 3.4) run with
``--client-cert-auth`` and ``--peer-client-cert-auth``: a two-member cluster on loopback
(peers 127.0.0.1 and 127.0.0.2, each with its own PKI sharing the etcd CA, as a joining
controller would; one RSA-2048, one ECDSA P-256), JWT auth tokens signed with ``etcd/jwt.key``
(sign-method RS512 or ES256, as the etcd component picks by ``keyAlgorithm``), and
``etcdctl`` with the apiserver-etcd-client pair. Without a client certificate, or with one from the Kubernetes CA,
etcd refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kagent.paths import Paths
from tests.conftest import ProcRegistry, free_port
from tests.fixtures.pki_env import PkiEnv, build

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


@dataclass
class Member:
    name: str
    env: PkiEnv
    peer_url: str
    client_url: str


SIGN_METHOD = {"rsa-2048": "RS512", "ecdsa-p256": "ES256"}


def _etcd_argv(m: Member, initial_cluster: str, data: Path) -> list[str]:
    p = m.env.paths
    return [
        ETCD, f"--name={m.name}", f"--data-dir={data}",
        f"--listen-client-urls={m.client_url}", f"--advertise-client-urls={m.client_url}",
        f"--listen-peer-urls={m.peer_url}", f"--initial-advertise-peer-urls={m.peer_url}",
        f"--initial-cluster={initial_cluster}", "--initial-cluster-state=new", "--initial-cluster-token=kagent-test",
        "--client-cert-auth=true", f"--trusted-ca-file={p.etcd_pki('ca.crt')}",
        f"--cert-file={p.etcd_pki('server.crt')}", f"--key-file={p.etcd_pki('server.key')}",
        "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={p.etcd_pki('ca.crt')}",
        f"--peer-cert-file={p.etcd_pki('peer.crt')}", f"--peer-key-file={p.etcd_pki('peer.key')}",
        f"--auth-token=jwt,pub-key={p.etcd_pki('jwt.pub')},priv-key={p.etcd_pki('jwt.key')},"
        f"sign-method={SIGN_METHOD[m.env.config.pki.key_algorithm.value]},ttl=10m",
        "--log-level=warn", "--logger=zap",
    ]


def etcdctl(endpoints: list[str], paths: Paths, *args: str, cert: Path | None = None, key: Path | None = None,
            timeout: str = "3s") -> subprocess.CompletedProcess[str]:
    argv = [ETCDCTL, f"--endpoints={','.join(endpoints)}", f"--cacert={paths.etcd_pki('ca.crt')}",
            "--dial-timeout=2s", f"--command-timeout={timeout}"]
    if cert and key:
        argv += [f"--cert={cert}", f"--key={key}"]
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=30)


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Member]:
    base = tmp_path_factory.mktemp("etcd")
    a = build(base / "a", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n")
    # the second controller receives the etcd CA (as the join API hands it over), then plans its own leaves
    b_paths = Paths.build(base / "b" / "data", base / "b" / "run")
    b_paths.etcd_pki_dir.mkdir(parents=True)
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(a.paths.etcd_pki(name), b_paths.etcd_pki(name))
    b = build(base / "b", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.2\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    assert b.paths.etcd_pki("ca.crt").read_bytes() == a.paths.etcd_pki("ca.crt").read_bytes()
    ms = [Member("a", a, f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}"),
          Member("b", b, f"https://127.0.0.2:{free_port()}", f"https://127.0.0.1:{free_port()}")]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in ms)
    reg = ProcRegistry()
    try:
        for m in ms:
            log = open(base / f"{m.name}.log", "wb")
            reg.popen(_etcd_argv(m, initial, base / m.name / "etcd-data"), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            r = etcdctl([m.client_url for m in ms], a.paths, "endpoint", "health",
                        cert=a.paths.pki("apiserver-etcd-client.crt"), key=a.paths.pki("apiserver-etcd-client.key"))
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                logs = "\n".join((base / f"{m.name}.log").read_text()[-3000:] for m in ms)
                pytest.fail(f"etcd cluster never became healthy:\n{r.stdout}{r.stderr}\n{logs}")
            time.sleep(0.3)
        yield ms
    finally:
        reg.stop_all()


def _client(env: PkiEnv) -> dict[str, Path]:
    return {"cert": env.paths.pki("apiserver-etcd-client.crt"), "key": env.paths.pki("apiserver-etcd-client.key")}


def test_both_members_are_healthy_with_the_apiserver_client_cert(members: list[Member]):
    for m in members:
        r = etcdctl([m.client_url], m.env.paths, "endpoint", "health", **_client(m.env))
        assert r.returncode == 0, r.stderr
        assert "is healthy" in (r.stdout + r.stderr)


def test_peers_talk_over_tls_with_the_peer_certs(members: list[Member]):
    a, b = members
    r = etcdctl([a.client_url], a.env.paths, "member", "list", "-w", "json", **_client(a.env))
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["members"]
    assert sorted(m["peerURLs"][0] for m in listed) == sorted([a.peer_url, b.peer_url])
    assert all(m.get("clientURLs") for m in listed), "a member never published its client URL: peer TLS failed"
    assert etcdctl([a.client_url], a.env.paths, "put", "kagent/test", "replicated", **_client(a.env)).returncode == 0
    got = etcdctl([b.client_url], b.env.paths, "get", "kagent/test", "--print-value-only", "--consistency=l", **_client(b.env))
    assert got.returncode == 0 and got.stdout.strip() == "replicated", got.stderr


def test_without_a_client_cert_etcd_refuses(members: list[Member]):
    a = members[0]
    r = etcdctl([a.client_url], a.env.paths, "endpoint", "health", timeout="2s")
    assert r.returncode != 0
    assert "is healthy" not in r.stdout


def test_a_client_cert_from_the_kubernetes_ca_is_refused(members: list[Member]):
    a = members[0]
    r = etcdctl([a.client_url], a.env.paths, "endpoint", "health", cert=a.env.paths.pki("admin.crt"),
                key=a.env.paths.pki("admin.key"), timeout="2s")
    assert r.returncode != 0
    assert "is healthy" not in r.stdout
