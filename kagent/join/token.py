"""Pure. Join tokens (DESIGN §7, reference/k0s.md §5): a token is the base64 (standard,
padded) of a gzip of a kubeconfig whose one cluster holds the cluster CA and the controller
API URL ``https://<address>:<controlApiPort>``, whose one user is ``kubelet-bootstrap``
(worker) or ``controller-bootstrap`` (controller) with ``token: <id>.<secret>``
(``[a-z0-9]{6}.[a-z0-9]{16}``).

A token file is untrusted input: ``decode_token`` bounds the text, the compressed and the
decompressed sizes (no gzip bomb), refuses YAML aliases, and accepts exactly the shape
``encode_token`` writes, with an error naming ``where`` (the file) and what is wrong.

The controller keeps a ``TokenRecord`` per token (id, role, created, expires and the SHA-256
of the secret, never the secret itself); ``secret_matches`` compares in constant time.
No I/O, no clock, no randomness here: ``now`` and the random id/secret are parameters.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import yaml

from kagent.errors import PreconditionError
from kagent.kubeconfig import Kubeconfig, parse_kubeconfig, render_kubeconfig
from kagent.pki import issue
from kagent.pki.plan import https_url

ID_RE = re.compile(r"^[a-z0-9]{6}$")
SECRET_RE = re.compile(r"^[a-z0-9]{16}$")
VALUE_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LEN, SECRET_LEN = 6, 16

MAX_TOKEN_BYTES = 64 * 1024  # the token file / text: a real token is ~2-3 KiB
MAX_KUBECONFIG_BYTES = 64 * 1024  # decompressed: anything larger is not a token (gzip bomb bound)
CLUSTER_NAME = "kagent"


class TokenRole(StrEnum):
    WORKER = "worker"
    CONTROLLER = "controller"


USER_OF_ROLE = {TokenRole.WORKER: "kubelet-bootstrap", TokenRole.CONTROLLER: "controller-bootstrap"}
ROLE_OF_USER = {u: r for r, u in USER_OF_ROLE.items()}


class TokenError(PreconditionError):
    """A token that cannot be used (exit 4): garbage, truncated, wrong role, expired."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinToken:
    server: str  # https://<address>:<controlApiPort>
    ca_pem: bytes  # the cluster CA the joiner pins
    role: TokenRole
    token_id: str
    secret: str

    @property
    def value(self) -> str:
        """``<id>.<secret>``: the bearer credential."""
        return f"{self.token_id}.{self.secret}"

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"JoinToken(server={self.server!r}, role={self.role}, token_id={self.token_id!r}, secret=<hidden>)"


def split_value(value: str) -> tuple[str, str] | None:
    """``"<id>.<secret>"`` -> (id, secret), or None when it is not of the bootstrap-token shape."""
    m = VALUE_RE.match(value)
    return (m.group(1), m.group(2)) if m else None


def credentials_from(random_bytes: bytes) -> tuple[str, str]:
    """(id, secret) drawn from ``random_bytes`` (give at least 64 bytes from a CSPRNG):
    each byte below 252 picks one of the 36 characters (rejection sampling, no modulo bias)."""
    chars = [ALPHABET[b % 36] for b in random_bytes if b < 252]
    if len(chars) < ID_LEN + SECRET_LEN:
        raise ValueError("not enough random bytes for a token id and secret")
    return "".join(chars[:ID_LEN]), "".join(chars[ID_LEN:ID_LEN + SECRET_LEN])


def server_url(host: str, port: int) -> str:
    """The controller API URL a token names (IPv6 in brackets)."""
    return https_url(host, port)


# ---- encode / decode ---------------------------------------------------------------------


def token_kubeconfig(token: JoinToken) -> str:
    """The kubeconfig inside a token (``kubectl config view`` reads it)."""
    return render_kubeconfig(Kubeconfig(server=token.server, ca_pem=token.ca_pem, token=token.value,
                                        cluster=CLUSTER_NAME, context=CLUSTER_NAME, user=USER_OF_ROLE[token.role]))


def encode_token(token: JoinToken) -> str:
    """base64(gzip(kubeconfig)); deterministic (gzip mtime 0) so the same token encodes the same."""
    data = gzip.compress(token_kubeconfig(token).encode(), compresslevel=9, mtime=0)
    return base64.b64encode(data).decode("ascii")


def _bad(where: str, what: str) -> TokenError:
    return TokenError(where, what, hint="pass the exact text `kagent token create` printed on a controller")


def _gunzip_bounded(data: bytes, where: str) -> bytes:
    if data[:2] != b"\x1f\x8b":
        raise _bad(where, "not a join token (the decoded data is not gzip)")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_KUBECONFIG_BYTES + 1)
    except zlib.error as err:
        raise _bad(where, f"not a join token (corrupt gzip: {err})") from None
    if len(out) > MAX_KUBECONFIG_BYTES or d.unconsumed_tail:
        raise _bad(where, f"not a join token (decompresses to more than {MAX_KUBECONFIG_BYTES // 1024} KiB)")
    if not d.eof:
        raise _bad(where, "truncated: the gzip data ends early (was the token cut when copied?)")
    if d.unused_data:
        raise _bad(where, "not a join token (data after the end of the gzip stream)")
    return out


def _no_aliases(text: str, where: str) -> None:
    """YAML anchors/aliases have no place in a token (and alias expansion is the YAML bomb)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _bad(where, "not a join token (its kubeconfig uses YAML anchors/aliases)")
    except yaml.YAMLError as err:
        raise _bad(where, f"not a join token (its kubeconfig is not YAML: {str(err).splitlines()[0]})") from None


def _one(doc: dict[str, Any], key: str, where: str) -> None:
    items = doc.get(key)
    if not isinstance(items, list) or len(items) != 1:
        raise _bad(where, f"not a join token (its kubeconfig must have exactly one entry in {key})")


def _check_server(server: str, where: str) -> str:
    u = urlsplit(server)
    try:
        port = u.port
    except ValueError:
        port = None
    if u.scheme != "https" or not u.hostname or port is None or u.path not in ("", "/") or u.query or u.fragment \
            or u.username or u.password:
        raise _bad(where, f"server {server!r} is not https://<host>:<port>")
    return server.rstrip("/")


def decode_token(text: str | bytes, where: str = "token") -> JoinToken:
    """The token in ``text`` (surrounding whitespace and line breaks ignored); TokenError
    (exit 4) naming ``where`` for anything that is not exactly a kagent/k0s join token."""
    if isinstance(text, bytes):
        if len(text) > MAX_TOKEN_BYTES:
            raise _bad(where, f"too large for a join token ({len(text)} bytes, at most {MAX_TOKEN_BYTES})")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise _bad(where, "not a join token (not ASCII base64 text)") from None
    if len(text) > MAX_TOKEN_BYTES:
        raise _bad(where, f"too large for a join token ({len(text)} characters, at most {MAX_TOKEN_BYTES})")
    compact = "".join(text.split())
    if not compact:
        raise _bad(where, "empty: no token in it")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "not a join token (not base64; truncated or altered?)") from None
    try:
        kc_text = _gunzip_bounded(raw, where).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(where, "not a join token (its kubeconfig is not UTF-8)") from None
    _no_aliases(kc_text, where)
    try:
        doc = yaml.safe_load(kc_text)
    except yaml.YAMLError as err:
        raise _bad(where, f"not a join token (its kubeconfig is not YAML: {str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise _bad(where, "not a join token (its content is not a kubeconfig)")
    for key in ("clusters", "users", "contexts"):
        _one(doc, key, where)
    try:
        kc = parse_kubeconfig(kc_text, where)
    except PreconditionError as err:
        raise _bad(where, f"not a join token ({err.what})") from None
    role = ROLE_OF_USER.get(kc.user)
    if role is None:
        raise _bad(where, f"user {kc.user!r} is not kubelet-bootstrap (worker) or controller-bootstrap (controller)")
    if kc.cert_pem is not None or kc.key_pem is not None:
        raise _bad(where, "not a join token (its user carries a client certificate)")
    parts = split_value(kc.token or "")
    if parts is None:
        raise _bad(where, "its token is not <id>.<secret> ([a-z0-9]{6}.[a-z0-9]{16})")
    server = _check_server(kc.server, where)
    ca = issue.load_cert(kc.ca_pem)
    if ca is None or not issue.is_ca(ca):
        raise _bad(where, "its certificate-authority-data is not a CA certificate")
    return JoinToken(server=server, ca_pem=kc.ca_pem, role=role, token_id=parts[0], secret=parts[1])


def require_role(token: JoinToken, role: TokenRole, where: str) -> JoinToken:
    if token.role is not role:
        raise TokenError(where, f"is a {token.role} token, this needs a {role} token",
                         hint=f"create one on a controller with `kagent token create --role {role}`")
    return token


# ---- the controller's record ----------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """What is stored instead of the secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison of ``secret``'s hash with the stored one."""
    return hmac.compare_digest(hash_secret(secret).encode(), stored_sha256.encode())


def iso_utc(t: datetime) -> str:
    """``2026-01-01T00:00:00Z``: how join records store times."""
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(v: Any) -> datetime:
    """The inverse of ``iso_utc``; ValueError for anything else (no zone, not a string)."""
    if not isinstance(v, str):
        raise ValueError("time is not a string")
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("time has no zone")
    return t


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    token_id: str
    role: TokenRole
    created: datetime
    expires: datetime | None  # None: never
    secret_sha256: str
    description: str = ""

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> bytes:
        return json.dumps({
            "id": self.token_id, "role": str(self.role), "created": iso_utc(self.created),
            "expires": iso_utc(self.expires) if self.expires else None, "secretSha256": self.secret_sha256,
            "description": self.description,
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TokenRecord:
        """ValueError on anything that is not a record ``to_json`` wrote."""
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        tid, sha = doc.get("id"), doc.get("secretSha256")
        if not isinstance(tid, str) or not ID_RE.match(tid):
            raise ValueError("bad id")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError("bad secret hash")
        expires = doc.get("expires")
        return cls(token_id=tid, role=TokenRole(str(doc.get("role"))), created=parse_iso(doc.get("created")),
                   expires=parse_iso(expires) if expires is not None else None, secret_sha256=sha,
                   description=str(doc.get("description") or ""))


def new_record(token_id: str, secret: str, role: TokenRole, *, now: datetime, expiry: timedelta) -> TokenRecord:
    """``expiry`` zero (or less): never expires."""
    return TokenRecord(token_id=token_id, role=role, created=now, expires=now + expiry if expiry > timedelta(0) else None,
                       secret_sha256=hash_secret(secret),
                       description=f"{role} join token created by kagent")
