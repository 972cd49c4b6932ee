"""Join tokens: encode/decode round trip, the k0s shape, and decode as untrusted input."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kagent.config.model import KeyAlgorithm
from kagent.errors import ExitCode, PreconditionError
from kagent.join import token as tk
from kagent.pki import issue

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _ca_pem() -> bytes:
    key = issue.new_key(KeyAlgorithm.ECDSA_P256)
    return issue.cert_pem(issue.make_ca("kubernetes-ca", key, lifetime=timedelta(days=1), now=NOW, serial=7))


CA = _ca_pem()


def make(role=tk.TokenRole.WORKER, server="https://10.0.0.5:9443") -> tk.JoinToken:
    tid, secret = tk.credentials_from(os.urandom(64))
    return tk.JoinToken(server=server, ca_pem=CA, role=role, token_id=tid, secret=secret)


def gz_b64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


def test_round_trip_both_roles():
    for role in tk.TokenRole:
        t = make(role)
        back = tk.decode_token(tk.encode_token(t), "f")
        assert back == t
        assert tk.VALUE_RE.match(back.value)


def test_k0s_shape():
    t = make(tk.TokenRole.CONTROLLER)
    doc = yaml.safe_load(gzip.decompress(base64.b64decode(tk.encode_token(t))))
    assert doc["users"][0]["name"] == "controller-bootstrap"
    assert doc["users"][0]["user"]["token"] == t.value
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.0.0.5:9443"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == CA
    assert doc["current-context"] == doc["contexts"][0]["name"]


def test_encoding_is_deterministic_and_wrapping_is_tolerated():
    t = make()
    enc = tk.encode_token(t)
    assert enc == tk.encode_token(t)
    wrapped = "\n".join(enc[i:i + 64] for i in range(0, len(enc), 64)) + "\n"
    assert tk.decode_token(wrapped, "f") == t


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_config_view_parses_the_decoded_kubeconfig(tmp_path):
    t = make()
    path = tmp_path / "kc"
    path.write_text(tk.token_kubeconfig(t))
    r = subprocess.run(["kubectl", "config", "view", "--kubeconfig", str(path), "-o", "json", "--raw"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert doc["users"][0]["name"] == "kubelet-bootstrap"
    assert doc["users"][0]["user"]["token"] == t.value
    assert doc["clusters"][0]["cluster"]["server"] == t.server


def test_credentials_alphabet_and_unbiased_rejection():
    tid, secret = tk.credentials_from(bytes(range(256)) * 2)
    assert tk.ID_RE.match(tid) and tk.SECRET_RE.match(secret)
    with pytest.raises(ValueError):
        tk.credentials_from(bytes([255] * 100))  # every byte rejected


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("   \n", "empty"),
    ("not base64 !!", "not base64"),
    (base64.b64encode(b"plain text").decode(), "not gzip"),
    (gz_b64("- just\n- a list\n"), "not a kubeconfig"),
    (gz_b64("a: &x [1]\nb: *x\n"), "anchors"),
    (gz_b64("{{{"), "not YAML"),
])
def test_garbage_is_refused_with_the_file_named(text, needle):
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token(text, "token file /x/tok")
    assert e.value.where == "token file /x/tok"
    assert needle in e.value.what
    assert e.value.exit_code == ExitCode.PRECONDITION
    assert isinstance(e.value, PreconditionError)


def test_truncated_token_is_refused():
    enc = tk.encode_token(make())
    raw = base64.b64decode(enc)
    cut = base64.b64encode(raw[: len(raw) // 2]).decode()
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token(cut, "f")
    assert "truncated" in e.value.what or "corrupt" in e.value.what
    with pytest.raises(tk.TokenError):
        tk.decode_token(enc[:-7], "f")  # cut mid-base64


def test_gzip_bomb_is_bounded():
    bomb = base64.b64encode(gzip.compress(b"a: " + b"x" * (40 * 1024 * 1024))).decode()
    assert len(bomb) < tk.MAX_TOKEN_BYTES
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token(bomb, "f")
    assert "more than 64 KiB" in e.value.what


def test_oversized_text_is_refused_before_decoding():
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token("A" * (tk.MAX_TOKEN_BYTES + 4), "f")
    assert "too large" in e.value.what


def _kc(**over) -> str:
    t = make()
    doc = yaml.safe_load(tk.token_kubeconfig(t))
    for path, value in over.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return gz_b64(yaml.safe_dump(doc))


@pytest.mark.parametrize("over,needle", [
    ({"users.0.name": "admin", "contexts.0.context.user": "admin"}, "is not kubelet-bootstrap"),
    ({"users.0.user.token": "abc.def"}, "<id>.<secret>"),
    ({"users.0.user.token": "ABCDEF.0123456789abcdef"}, "<id>.<secret>"),
    ({"clusters.0.cluster.server": "http://10.0.0.5:9443"}, "https://<host>:<port>"),
    ({"clusters.0.cluster.server": "https://10.0.0.5"}, "https://<host>:<port>"),
    ({"clusters.0.cluster.server": "https://10.0.0.5:9443/x?y"}, "https://<host>:<port>"),
    ({"clusters.0.cluster.certificate-authority-data": base64.b64encode(b"junk").decode()}, "not a CA certificate"),
    ({"users.0.user.client-key-data": base64.b64encode(b"k").decode()}, "client certificate"),
])
def test_strict_shape(over, needle):
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token(_kc(**over), "f")
    assert needle in e.value.what


def test_two_users_is_refused():
    doc = yaml.safe_load(tk.token_kubeconfig(make()))
    import copy

    doc["users"].append(dict(copy.deepcopy(doc["users"][0]), name="other"))
    with pytest.raises(tk.TokenError) as e:
        tk.decode_token(gz_b64(yaml.safe_dump(doc)), "f")
    assert "exactly one" in e.value.what


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    try:
        tk.decode_token(data, "f")
    except tk.TokenError as e:
        assert e.where == "f" and e.what
    else:  # pragma: no cover - random bytes are never a valid token
        pytest.fail("random bytes decoded as a token")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2048))
def test_random_gzip_payloads_never_crash(payload):
    try:
        tk.decode_token(base64.b64encode(gzip.compress(payload)).decode(), "f")
    except tk.TokenError as e:
        assert e.where == "f"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=255))
def test_one_flipped_or_cut_byte_is_an_error_or_the_same_token(pos, value):
    t = make()
    raw = bytearray(base64.b64decode(tk.encode_token(t)))
    pos %= len(raw)
    raw[pos] = value
    try:
        back = tk.decode_token(base64.b64encode(bytes(raw)).decode(), "f")
    except tk.TokenError:
        return
    assert back.server.startswith("https://")  # a flip that still decodes yields a well-formed token


def test_require_role():
    t = make(tk.TokenRole.CONTROLLER)
    with pytest.raises(tk.TokenError) as e:
        tk.require_role(t, tk.TokenRole.WORKER, "token file f")
    assert "is a controller token" in e.value.what
    assert tk.require_role(t, tk.TokenRole.CONTROLLER, "f") is t


def test_repr_hides_the_secret():
    t = make()
    assert t.secret not in repr(t) and t.token_id in repr(t)


def test_record_round_trip_and_expiry():
    rec = tk.new_record("abcdef", "0123456789abcdef", tk.TokenRole.WORKER, now=NOW, expiry=timedelta(hours=24))
    assert "0123456789abcdef" not in rec.to_json().decode()
    back = tk.TokenRecord.from_json(rec.to_json())
    assert back == rec
    assert not back.expired(NOW + timedelta(hours=23)) and back.expired(NOW + timedelta(hours=24))
    never = tk.new_record("abcdef", "0123456789abcdef", tk.TokenRole.WORKER, now=NOW, expiry=timedelta(0))
    assert never.expires is None and not never.expired(NOW + timedelta(days=10000))
    assert tk.secret_matches("0123456789abcdef", rec.secret_sha256)
    assert not tk.secret_matches("0123456789abcdeg", rec.secret_sha256)


@pytest.mark.parametrize("blob", [b"[]", b"{}", b'{"id": "ABC"}', b"nope"])
def test_bad_records_raise_value_error(blob):
    with pytest.raises(ValueError):
        tk.TokenRecord.from_json(blob)
