"""Every planned certificate checked by the real ``openssl``: chain verification against its
own CA (and refusal against the others), purpose, subjects and SANs as openssl prints them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.pki_env import PkiEnv, build, openssl_text, openssl_verify


@pytest.fixture(scope="module", params=["rsa-2048", "ecdsa-p256"])
def env(request, tmp_path_factory) -> PkiEnv:
    base = tmp_path_factory.mktemp(request.param)
    return build(base, f"spec:\n  pki:\n    keyAlgorithm: {request.param}\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n",
                 kubelet_node="node-a")


def test_every_leaf_verifies_against_its_ca_and_not_against_the_others(env: PkiEnv):
    for leaf in env.plan.leaves:
        own = env.plan.ca(leaf.signer).cert
        r = openssl_verify(own, leaf.cert)
        assert r.returncode == 0 and r.stdout.strip() == f"{leaf.cert}: OK", (leaf.name, r.stderr)
        for other in env.plan.cas:
            if other.name != leaf.signer:
                assert openssl_verify(other.cert, leaf.cert).returncode != 0, (leaf.name, other.name)


def test_cas_verify_as_self_signed_roots(env: PkiEnv):
    for ca in env.plan.cas:
        assert openssl_verify(ca.cert, ca.cert).returncode == 0
        text = openssl_text(ca.cert)
        assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text
        assert "Digital Signature" not in text


@pytest.mark.parametrize("name", ["server", "control-api", "etcd/server", "etcd/peer"])
def test_server_certs_pass_the_sslserver_purpose(env: PkiEnv, name: str):
    leaf = env.plan.leaf(name)
    assert openssl_verify(env.plan.ca(leaf.signer).cert, leaf.cert, "-purpose", "sslserver").returncode == 0


@pytest.mark.parametrize("name", ["admin", "ccm", "scheduler", "konnectivity", "apiserver-kubelet-client",
                                  "front-proxy-client", "apiserver-etcd-client", "kubelet-client", "etcd/peer"])
def test_client_certs_pass_sslclient_and_pure_clients_fail_sslserver(env: PkiEnv, name: str):
    leaf = env.plan.leaf(name)
    ca = env.plan.ca(leaf.signer).cert
    assert openssl_verify(ca, leaf.cert, "-purpose", "sslclient").returncode == 0
    if "server" not in [str(u) for u in leaf.request.usages]:
        assert openssl_verify(ca, leaf.cert, "-purpose", "sslserver").returncode != 0


def test_openssl_reads_subjects_and_sans(env: PkiEnv):
    text = openssl_text(env.plan.leaf("server").cert)
    assert "Subject: O = kubernetes, CN = kubernetes" in text
    assert "DNS:kubernetes.default.svc.cluster.local," in text and "IP Address:10.96.0.1" in text
    assert "IP Address:192.0.2.10" in text and "IP Address:0:0:0:0:0:0:0:1" in text
    peer = openssl_text(env.plan.leaf("etcd/peer").cert)
    assert "Subject: O = etcd-peer, CN = 127.0.0.1" in peer and "IP Address:127.0.0.1" in peer
    assert "Subject: O = system:nodes, CN = system:node:node-a" in openssl_text(env.plan.leaf("kubelet-client").cert)


def test_keys_match_their_certificates_per_openssl(env: PkiEnv):
    for leaf in env.plan.leaves:
        from_cert = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", str(leaf.cert)], capture_output=True, check=True).stdout
        from_key = subprocess.run(["openssl", "pkey", "-pubout", "-in", str(leaf.key)], capture_output=True, check=True).stdout
        assert from_cert == from_key, leaf.name
    for kp in env.plan.keypairs:
        derived = subprocess.run(["openssl", "pkey", "-pubout", "-in", str(kp.private)], capture_output=True, check=True).stdout
        assert derived == kp.public.read_bytes()


def test_file_modes(env: PkiEnv):
    modes = {p: p.stat().st_mode & 0o777 for p in env.plan.files()}
    for p, mode in modes.items():
        assert mode == (0o600 if p.suffix in (".key", ".conf") else 0o644), p
    assert Path(env.paths.pki_dir).stat().st_mode & 0o777 == 0o700
    assert Path(env.paths.etcd_pki_dir).stat().st_mode & 0o777 == 0o700
