"""Worker join rules: node names, the kubelet CSR the API accepts, the cert it signs, the
node a client certificate speaks for, node records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kagent.config.model import KeyAlgorithm
from kagent.join import nodes
from kagent.pki import issue

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
CA_KEY = issue.new_key(KeyAlgorithm.ECDSA_P256)
CA = issue.Signer(issue.make_ca("kubernetes-ca", CA_KEY, lifetime=timedelta(days=10), now=NOW, serial=1), CA_KEY)


def _key():
    return issue.new_key(KeyAlgorithm.ECDSA_P256)


@pytest.mark.parametrize("name", ["worker-1", "a", "node.example.com", "x" * 63])
def test_good_names(name):
    assert nodes.check_node_name(name) == name


@pytest.mark.parametrize("name", ["", "Worker", "under_score", "-lead", "trail-", "a..b", "x" * 254, None, 7, "a b"])
def test_bad_names(name):
    with pytest.raises(nodes.CsrError):
        nodes.check_node_name(name)


def test_csr_round_trip_and_signed_cert():
    key = _key()
    csr = nodes.parse_node_csr(nodes.make_csr("w1", key).decode(), "w1")
    cert = nodes.sign_node_csr(csr, "w1", CA, lifetime=timedelta(days=1), now=NOW, serial=9)
    assert cert.subject.rfc4514_string() == "CN=system:node:w1,O=system:nodes"
    assert issue.signed_by(cert, CA.cert) and issue.same_public_key(cert.public_key(), key)
    assert issue.cert_usages(cert) == {issue.Usage.CLIENT} and not issue.is_ca(cert)
    assert nodes.node_of_cert(cert, CA.cert) == "w1"


def _csr(subject: x509.Name, key, extensions=()) -> str:
    b = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("subject,needle", [
    (issue.subject_name("system:node:other", ("system:nodes",)), "must be exactly"),
    (issue.subject_name("system:node:w1", ("system:masters",)), "must be exactly"),
    (issue.subject_name("system:node:w1", ("system:nodes", "system:masters")), "must be exactly"),
    (issue.subject_name("system:node:w1"), "must be exactly"),
])
def test_csr_subject_must_be_the_node(subject, needle):
    with pytest.raises(nodes.CsrError) as e:
        nodes.parse_node_csr(_csr(subject, _key()), "w1")
    assert needle in str(e.value)


def test_csr_extensions_cannot_ask_for_more():
    """SANs or CA rights asked for in the CSR are not copied into the certificate."""
    key = _key()
    pem = _csr(issue.subject_name("system:node:w1", ("system:nodes",)), key,
               [x509.SubjectAlternativeName([x509.DNSName("kubernetes")]), x509.BasicConstraints(ca=True, path_length=None)])
    cert = nodes.sign_node_csr(nodes.parse_node_csr(pem, "w1"), "w1", CA, lifetime=timedelta(days=1), now=NOW, serial=2)
    assert issue.cert_sans(cert) == ((), ()) and not issue.is_ca(cert)


def test_weak_or_unknown_keys_and_garbage_are_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(nodes.CsrError, match="RSA-1024"):
        nodes.parse_node_csr(_csr(issue.subject_name("system:node:w1", ("system:nodes",)), weak), "w1")
    k1 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(nodes.CsrError, match="curve"):
        nodes.parse_node_csr(_csr(issue.subject_name("system:node:w1", ("system:nodes",)), k1), "w1")
    for junk in (None, "", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 5, "x" * 20000):
        with pytest.raises(nodes.CsrError):
            nodes.parse_node_csr(junk, "w1")


def test_a_tampered_csr_signature_is_refused():
    """This request's body with another request's signature (same subject, same-size keys)."""
    import base64

    good = x509.load_pem_x509_csr(nodes.make_csr("w1", _key()))
    other = x509.load_pem_x509_csr(nodes.make_csr("w1", _key()))
    assert len(good.tbs_certrequest_bytes) == len(other.tbs_certrequest_bytes)
    der = other.public_bytes(serialization.Encoding.DER).replace(other.tbs_certrequest_bytes, good.tbs_certrequest_bytes)
    pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(nodes.CsrError, match="signature"):
        nodes.parse_node_csr(pem, "w1")


def test_node_of_cert_needs_the_cluster_ca_and_the_node_shape():
    key = _key()
    other_key = _key()
    other = issue.Signer(issue.make_ca("other", other_key, lifetime=timedelta(days=1), now=NOW, serial=3), other_key)
    req = issue.CertRequest(common_name="system:node:w1", organizations=("system:nodes",), lifetime=timedelta(days=1))
    assert nodes.node_of_cert(issue.issue_leaf(req, key, other, now=NOW, serial=4), CA.cert) is None
    admin = issue.CertRequest(common_name="kubernetes-admin", organizations=("system:masters",), lifetime=timedelta(days=1))
    assert nodes.node_of_cert(issue.issue_leaf(admin, key, CA, now=NOW, serial=5), CA.cert) is None
    server = issue.CertRequest(common_name="system:node:w1", organizations=("system:nodes",), usages=(issue.Usage.SERVER,),
                               lifetime=timedelta(days=1))
    assert nodes.node_of_cert(issue.issue_leaf(server, key, CA, now=NOW, serial=6), CA.cert) is None


def test_record_round_trip_and_renewal_accepts_current_and_previous():
    key = _key()
    c1 = nodes.sign_node_csr(nodes.parse_node_csr(nodes.make_csr("w1", key).decode(), "w1"), "w1", CA,
                             lifetime=timedelta(days=1), now=NOW, serial=7)
    rec = nodes.new_node_record("w1", c1, token_id="abcdef", now=NOW)
    assert nodes.NodeRecord.from_json(rec.to_json()) == rec
    c2 = nodes.sign_node_csr(nodes.parse_node_csr(nodes.make_csr("w1", _key()).decode(), "w1"), "w1", CA,
                             lifetime=timedelta(days=1), now=NOW, serial=8)
    r2 = rec.renewed(c2, issue.fingerprint(c1), NOW)
    assert r2.accepts(issue.fingerprint(c2)) and r2.accepts(issue.fingerprint(c1))
    c3 = nodes.sign_node_csr(nodes.parse_node_csr(nodes.make_csr("w1", _key()).decode(), "w1"), "w1", CA,
                             lifetime=timedelta(days=1), now=NOW, serial=9)
    r3 = r2.renewed(c3, issue.fingerprint(c2), NOW)
    assert not r3.accepts(issue.fingerprint(c1)) and nodes.NodeRecord.from_json(r3.to_json()) == r3
    assert set(r3.as_row()) == {"name", "joinedAt", "tokenId", "certificateNotAfter", "fingerprint", "renewedAt"}
