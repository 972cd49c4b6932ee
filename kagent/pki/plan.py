"""Pure. The certificate plan: (config, paths, node facts) -> every CA, leaf, key pair and
kubeconfig kagent keeps under ``<data>/pki``, and ``needs_issue``, the one rule that says
why a file must be (re)issued. Never touches disk, clock or logger.

The reissue policy, stated once (DESIGN §6; k0s reissues every leaf on every start, we don't):

- CA: kept while its key is readable and matches its certificate. Certificate missing,
  mismatching the key, or expiring within ``renewBefore``: a new self-signed certificate is
  made *from the existing key*, so every leaf stays valid. Key missing or unreadable: a new
  CA (new key); every leaf it signed then fails the issuer check and is reissued, and
  everything that pinned the old CA (workers, other controllers) must be given the new one.
  A CA certificate that is not self-signed (an operator's intermediate) is never touched.
- leaf: reissued when missing, when its key is missing, unreadable or does not match, when it
  is not signed by the current CA, when its subject, SANs (as sets), usages or key algorithm
  differ from the plan, when it is not yet valid, or when it expires within ``renewBefore``.
  A readable key of the planned algorithm is reused (only the certificate is rewritten).
- key pair (sa, etcd jwt): made with ``keyAlgorithm``; kept while the private key is
  readable; a missing or mismatching public half is derived again from it. A change of
  ``keyAlgorithm`` re-keys ``etcd/jwt`` (etcd's ``sign-method`` follows the algorithm, RS512 or
  ES256, and its tokens live minutes) but keeps ``sa`` (re-keying it would invalidate every
  service-account token in the cluster; the apiserver accepts either key type).
- kubeconfig: rendered from the files above; written only when its bytes change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Union

from kagent.config.model import ClusterConfig, KeyAlgorithm, StorageType
from kagent.paths import Paths
from kagent.pki.model import CertRequest, Usage
from kagent.urls import https_url as https_url

if TYPE_CHECKING:  # NodeFacts is a plain value, but its module gathers facts (an edge)
    from kagent.node.model import NodeFacts

# ``needs_issue`` reads certificates with kagent.pki.issue (cryptography), imported by the rule
# itself: building a plan (the agent process does, on every start and reload) needs neither.

# component names, as the component specs name them
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KONNECTIVITY = "konnectivity-server"
CONTROL_API = "control-api"
ETCD = "etcd"
KUBELET = "kubelet"

CA_NAME = "ca"
FRONT_PROXY_CA_NAME = "front-proxy-ca"
ETCD_CA_NAME = "etcd/ca"


class Reason(StrEnum):
    """Why a file is (re)written. The values are the ``reason`` field of ``pki_file_written``."""

    MISSING = "missing"
    CERT_MISSING = "certificate missing"
    KEY_MISSING = "key missing"
    PUBLIC_KEY_MISSING = "public key missing"
    UNREADABLE = "unreadable"
    KEY_UNREADABLE = "key unreadable"
    KEY_MISMATCH = "certificate does not match key"
    PUBLIC_KEY_MISMATCH = "public key does not match private key"
    WRONG_ISSUER = "not signed by the current CA"
    SUBJECT_CHANGED = "subject changed"
    SANS_CHANGED = "SANs changed"
    USAGES_CHANGED = "usages changed"
    KEY_ALGORITHM_CHANGED = "key algorithm changed"
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    EXPIRING = "expires within renewBefore"
    CONTENT_CHANGED = "content changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaSpec:
    name: str  # "ca", "front-proxy-ca", "etcd/ca"
    cert: Path
    key: Path
    common_name: str
    lifetime: timedelta
    renew_before: timedelta
    key_algorithm: KeyAlgorithm
    readers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafSpec:
    name: str  # "server", "etcd/peer", ...
    cert: Path
    key: Path
    signer: str  # a CaSpec name
    request: CertRequest
    renew_before: timedelta
    key_algorithm: KeyAlgorithm
    readers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPairSpec:
    name: str  # "sa", "etcd/jwt"
    private: Path
    public: Path
    key_algorithm: KeyAlgorithm
    rekey_on_algorithm_change: bool = False
    readers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeconfigSpec:
    name: str
    path: Path
    client: str  # a LeafSpec name: its cert and key are embedded
    ca: str  # a CaSpec name: its cert is embedded
    server: str
    cluster: str = "local"
    context: str = "Default"
    user: str = "user"
    readers: tuple[str, ...] = ()


Spec = Union[CaSpec, LeafSpec, KeyPairSpec]


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiPlan:
    dirs: tuple[Path, ...]  # made 0700, in this order
    cas: tuple[CaSpec, ...]
    keypairs: tuple[KeyPairSpec, ...]
    leaves: tuple[LeafSpec, ...]
    kubeconfigs: tuple[KubeconfigSpec, ...]
    renew_before: timedelta
    # who restarts when a file is rewritten is decided by ComponentSpec.reads alone
    # (supervisor.reload.readers); the ``readers`` fields above only document the intent

    def ca(self, name: str) -> CaSpec:
        for ca in self.cas:
            if ca.name == name:
                return ca
        raise KeyError(name)

    def leaf(self, name: str) -> LeafSpec:
        for leaf in self.leaves:
            if leaf.name == name:
                return leaf
        raise KeyError(name)

    def files(self) -> tuple[Path, ...]:
        """Every file the plan keeps, in apply order."""
        out: list[Path] = []
        for ca in self.cas:
            out += [ca.key, ca.cert]
        for kp in self.keypairs:
            out += [kp.private, kp.public]
        for leaf in self.leaves:
            out += [leaf.key, leaf.cert]
        out += [kc.path for kc in self.kubeconfigs]
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Existing:
    """What is on disk for one spec, as bytes (None: no such file).

    CA/leaf: ``cert`` and ``key``; a leaf also gets its CA's current certificate as
    ``signer``. Key pair: ``key`` is the private half, ``cert`` the public half."""

    cert: bytes | None = None
    key: bytes | None = None
    signer: bytes | None = None


# ---- the rule ----------------------------------------------------------------------------


def needs_issue(spec: Spec, existing: Existing, now: datetime) -> Reason | None:
    """Why ``spec``'s files must be (re)written, or None when they are fine as they are."""
    if isinstance(spec, KeyPairSpec):
        return _keypair_reason(spec, existing)
    if isinstance(spec, CaSpec):
        return _ca_reason(spec, existing, now)
    return _leaf_reason(spec, existing, now)


def _keypair_reason(spec: KeyPairSpec, existing: Existing) -> Reason | None:
    from kagent.pki import issue

    if existing.key is None:
        return Reason.MISSING if existing.cert is None else Reason.KEY_MISSING
    key = issue.load_key(existing.key)
    if key is None:
        return Reason.KEY_UNREADABLE
    if spec.rekey_on_algorithm_change and issue.key_algorithm_of(key) is not spec.key_algorithm:
        return Reason.KEY_ALGORITHM_CHANGED
    if existing.cert is None:
        return Reason.PUBLIC_KEY_MISSING
    pub = issue.load_public(existing.cert)
    if pub is None or not issue.same_public_key(pub, key):
        return Reason.PUBLIC_KEY_MISMATCH
    return None


def _expiry_reason(not_after: datetime, renew_before: timedelta, now: datetime) -> Reason | None:
    if not_after <= now:
        return Reason.EXPIRED
    if not_after - now <= renew_before:
        return Reason.EXPIRING
    return None


def _ca_reason(spec: CaSpec, existing: Existing, now: datetime) -> Reason | None:
    from kagent.pki import issue

    if existing.key is None:
        return Reason.MISSING if existing.cert is None else Reason.KEY_MISSING
    key = issue.load_key(existing.key)
    if key is None:
        return Reason.KEY_UNREADABLE
    if existing.cert is None:
        return Reason.CERT_MISSING
    cert = issue.load_cert(existing.cert)
    if cert is None:
        return Reason.UNREADABLE
    if not issue.same_public_key(cert.public_key(), key):  # type: ignore[arg-type]
        return Reason.KEY_MISMATCH
    if not issue.is_self_signed(cert):
        # an operator's intermediate CA: kept as it is (kagent cannot renew it); `certs check` reports its expiry
        return None
    return _expiry_reason(cert.not_valid_after_utc, spec.renew_before, now)


def _leaf_reason(spec: LeafSpec, existing: Existing, now: datetime) -> Reason | None:
    from kagent.pki import issue

    if existing.cert is None:
        return Reason.MISSING if existing.key is None else Reason.CERT_MISSING
    if existing.key is None:
        return Reason.KEY_MISSING
    key = issue.load_key(existing.key)
    if key is None:
        return Reason.KEY_UNREADABLE
    cert = issue.load_cert(existing.cert)
    if cert is None:
        return Reason.UNREADABLE
    if not issue.same_public_key(cert.public_key(), key):  # type: ignore[arg-type]
        return Reason.KEY_MISMATCH
    if issue.key_algorithm_of(key) is not spec.key_algorithm:
        return Reason.KEY_ALGORITHM_CHANGED
    signer = issue.load_cert(existing.signer) if existing.signer is not None else None
    if signer is None or not issue.signed_by(cert, signer):
        return Reason.WRONG_ISSUER
    req = spec.request
    if cert.subject != issue.subject_name(req.common_name, req.organizations):
        return Reason.SUBJECT_CHANGED
    dns, ips = issue.cert_sans(cert)
    if {d.lower() for d in dns} != {d.lower() for d in req.dns_names} or (
        {ipaddress.ip_address(i) for i in ips} != {ipaddress.ip_address(i) for i in req.ip_addresses}
    ):
        return Reason.SANS_CHANGED
    if issue.cert_usages(cert) != frozenset(req.usages) or issue.is_ca(cert):
        return Reason.USAGES_CHANGED
    if cert.not_valid_before_utc > now:
        return Reason.NOT_YET_VALID
    return _expiry_reason(cert.not_valid_after_utc, spec.renew_before, now)


# ---- the plan ----------------------------------------------------------------------------


def split_hosts(hosts: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses), deduplicated in first-seen order; IPs normalised."""
    dns: dict[str, None] = {}
    ips: dict[str, None] = {}
    for h in hosts:
        h = h.strip()
        if not h:
            continue
        try:
            ips.setdefault(str(ipaddress.ip_address(h.split("%", 1)[0])), None)
        except ValueError:
            dns.setdefault(h, None)
    return tuple(dns), tuple(ips)


def first_service_ip(service_cidr: str) -> str:
    return str(ipaddress.ip_network(service_cidr, strict=False)[1])


def api_server_hosts(config: ClusterConfig, facts: NodeFacts) -> tuple[str, ...]:
    """k0s's ``generateSANList`` order: service names, localhost, externalAddress, the API
    address, ``spec.api.sans``, the host's addresses, the first service IP."""
    domain = config.network.cluster_domain
    hosts = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
        f"kubernetes.default.svc.{domain}.",
        "localhost",
        "127.0.0.1",
    ]
    if config.api.external_address:
        hosts.append(config.api.external_address)
    hosts.append(config.api.address)
    hosts += config.api.sans
    hosts += facts.addresses
    hosts.append(first_service_ip(config.network.service_cidr))
    return tuple(hosts)



def local_api_url(config: ClusterConfig) -> str:
    return https_url("localhost", config.api.port)


def external_api_url(config: ClusterConfig) -> str:
    return https_url(config.api.external_address or config.api.address, config.api.port)


ETCD_MEMBER_ORG = "kagent-etcd-members"
ETCD_MEMBER_CN_PREFIX = "kagent-etcd-member:"


def etcd_member_cn(member: str) -> str:
    """The CN of a controller's member cert: ``kagent-etcd-member:<member name>``."""
    return ETCD_MEMBER_CN_PREFIX + member


def etcd_peer_hosts(peer_address: str) -> tuple[str, ...]:
    """The etcd peer cert's SANs. etcd checks a peer's source IP against its client cert, and
    the kernel sends from 127.0.0.1 to any loopback address, so a loopback peer address
    (127.0.0.2, ...: several controllers on one host) also carries 127.0.0.1."""
    try:
        ip = ipaddress.ip_address(peer_address)
    except ValueError:
        return (peer_address,)
    if ip.version == 4 and ip.is_loopback and str(ip) != "127.0.0.1":
        return (peer_address, "127.0.0.1")
    return (peer_address,)


def plan_pki(
    config: ClusterConfig,
    paths: Paths,
    facts: NodeFacts,
    *,
    konnectivity: bool = True,
    kubelet_node: str | None = None,
    kubelet_kubeconfig: Path | None = None,
    etcd: bool | None = None,
    etcd_member: str | None = None,
) -> PkiPlan:
    """The controller PKI. ``etcd`` (default: storage type is etcd) adds the etcd CA, its
    leaves and the JWT key pair; ``kubelet_node`` (controller+worker) adds the kubelet's
    client cert ``pki/kubelet-client.crt`` and its kubeconfig, by default
    ``<run>/kubelet-direct.conf`` (the file the kubelet component reads on a
    controller+worker, as k0s; ``kubelet_kubeconfig`` picks another path). ``etcd_member``
    (this controller's etcd member name) adds ``pki/etcd/member.crt``, the client cert
    (etcd CA, CN ``kagent-etcd-member:<name>``) that authenticates this controller to another
    controller's API when it leaves or promotes its own member."""
    pki = config.pki
    with_etcd = config.storage.type is StorageType.ETCD if etcd is None else etcd
    alg = pki.key_algorithm

    def ca(name: str, cn: str, cert: Path, key: Path, readers: tuple[str, ...]) -> CaSpec:
        return CaSpec(name=name, cert=cert, key=key, common_name=cn, lifetime=pki.ca_expires_after,
                      renew_before=pki.renew_before, key_algorithm=alg, readers=readers)

    def leaf(name: str, signer: str, cn: str, orgs: tuple[str, ...], usages: tuple[Usage, ...],
             readers: tuple[str, ...], hosts: Iterable[str] = (), *, base: Path | None = None) -> LeafSpec:
        dns, ips = split_hosts(hosts)
        folder = base or paths.pki_dir
        stem = name.rsplit("/", 1)[-1]
        return LeafSpec(
            name=name, cert=folder / f"{stem}.crt", key=folder / f"{stem}.key", signer=signer,
            request=CertRequest(common_name=cn, organizations=orgs, dns_names=dns, ip_addresses=ips, usages=usages,
                                lifetime=pki.certificates_expire_after),
            renew_before=pki.renew_before, key_algorithm=alg, readers=readers,
        )

    client, server, both = (Usage.CLIENT,), (Usage.SERVER,), (Usage.SERVER, Usage.CLIENT)
    api_hosts = api_server_hosts(config, facts)
    server_readers = (APISERVER, KONNECTIVITY) if konnectivity else (APISERVER,)

    cas = [
        ca(CA_NAME, "kubernetes-ca", paths.pki("ca.crt"), paths.pki("ca.key"), (APISERVER, CONTROLLER_MANAGER, CONTROL_API)),
        ca(FRONT_PROXY_CA_NAME, "kubernetes-front-proxy-ca", paths.pki("front-proxy-ca.crt"),
           paths.pki("front-proxy-ca.key"), (APISERVER, CONTROLLER_MANAGER)),
    ]
    keypairs = [KeyPairSpec(name="sa", private=paths.pki("sa.key"), public=paths.pki("sa.pub"), key_algorithm=alg,
                            readers=(APISERVER, CONTROLLER_MANAGER))]
    leaves = [
        leaf("front-proxy-client", FRONT_PROXY_CA_NAME, "front-proxy-client", ("front-proxy-client",), client, (APISERVER,)),
        leaf("admin", CA_NAME, "kubernetes-admin", ("system:masters",), client, ()),
    ]
    if konnectivity:
        leaves.append(leaf("konnectivity", CA_NAME, "kubernetes-konnectivity", ("system:masters",), client, (KONNECTIVITY,)))
    leaves += [
        leaf("ccm", CA_NAME, "system:kube-controller-manager", ("system:kube-controller-manager",), client, (CONTROLLER_MANAGER,)),
        leaf("scheduler", CA_NAME, "system:kube-scheduler", ("system:kube-scheduler",), client, (SCHEDULER,)),
        leaf("apiserver-kubelet-client", CA_NAME, "apiserver-kubelet-client", ("system:masters",), client, (APISERVER,)),
        leaf("server", CA_NAME, "kubernetes", ("kubernetes",), server, server_readers, api_hosts),
        leaf("control-api", CA_NAME, "control-api", ("kubernetes",), server, (CONTROL_API,), api_hosts),
    ]
    if kubelet_node:
        leaves.append(leaf("kubelet-client", CA_NAME, f"system:node:{kubelet_node}", ("system:nodes",), client, (KUBELET,)))
    dirs = [paths.pki_dir]
    if with_etcd:
        dirs.append(paths.etcd_pki_dir)
        peer = config.storage.etcd.peer_address
        cas.append(ca(ETCD_CA_NAME, "etcd-ca", paths.etcd_pki("ca.crt"), paths.etcd_pki("ca.key"), (ETCD, APISERVER, CONTROL_API)))
        keypairs.append(KeyPairSpec(name="etcd/jwt", private=paths.etcd_pki("jwt.key"), public=paths.etcd_pki("jwt.pub"),
                                    key_algorithm=alg, rekey_on_algorithm_change=True, readers=(ETCD,)))
        # etcd's gRPC gateway dials etcd itself with the server cert, so it needs clientAuth too
        leaves += [
            leaf("etcd/server", ETCD_CA_NAME, "etcd-server", ("etcd-server",), both, (ETCD,), ("127.0.0.1", "localhost"),
                 base=paths.etcd_pki_dir),
            leaf("etcd/peer", ETCD_CA_NAME, peer, ("etcd-peer",), both, (ETCD,), etcd_peer_hosts(peer), base=paths.etcd_pki_dir),
            leaf("apiserver-etcd-client", ETCD_CA_NAME, "apiserver-etcd-client", ("apiserver-etcd-client",), client,
                 (APISERVER, CONTROL_API), ("127.0.0.1", "localhost")),
        ]
        if etcd_member:
            leaves.append(leaf("etcd/member", ETCD_CA_NAME, etcd_member_cn(etcd_member), (ETCD_MEMBER_ORG,), client, (),
                               base=paths.etcd_pki_dir))

    local = local_api_url(config)
    kubeconfigs = [
        KubeconfigSpec(name="admin", path=paths.admin_conf, client="admin", ca=CA_NAME, server=local),
        KubeconfigSpec(name="ccm", path=paths.pki("ccm.conf"), client="ccm", ca=CA_NAME, server=local, readers=(CONTROLLER_MANAGER,)),
        KubeconfigSpec(name="scheduler", path=paths.pki("scheduler.conf"), client="scheduler", ca=CA_NAME, server=local,
                       readers=(SCHEDULER,)),
    ]
    if konnectivity:
        kubeconfigs.append(KubeconfigSpec(name="konnectivity", path=paths.pki("konnectivity.conf"), client="konnectivity",
                                          ca=CA_NAME, server=local, readers=(KONNECTIVITY,)))
    if kubelet_node:
        kubeconfigs.append(KubeconfigSpec(name="kubelet", path=kubelet_kubeconfig or paths.kubelet_direct_conf,
                                          client="kubelet-client", ca=CA_NAME, server=local, readers=(KUBELET,)))
    return PkiPlan(dirs=tuple(dirs), cas=tuple(cas), keypairs=tuple(keypairs), leaves=tuple(leaves),
                   kubeconfigs=tuple(kubeconfigs), renew_before=pki.renew_before)
