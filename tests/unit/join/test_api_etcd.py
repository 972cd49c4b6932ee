"""Which member a client certificate proves (``api_etcd.member_of_cert``), with real certs:
only a cert of the etcd CA with the member O and CN does."""

from __future__ import annotations

from pathlib import Path

from kagent.join.api_etcd import member_of_cert
from kagent.pki import issue
from tests.fixtures.pki_env import build


def _cert(p: Path):  # type: ignore[no-untyped-def]
    c = issue.load_cert(p.read_bytes())
    assert c is not None
    return c


def test_only_the_member_cert_of_the_etcd_ca_proves_a_member(tmp_path: Path):
    env = build(tmp_path / "a", "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n", etcd_member="node-1-abc123")
    etcd_ca = _cert(env.paths.etcd_pki("ca.crt"))
    assert member_of_cert(_cert(env.paths.etcd_pki("member.crt")), etcd_ca) == "node-1-abc123"
    # other certs of the same etcd CA (peer, apiserver client) prove nothing
    assert member_of_cert(_cert(env.paths.etcd_pki("peer.crt")), etcd_ca) is None
    assert member_of_cert(_cert(env.paths.pki("apiserver-etcd-client.crt")), etcd_ca) is None
    # a cluster-CA cert is not an etcd-CA cert, whatever it says
    assert member_of_cert(_cert(env.paths.pki("admin.crt")), etcd_ca) is None
    # the member cert of another cluster's etcd CA
    other = build(tmp_path / "b", "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n", etcd_member="node-1-abc123")
    assert member_of_cert(_cert(other.paths.etcd_pki("member.crt")), etcd_ca) is None
    assert member_of_cert(None, etcd_ca) is None
