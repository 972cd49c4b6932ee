"""Pure. Keys and certificates with ``cryptography``: bytes in, bytes out, no file I/O.

Time (``now``) and serial numbers are parameters. Key generation draws from OpenSSL's
CSPRNG, the one source of randomness here.

Shapes (DESIGN §6, k0s §4):
- CA: self-signed, subject CN only, BasicConstraints CA:TRUE (critical), KeyUsage
  keyCertSign|cRLSign only (critical), SKI.
- leaf: subject O=... then CN (Go's RDN order), BasicConstraints CA:FALSE (critical),
  KeyUsage digitalSignature (+ keyEncipherment for RSA) (critical), the ExtKeyUsages it
  needs, SANs when any, SKI, and AKI = the CA's SKI.
- NotBefore is five minutes before ``now`` (rounded down to the minute) for clock skew.
- Keys are PEM in the "traditional" encodings every Kubernetes component reads: PKCS#1
  ``RSA PRIVATE KEY`` (as k0s/cfssl) or SEC1 ``EC PRIVATE KEY``; public keys are PKIX.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kagent.config.model import KeyAlgorithm
from kagent.pki.model import CertRequest as CertRequest  # re-exported: issue_leaf takes it
from kagent.pki.model import Usage as Usage

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]

CLOCK_SKEW = timedelta(minutes=5)
RSA_BITS = 2048


_EKU_OID = {Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH, Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH}
_OID_EKU = {oid.dotted_string: u for u, oid in _EKU_OID.items()}


@dataclass(frozen=True, slots=True)
class Signer:
    """A CA able to sign: its certificate and private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


# ---- keys ------------------------------------------------------------------------------


def new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def key_algorithm_of(key: PrivateKey | PublicKey) -> KeyAlgorithm | None:
    """The plan's name for this key's algorithm; None for anything kagent does not make."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size == RSA_BITS:
        return KeyAlgorithm.RSA_2048
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(key.curve, ec.SECP256R1):
        return KeyAlgorithm.ECDSA_P256
    return None


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _spki(key: PrivateKey | PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: PrivateKey | PublicKey, b: PrivateKey | PublicKey) -> bool:
    return _spki(a) == _spki(b)


def load_key(pem: bytes) -> PrivateKey | None:
    """The private key in ``pem``, or None when it is not a readable RSA/ECDSA key.

    OpenSSL's RSA consistency check (~30 ms a key) is skipped: these are kagent's own keys
    in a 0700 folder, and every use compares the key with its certificate or public half."""
    try:
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else None


def load_public(pem: bytes) -> PublicKey | None:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)) else None


def load_cert(pem: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, ``AA:BB:..`` as ``openssl x509 -fingerprint -sha256``."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


# ---- names -----------------------------------------------------------------------------


def subject_name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    """O=... (one attribute per organization, in order) then CN, as Go renders pkix.Name."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _sans(dns_names: Iterable[str], ip_addresses: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    return out


def cert_sans(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) of ``cert``, in certificate order."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return tuple(ext.get_values_for_type(x509.DNSName)), tuple(str(i) for i in ext.get_values_for_type(x509.IPAddress))


def cert_usages(cert: x509.Certificate) -> frozenset[Usage]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(_OID_EKU[o.dotted_string] for o in eku if o.dotted_string in _OID_EKU)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``cert``'s signature and the issuer names match."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return signed_by(cert, cert)


# ---- issuing ---------------------------------------------------------------------------


def _validity(now: datetime, lifetime: timedelta) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(timezone.utc)
    return now.replace(second=0, microsecond=0) - CLOCK_SKEW, now + lifetime


def make_ca(common_name: str, key: PrivateKey, *, lifetime: timedelta, now: datetime, serial: int) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (new, or the existing key when renewing)."""
    not_before, not_after = _validity(now, lifetime)
    name = subject_name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def leaf_key_usage(key: PrivateKey | PublicKey) -> x509.KeyUsage:
    """digitalSignature, plus keyEncipherment for RSA (meaningless for ECDSA keys)."""
    rsa_key = isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey))
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=rsa_key, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )


def issue_leaf(request: CertRequest, key: PrivateKey, signer: Signer, *, now: datetime, serial: int) -> x509.Certificate:
    """A leaf certificate for ``key`` signed by ``signer``."""
    return issue_leaf_for(request, key.public_key(), signer, now=now, serial=serial)


def issue_leaf_for(request: CertRequest, public_key: PublicKey, signer: Signer, *, now: datetime,
                   serial: int) -> x509.Certificate:
    """A leaf certificate for a public key only (a CSR's: the private key stays with its owner)."""
    not_before, not_after = _validity(now, request.lifetime)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name(request.common_name, request.organizations))
        .issuer_name(signer.cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(public_key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()), critical=False)
    )
    if request.usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage([_EKU_OID[u] for u in request.usages]), critical=False)
    sans = _sans(request.dns_names, request.ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer.key, hashes.SHA256())


def serial_from(random_bytes: bytes) -> int:
    """A positive serial number (at most 159 bits, RFC 5280) from ``random_bytes``."""
    return (int.from_bytes(random_bytes[:20], "big") >> 1) or 1
