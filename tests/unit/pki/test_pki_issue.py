"""kagent/pki/issue.py: CA and leaf certificate shapes, key encodings, validity window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kagent.config.model import KeyAlgorithm
from kagent.pki import issue
from kagent.pki.issue import CertRequest, Signer, Usage

NOW = datetime(2026, 3, 1, 12, 34, 56, 789, tzinfo=timezone.utc)


@pytest.fixture(scope="module", params=[KeyAlgorithm.RSA_2048, KeyAlgorithm.ECDSA_P256])
def alg(request) -> KeyAlgorithm:
    return request.param


@pytest.fixture(scope="module")
def ca(alg) -> Signer:
    key = issue.new_key(alg)
    return Signer(issue.make_ca("kubernetes-ca", key, lifetime=timedelta(hours=87600), now=NOW, serial=42), key)


def test_keys_are_the_requested_algorithm_in_traditional_pem(alg):
    key = issue.new_key(alg)
    pem = issue.key_pem(key)
    if alg is KeyAlgorithm.RSA_2048:
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert issue.key_algorithm_of(key) is alg
    assert issue.public_pem(key).startswith(b"-----BEGIN PUBLIC KEY-----")
    assert issue.same_public_key(issue.load_key(pem), key)


def test_ca_is_self_signed_certsign_crlsign_only_with_ski(ca):
    cert = ca.cert
    assert cert.subject == cert.issuer == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-ca")])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not (ku.value.digital_signature or ku.value.key_encipherment)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert issue.is_self_signed(cert) and issue.is_ca(cert)


def test_validity_starts_five_minutes_early_on_a_whole_minute(ca):
    assert ca.cert.not_valid_before_utc == datetime(2026, 3, 1, 12, 29, tzinfo=timezone.utc)
    assert ca.cert.not_valid_after_utc == (NOW + timedelta(hours=87600)).replace(microsecond=0)


def test_naive_now_is_refused(alg):
    with pytest.raises(ValueError, match="timezone-aware"):
        issue.make_ca("x", issue.new_key(alg), lifetime=timedelta(days=1), now=datetime(2026, 1, 1), serial=1)


def test_leaf_has_subject_sans_usages_ski_aki(ca, alg):
    key = issue.new_key(alg)
    req = CertRequest(common_name="kubernetes", organizations=("kubernetes", "second"), dns_names=("localhost", "a.b."),
                      ip_addresses=("127.0.0.1", "::1"), usages=(Usage.SERVER,), lifetime=timedelta(hours=8760))
    cert = issue.issue_leaf(req, key, ca, now=NOW, serial=5)
    assert cert.subject.rfc4514_string() == "CN=kubernetes,O=second,O=kubernetes"
    assert [a.oid for a in cert.subject] == [NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]
    assert cert.issuer == ca.cert.subject
    assert issue.cert_sans(cert) == (("localhost", "a.b."), ("127.0.0.1", "::1"))
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ku.value.key_encipherment is (alg is KeyAlgorithm.RSA_2048)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert issue.signed_by(cert, ca.cert) and not issue.is_self_signed(cert)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > timedelta(hours=8760)


def test_client_only_leaf_without_sans_has_no_san_extension(ca, alg):
    cert = issue.issue_leaf(CertRequest(common_name="u", lifetime=timedelta(days=1)), issue.new_key(alg), ca, now=NOW, serial=6)
    assert issue.cert_sans(cert) == ((), ())
    assert issue.cert_usages(cert) == frozenset({Usage.CLIENT})
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_loaders_return_none_on_garbage():
    assert issue.load_cert(b"nope") is None
    assert issue.load_key(b"nope") is None
    assert issue.load_public(b"nope") is None


def test_serials_are_positive_and_at_most_159_bits():
    assert issue.serial_from(b"\xff" * 32) == (int.from_bytes(b"\xff" * 20, "big") >> 1)
    assert issue.serial_from(b"\xff" * 32).bit_length() == 159
    assert issue.serial_from(b"\x00" * 20) == 1
