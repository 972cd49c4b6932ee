"""kagent/kubeconfig.py: deterministic rendering, round trip, and clear refusals."""

from __future__ import annotations

import base64

import pytest
import yaml

from kagent.errors import PreconditionError
from kagent.kubeconfig import Kubeconfig, parse_kubeconfig, render_kubeconfig

CA = b"-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 3000 + b"\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nS0VZ\n-----END EC PRIVATE KEY-----\n"


def test_render_has_the_k0s_shape_with_data_embedded():
    doc = yaml.safe_load(render_kubeconfig(Kubeconfig(server="https://localhost:6443", ca_pem=CA, cert_pem=CERT, key_pem=KEY)))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    assert doc["clusters"] == [{"cluster": {"certificate-authority-data": base64.b64encode(CA).decode(),
                                            "server": "https://localhost:6443"}, "name": "local"}]
    assert doc["contexts"] == [{"context": {"cluster": "local", "user": "user"}, "name": "Default"}]
    assert doc["current-context"] == "Default"
    assert doc["users"] == [{"name": "user", "user": {"client-certificate-data": base64.b64encode(CERT).decode(),
                                                      "client-key-data": base64.b64encode(KEY).decode()}}]


def test_render_is_deterministic_and_never_wraps_long_data():
    kc = Kubeconfig(server="https://[::1]:1", ca_pem=CA, cert_pem=CERT, key_pem=KEY, cluster="c", context="x", user="u")
    text = render_kubeconfig(kc)
    assert text == render_kubeconfig(kc)
    assert any(len(line) > 4000 for line in text.splitlines())


@pytest.mark.parametrize("kc", [
    Kubeconfig(server="https://a:1", ca_pem=CA, cert_pem=CERT, key_pem=KEY, cluster="c", context="ctx", user="jane"),
    Kubeconfig(server="https://10.0.0.1:9443", ca_pem=CA, token="abcdef.0123456789abcdef", user="kubelet-bootstrap"),
])
def test_round_trip(kc):
    assert parse_kubeconfig(render_kubeconfig(kc)) == kc


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2", "not YAML"),
    ("- a\n", "not a kubeconfig"),
    ("apiVersion: v1\n", "no current-context"),
    ("current-context: x\ncontexts: []\n", "no context named 'x'"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: s, certificate-authority: /etc/ca.crt}}]\nusers: [{name: u, user: {}}]\n",
     "no certificate-authority-data"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: s, certificate-authority-data: '!!'}}]\nusers: [{name: u, user: {}}]\n",
     "not base64"),
])
def test_parse_refuses_with_a_reason(text, message):
    with pytest.raises(PreconditionError, match=message) as err:
        parse_kubeconfig(text, "some.conf")
    assert err.value.where == "some.conf"
