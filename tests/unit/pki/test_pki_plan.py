"""kagent/pki/plan.py: the plan (files, subjects, SANs, usages, readers) and needs_issue.
Pure: certificates are made in memory, nothing touches the disk."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagent.config.model import KeyAlgorithm
from kagent.node.facts import NodeFacts
from kagent.paths import Paths
from kagent.pki import issue
from kagent.pki.issue import Signer, Usage
from kagent.pki.plan import (
    Existing,
    LeafSpec,
    Reason,
    external_api_url,
    https_url,
    needs_issue,
    plan_pki,
)
from tests.fixtures.pki_env import FACTS, make_config

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
PATHS = Paths.build("/k/data", "/k/run")


def _plan(text: str = "", facts: NodeFacts = FACTS, **kw: object):
    return plan_pki(make_config(text), PATHS, facts, **kw)  # type: ignore[arg-type]


# ---- the plan --------------------------------------------------------------------------


def test_default_plan_has_the_k0s_file_set_with_kagent_names():
    plan = _plan()
    rel = {str(p.relative_to(PATHS.data_dir)) for p in plan.files()}
    expected = {
        "pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key",
        "pki/sa.key", "pki/sa.pub", "pki/etcd/ca.crt", "pki/etcd/ca.key", "pki/etcd/jwt.key", "pki/etcd/jwt.pub",
        "pki/admin.conf", "pki/ccm.conf", "pki/scheduler.conf", "pki/konnectivity.conf",
        "pki/etcd/server.crt", "pki/etcd/server.key", "pki/etcd/peer.crt", "pki/etcd/peer.key",
    }
    for leaf in ("front-proxy-client", "admin", "konnectivity", "ccm", "scheduler", "apiserver-kubelet-client",
                 "server", "control-api", "apiserver-etcd-client"):
        expected |= {f"pki/{leaf}.crt", f"pki/{leaf}.key"}
    assert rel == expected
    assert plan.dirs == (PATHS.pki_dir, PATHS.etcd_pki_dir)


@pytest.mark.parametrize(
    ("name", "cn", "orgs", "signer", "usages"),
    [
        ("front-proxy-client", "front-proxy-client", ("front-proxy-client",), "front-proxy-ca", (Usage.CLIENT,)),
        ("admin", "kubernetes-admin", ("system:masters",), "ca", (Usage.CLIENT,)),
        ("konnectivity", "kubernetes-konnectivity", ("system:masters",), "ca", (Usage.CLIENT,)),
        ("ccm", "system:kube-controller-manager", ("system:kube-controller-manager",), "ca", (Usage.CLIENT,)),
        ("scheduler", "system:kube-scheduler", ("system:kube-scheduler",), "ca", (Usage.CLIENT,)),
        ("apiserver-kubelet-client", "apiserver-kubelet-client", ("system:masters",), "ca", (Usage.CLIENT,)),
        ("server", "kubernetes", ("kubernetes",), "ca", (Usage.SERVER,)),
        ("control-api", "control-api", ("kubernetes",), "ca", (Usage.SERVER,)),
        ("etcd/server", "etcd-server", ("etcd-server",), "etcd/ca", (Usage.SERVER, Usage.CLIENT)),
        ("etcd/peer", "10.1.2.3", ("etcd-peer",), "etcd/ca", (Usage.SERVER, Usage.CLIENT)),
        ("apiserver-etcd-client", "apiserver-etcd-client", ("apiserver-etcd-client",), "etcd/ca", (Usage.CLIENT,)),
    ],
)
def test_leaf_subjects_signers_and_usages(name, cn, orgs, signer, usages):
    plan = _plan("spec:\n  storage:\n    etcd:\n      peerAddress: 10.1.2.3\n")
    leaf = plan.leaf(name)
    assert (leaf.request.common_name, leaf.request.organizations, leaf.signer, leaf.request.usages) == (cn, orgs, signer, usages)


def test_ca_subjects_and_lifetimes_come_from_config():
    plan = _plan('spec:\n  pki:\n    caExpiresAfter: "1000h"\n    certificatesExpireAfter: "100h"\n    renewBefore: "10h"\n')
    assert [(c.name, c.common_name) for c in plan.cas] == [
        ("ca", "kubernetes-ca"), ("front-proxy-ca", "kubernetes-front-proxy-ca"), ("etcd/ca", "etcd-ca")]
    assert {c.lifetime for c in plan.cas} == {timedelta(hours=1000)}
    assert {leaf.request.lifetime for leaf in plan.leaves} == {timedelta(hours=100)}
    assert {leaf.renew_before for leaf in plan.leaves} | {c.renew_before for c in plan.cas} == {timedelta(hours=10)}


def test_server_sans_are_the_k0s_list_in_order():
    text = """
spec:
  api:
    address: 10.0.0.5
    externalAddress: api.example.com
    sans: [10.0.0.99, Extra.Example.org, 10.0.0.5]
  network:
    serviceCIDR: 10.100.0.0/16
    podCIDR: 10.244.0.0/16
    clusterDomain: corp.local
"""
    facts = NodeFacts(hostname="h", addresses=("10.0.0.5", "127.0.0.1", "fe80::1%eth0", "::1"))
    req = _plan(text, facts).leaf("server").request
    assert req.dns_names == ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                             "kubernetes.default.svc.corp.local", "kubernetes.default.svc.corp.local.",
                             "localhost", "api.example.com", "Extra.Example.org")
    assert req.ip_addresses == ("127.0.0.1", "10.0.0.5", "10.0.0.99", "fe80::1", "::1", "10.100.0.1")
    assert _plan(text, facts).leaf("control-api").request == replace(req, common_name="control-api")


def test_etcd_peer_cn_and_san_is_the_peer_address_and_server_is_loopback():
    plan = _plan("spec:\n  storage:\n    etcd:\n      peerAddress: 10.9.8.7\n")  # an IP: etcd cannot listen on a name
    peer = plan.leaf("etcd/peer").request
    assert (peer.common_name, peer.dns_names, peer.ip_addresses) == ("10.9.8.7", (), ("10.9.8.7",))
    server = plan.leaf("etcd/server")
    assert (server.request.dns_names, server.request.ip_addresses) == (("localhost",), ("127.0.0.1",))
    assert server.cert == PATHS.etcd_pki("server.crt") and plan.leaf("apiserver-etcd-client").cert == PATHS.pki("apiserver-etcd-client.crt")


@pytest.mark.parametrize(("peer", "ips"), [
    ("127.0.0.2", ("127.0.0.2", "127.0.0.1")),  # loopback peers connect from 127.0.0.1
    ("127.0.0.1", ("127.0.0.1",)),
    ("10.1.2.3", ("10.1.2.3",)),
])
def test_a_loopback_etcd_peer_cert_also_carries_127_0_0_1(peer: str, ips: tuple[str, ...]):
    req = _plan(f"spec:\n  storage:\n    etcd:\n      peerAddress: {peer}\n").leaf("etcd/peer").request
    assert req.common_name == peer and req.ip_addresses == ips


def test_kine_storage_plans_no_etcd_pki():
    plan = _plan("spec:\n  storage:\n    type: kine\n")
    assert plan.dirs == (PATHS.pki_dir,)
    assert not [p for p in plan.files() if "etcd" in str(p)]


def test_without_konnectivity_there_is_no_konnectivity_cert_or_kubeconfig():
    plan = _plan(konnectivity=False)
    names = {p.name for p in plan.files()}
    assert "konnectivity.crt" not in names and "konnectivity.conf" not in names
    assert "konnectivity-server" not in plan.leaf("server").readers


def test_kubelet_node_adds_its_client_cert_and_the_direct_kubeconfig():
    plan = _plan(kubelet_node="node-a")
    leaf = plan.leaf("kubelet-client")
    assert (leaf.request.common_name, leaf.request.organizations, leaf.signer) == ("system:node:node-a", ("system:nodes",), "ca")
    assert leaf.cert == PATHS.pki("kubelet-client.crt")
    kc = [k for k in plan.kubeconfigs if k.path == PATHS.kubelet_direct_conf]
    assert kc and kc[0].client == "kubelet-client" and kc[0].server == "https://localhost:6443"
    other = _plan(kubelet_node="node-a", kubelet_kubeconfig=PATHS.kubelet_conf)
    assert PATHS.kubelet_conf in other.files() and PATHS.kubelet_direct_conf not in other.files()


def test_kubeconfigs_point_at_localhost_with_k0s_names():
    plan = _plan("spec:\n  api:\n    port: 7443\n")
    assert {(k.path.name, k.client, k.server, k.cluster, k.context, k.user) for k in plan.kubeconfigs} == {
        (f"{n}.conf", n, "https://localhost:7443", "local", "Default", "user") for n in ("admin", "ccm", "scheduler", "konnectivity")}


def test_urls_bracket_ipv6_and_prefer_the_external_address():
    assert https_url("::1", 6443) == "https://[::1]:6443"
    assert https_url("10.0.0.1", 1) == "https://10.0.0.1:1"
    assert external_api_url(make_config("spec:\n  api:\n    address: 10.0.0.5\n")) == "https://10.0.0.5:6443"
    assert external_api_url(make_config("spec:\n  api:\n    externalAddress: lb.example.com\n")) == "https://lb.example.com:6443"


# ---- needs_issue --------------------------------------------------------------------------

EC = KeyAlgorithm.ECDSA_P256


def _ca(name: str = "kubernetes-ca", *, now: datetime = NOW, lifetime: timedelta = timedelta(days=3650)) -> Signer:
    key = issue.new_key(EC)
    return Signer(issue.make_ca(name, key, lifetime=lifetime, now=now, serial=1), key)


def _leaf_spec(**req_changes: object) -> LeafSpec:
    plan = plan_pki(make_config("spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n"), PATHS, FACTS)
    spec = plan.leaf("server")
    return replace(spec, request=replace(spec.request, **req_changes)) if req_changes else spec


def _existing(spec: LeafSpec, ca: Signer, *, now: datetime = NOW, key: issue.PrivateKey | None = None,
              request: issue.CertRequest | None = None, signer: Signer | None = None) -> Existing:
    key = key or issue.new_key(spec.key_algorithm)
    cert = issue.issue_leaf(request or spec.request, key, signer or ca, now=now, serial=7)
    return Existing(cert=issue.cert_pem(cert), key=issue.key_pem(key), signer=ca.cert_pem)


CA = _ca()
SPEC = _leaf_spec()
GOOD = _existing(SPEC, CA)


def test_a_freshly_issued_leaf_needs_nothing():
    assert needs_issue(SPEC, GOOD, NOW) is None
    assert needs_issue(SPEC, GOOD, NOW + timedelta(days=300)) is None


@pytest.mark.parametrize(
    ("existing", "reason"),
    [
        (Existing(signer=CA.cert_pem), Reason.MISSING),
        (replace(GOOD, cert=None), Reason.CERT_MISSING),
        (replace(GOOD, key=None), Reason.KEY_MISSING),
        (replace(GOOD, cert=b"-----BEGIN CERTIFICATE-----\ntruncated"), Reason.UNREADABLE),
        (replace(GOOD, key=b"not a key"), Reason.KEY_UNREADABLE),
        (replace(GOOD, key=issue.key_pem(issue.new_key(EC))), Reason.KEY_MISMATCH),
        (replace(GOOD, signer=_ca().cert_pem), Reason.WRONG_ISSUER),
        (replace(GOOD, signer=None), Reason.WRONG_ISSUER),
    ],
    ids=["missing", "cert-missing", "key-missing", "unreadable", "key-unreadable", "key-mismatch", "other-ca", "no-ca"],
)
def test_leaf_file_problems(existing, reason):
    assert needs_issue(SPEC, existing, NOW) is reason


def test_a_leaf_signed_by_another_ca_with_the_same_name_is_reissued():
    impostor = _ca("kubernetes-ca")
    assert needs_issue(SPEC, _existing(SPEC, CA, signer=impostor), NOW) is Reason.WRONG_ISSUER


def test_a_ca_recertified_with_the_same_key_keeps_its_leaves():
    renewed = Signer(issue.make_ca("kubernetes-ca", CA.key, lifetime=timedelta(days=10), now=NOW, serial=99), CA.key)
    assert needs_issue(SPEC, replace(GOOD, signer=renewed.cert_pem), NOW) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"common_name": "kube"}, Reason.SUBJECT_CHANGED),
        ({"organizations": ("kubernetes", "extra")}, Reason.SUBJECT_CHANGED),
        ({"dns_names": SPEC.request.dns_names + ("new.example.com",)}, Reason.SANS_CHANGED),
        ({"ip_addresses": SPEC.request.ip_addresses[1:]}, Reason.SANS_CHANGED),
        ({"usages": (Usage.SERVER, Usage.CLIENT)}, Reason.USAGES_CHANGED),
    ],
)
def test_plan_changes_are_detected(changes, reason):
    assert needs_issue(_leaf_spec(**changes), GOOD, NOW) is reason


def test_san_order_and_case_do_not_matter():
    spec = _leaf_spec(dns_names=tuple(reversed([d.upper() for d in SPEC.request.dns_names])),
                      ip_addresses=tuple(reversed(SPEC.request.ip_addresses)))
    assert needs_issue(spec, GOOD, NOW) is None


def test_a_key_algorithm_change_reissues():
    assert needs_issue(replace(SPEC, key_algorithm=KeyAlgorithm.RSA_2048), GOOD, NOW) is Reason.KEY_ALGORITHM_CHANGED


def test_a_cert_from_the_future_is_reissued():
    assert needs_issue(SPEC, _existing(SPEC, CA, now=NOW + timedelta(days=2)), NOW) is Reason.NOT_YET_VALID


def test_expiry_boundaries():
    not_after = NOW + SPEC.request.lifetime
    window = SPEC.renew_before
    assert needs_issue(SPEC, GOOD, not_after - window - timedelta(seconds=1)) is None
    assert needs_issue(SPEC, GOOD, not_after - window) is Reason.EXPIRING
    assert needs_issue(SPEC, GOOD, not_after - timedelta(seconds=1)) is Reason.EXPIRING
    assert needs_issue(SPEC, GOOD, not_after) is Reason.EXPIRED


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(min_value=0, max_value=400 * 86400))
def test_leaf_is_flagged_exactly_inside_renew_before(offset: int):
    now = NOW + timedelta(seconds=offset)
    not_after = NOW + SPEC.request.lifetime
    expected = None if not_after - now > SPEC.renew_before else (Reason.EXPIRED if now >= not_after else Reason.EXPIRING)
    assert needs_issue(SPEC, GOOD, now) is expected


# CAs and key pairs

CA_SPEC = _plan().ca("ca")
CA_GOOD = Existing(cert=CA.cert_pem, key=issue.key_pem(CA.key))
KP_SPEC = _plan().keypairs[0]  # sa: kept across algorithm changes
JWT_SPEC = _plan().keypairs[1]  # etcd/jwt: re-keyed when keyAlgorithm changes
_KP_KEY = issue.new_key(KeyAlgorithm.RSA_2048)
KP_GOOD = Existing(key=issue.key_pem(_KP_KEY), cert=issue.public_pem(_KP_KEY))
TEN_YEARS = NOW + timedelta(days=3650)


@pytest.mark.parametrize(
    ("spec", "existing", "now", "reason"),
    [
        (CA_SPEC, CA_GOOD, NOW, None),
        (CA_SPEC, Existing(), NOW, Reason.MISSING),
        (CA_SPEC, replace(CA_GOOD, key=None), NOW, Reason.KEY_MISSING),
        (CA_SPEC, replace(CA_GOOD, cert=None), NOW, Reason.CERT_MISSING),
        (CA_SPEC, replace(CA_GOOD, key=issue.key_pem(issue.new_key(EC))), NOW, Reason.KEY_MISMATCH),
        (CA_SPEC, replace(CA_GOOD, cert=b"junk"), NOW, Reason.UNREADABLE),
        (CA_SPEC, CA_GOOD, TEN_YEARS - timedelta(days=31), None),
        (CA_SPEC, CA_GOOD, TEN_YEARS - timedelta(days=29), Reason.EXPIRING),
        (KP_SPEC, KP_GOOD, NOW, None),
        (KP_SPEC, Existing(), NOW, Reason.MISSING),
        (KP_SPEC, replace(KP_GOOD, key=None), NOW, Reason.KEY_MISSING),
        (KP_SPEC, replace(KP_GOOD, cert=None), NOW, Reason.PUBLIC_KEY_MISSING),
        (KP_SPEC, replace(KP_GOOD, cert=issue.public_pem(issue.new_key(EC))), NOW, Reason.PUBLIC_KEY_MISMATCH),
        (KP_SPEC, replace(KP_GOOD, key=b"x"), NOW, Reason.KEY_UNREADABLE),
        (replace(KP_SPEC, key_algorithm=EC), KP_GOOD, NOW, None),
        (JWT_SPEC, KP_GOOD, NOW, None),
        (replace(JWT_SPEC, key_algorithm=EC), KP_GOOD, NOW, Reason.KEY_ALGORITHM_CHANGED),
    ],
    ids=["ca-ok", "ca-missing", "ca-key-missing", "ca-cert-missing", "ca-mismatch", "ca-unreadable", "ca-31-days",
         "ca-29-days", "kp-ok", "kp-missing", "kp-key-missing", "kp-pub-missing", "kp-pub-mismatch", "kp-unreadable",
         "sa-kept-on-algorithm-change", "jwt-ok", "jwt-rekeyed-on-algorithm-change"],
)
def test_ca_and_keypair_rules(spec, existing, now, reason):
    assert needs_issue(spec, existing, now) is reason


def test_an_operators_intermediate_ca_is_kept_even_near_expiry():
    root = _ca("corp-root")
    key = issue.new_key(EC)
    inter = issue.issue_leaf(issue.CertRequest(common_name="kubernetes-ca", lifetime=timedelta(days=40)), key, root,
                             now=NOW, serial=3)
    assert needs_issue(CA_SPEC, Existing(cert=issue.cert_pem(inter), key=issue.key_pem(key)), NOW + timedelta(days=30)) is None


def test_plan_is_pure_and_deterministic():
    assert _plan() == _plan()
    assert all(isinstance(p, Path) and (p.is_relative_to(PATHS.data_dir) or p == PATHS.kubelet_direct_conf)
               for p in _plan(kubelet_node="n").files())
