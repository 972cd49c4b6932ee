"""Pure. Worker join and renewal rules: node names, the kubelet client CSR a worker sends
(``CN=system:node:<name>, O=system:nodes``, signed by its own key, which never leaves the
worker), the certificate the controller signs for it, and the node record kept in etcd
(name, certificate fingerprint, public-key hash, time, token id; never a secret).

A re-join under a recorded name is refused (409) unless the CSR carries the very public key of
the record: that is the same worker retrying after a lost answer (it proves possession of the
key by the CSR signature), not another host with a leaked token.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kagent.join.token import iso_utc, parse_iso
from kagent.pki import issue
from kagent.pki.issue import CertRequest, Signer, Usage

NODE_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
MAX_CSR_BYTES = 16 * 1024
# a Kubernetes node name: a DNS-1123 subdomain (lowercase alphanumerics, '-', '.'), at most 253
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class CsrError(ValueError):
    """The CSR or node name is not acceptable (the API answers 400 with this text)."""


def check_node_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 253 or not _NODE_NAME.match(name):
        raise CsrError(f"node name {str(name)[:80]!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")
    return name


def node_user(name: str) -> str:
    return f"{NODE_USER_PREFIX}{name}"


def public_key_sha256(key: issue.PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def make_csr(name: str, key: issue.PrivateKey) -> bytes:
    """The worker's CSR (PEM) for its kubelet client certificate."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(issue.subject_name(node_user(name), (NODE_GROUP,)))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def parse_node_csr(pem: Any, node: str) -> x509.CertificateSigningRequest:
    """The CSR if it is a validly self-signed request for exactly ``CN=system:node:<node>,
    O=system:nodes`` with an RSA-2048+ or ECDSA P-256/P-384 key; CsrError otherwise."""
    if not isinstance(pem, str) or not pem.strip():
        raise CsrError("csr is missing (a PEM certificate request)")
    if len(pem) > MAX_CSR_BYTES:
        raise CsrError(f"csr is larger than {MAX_CSR_BYTES // 1024} KiB")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise CsrError("csr is not a PEM certificate request") from None
    if not csr.is_signature_valid:
        raise CsrError("csr signature is not valid")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"csr key is RSA-{key.key_size}; at least 2048 bits are needed")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            raise CsrError(f"csr key curve {key.curve.name} is not P-256 or P-384")
    else:
        raise CsrError("csr key is neither RSA nor ECDSA")
    cns = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cns != [node_user(node)] or orgs != [NODE_GROUP] or len(csr.subject) != 2:
        raise CsrError(f"csr subject must be exactly CN={node_user(node)}, O={NODE_GROUP} (got {csr.subject.rfc4514_string()})")
    return csr


def sign_node_csr(csr: x509.CertificateSigningRequest, node: str, ca: Signer, *, lifetime: timedelta, now: datetime,
                  serial: int) -> x509.Certificate:
    """The kubelet client certificate for ``node``: subject from the rules, not from the CSR's
    extensions (a CSR cannot ask for SANs, server auth or CA rights)."""
    request = CertRequest(common_name=node_user(node), organizations=(NODE_GROUP,), usages=(Usage.CLIENT,), lifetime=lifetime)
    key = csr.public_key()
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))  # parse_node_csr checked
    return issue.issue_leaf_for(request, key, ca, now=now, serial=serial)


def node_of_cert(cert: x509.Certificate, ca: x509.Certificate) -> str | None:
    """The node name a kubelet client certificate speaks for, or None when it is not one:
    signed by the cluster CA, ``O=system:nodes``, ``CN=system:node:<name>``, a client cert."""
    if not issue.signed_by(cert, ca) or issue.is_ca(cert) or Usage.CLIENT not in issue.cert_usages(cert):
        return None
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if len(cns) != 1 or orgs != [NODE_GROUP] or not isinstance(cns[0], str) or not cns[0].startswith(NODE_USER_PREFIX):
        return None
    name = cns[0][len(NODE_USER_PREFIX):]
    try:
        return check_node_name(name)
    except CsrError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    name: str
    fingerprint: str  # SHA-256 of the current kubelet client certificate (AA:BB:..)
    public_key_sha256: str  # of that certificate's key (a retry with the same key is the same node)
    joined_at: datetime
    token_id: str
    not_after: datetime
    renewed_at: datetime | None = None
    previous_fingerprint: str = ""  # the certificate before the last renewal (a lost answer)

    def accepts(self, fingerprint: str) -> bool:
        """May a client presenting this certificate renew? The current one, or the one it
        renewed last (its answer may have been lost)."""
        return fingerprint == self.fingerprint or (bool(self.previous_fingerprint) and fingerprint == self.previous_fingerprint)

    def renewed(self, cert: x509.Certificate, presented: str, now: datetime) -> NodeRecord:
        return replace(self, fingerprint=issue.fingerprint(cert), public_key_sha256=public_key_sha256(cert.public_key()),  # type: ignore[arg-type]
                       not_after=cert.not_valid_after_utc, renewed_at=now, previous_fingerprint=presented)

    def to_json(self) -> bytes:
        return json.dumps({
            "name": self.name, "fingerprint": self.fingerprint, "publicKeySha256": self.public_key_sha256,
            "joinedAt": iso_utc(self.joined_at), "tokenId": self.token_id, "notAfter": iso_utc(self.not_after),
            "renewedAt": iso_utc(self.renewed_at) if self.renewed_at else None, "previousFingerprint": self.previous_fingerprint,
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeRecord:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        renewed = doc.get("renewedAt")
        return cls(name=check_node_name(doc.get("name")), fingerprint=str(doc["fingerprint"]),
                   public_key_sha256=str(doc["publicKeySha256"]), joined_at=parse_iso(doc.get("joinedAt")),
                   token_id=str(doc.get("tokenId") or ""), not_after=parse_iso(doc.get("notAfter")),
                   renewed_at=parse_iso(renewed) if renewed else None,
                   previous_fingerprint=str(doc.get("previousFingerprint") or ""))

    def as_row(self) -> dict[str, Any]:
        """The ``kagent node list -o json`` shape."""
        return {"name": self.name, "joinedAt": iso_utc(self.joined_at), "tokenId": self.token_id,
                "certificateNotAfter": iso_utc(self.not_after), "fingerprint": self.fingerprint,
                "renewedAt": iso_utc(self.renewed_at) if self.renewed_at else None}


def new_node_record(name: str, cert: x509.Certificate, *, token_id: str, now: datetime) -> NodeRecord:
    return NodeRecord(name=name, fingerprint=issue.fingerprint(cert), public_key_sha256=public_key_sha256(cert.public_key()),  # type: ignore[arg-type]
                      joined_at=now, token_id=token_id, not_after=cert.not_valid_after_utc)
