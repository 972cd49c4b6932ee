"""The kubeconfigs work with the real ``kubectl`` against a TLS server that presents
``server.crt`` and requires a client certificate signed by the cluster CA
(tests/fixtures/tls_api_server.py). kubectl verifies the server by hostname (admin.conf:
``https://localhost:<port>``) and by IP (``kubeconfig create``: ``https://127.0.0.1:<port>``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kagent.kubeconfig import Kubeconfig, parse_kubeconfig, render_kubeconfig
from tests.conftest import TESTS, ProcRegistry, free_port, run_kagent
from tests.fixtures.pki_env import PkiEnv, build

KUBECTL = shutil.which("kubectl")


@dataclass
class Cluster:
    env: PkiEnv
    cfg: Path
    port: int
    home: Path
    server_stderr: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    assert KUBECTL, "kubectl is not on PATH: scripts/setup.sh installs it"
    base = tmp_path_factory.mktemp("kubectl")
    port = free_port()
    text = f"spec:\n  api:\n    address: 127.0.0.1\n    port: {port}\n"
    cfg = base / "kagent.yaml"
    cfg.write_text(text)
    env = build(base, text)
    reg = ProcRegistry()
    stderr = base / "server.err"
    try:
        with open(stderr, "wb") as err:
            srv = reg.popen([sys.executable, str(TESTS / "fixtures" / "tls_api_server.py"),
                             "--cert", str(env.paths.pki("server.crt")), "--key", str(env.paths.pki("server.key")),
                             "--ca", str(env.paths.pki("ca.crt")), "--port", str(port),
                             "--bind", "127.0.0.1", "--bind", "127.0.0.2"], stdout=subprocess.PIPE, stderr=err)
            line = srv.stdout.readline().decode()  # type: ignore[union-attr]
            assert line.strip() == f"listening {port}", line
            yield Cluster(env=env, cfg=cfg, port=port, home=base / "home", server_stderr=stderr)
    finally:
        reg.stop_all()


def kubectl(cluster: Cluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["HOME"] = str(cluster.home)
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],  # type: ignore[list-item]
                          capture_output=True, text=True, env=env, timeout=60)


def whoami(cluster: Cluster, kubeconfig: Path) -> dict[str, object]:
    r = kubectl(cluster, kubeconfig, "get", "--raw", "/whoami")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_admin_conf_verifies_the_server_by_hostname(cluster: Cluster):
    conf = cluster.env.paths.admin_conf
    assert parse_kubeconfig(conf.read_text()).server == f"https://localhost:{cluster.port}"
    r = kubectl(cluster, conf, "version", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serverVersion"]["gitVersion"] == "v1.30.0-kagent-test"
    assert whoami(cluster, conf) == {"user": "kubernetes-admin", "groups": ["system:masters"]}


@pytest.mark.parametrize(("name", "user", "groups"), [
    ("ccm", "system:kube-controller-manager", ["system:kube-controller-manager"]),
    ("scheduler", "system:kube-scheduler", ["system:kube-scheduler"]),
    ("konnectivity", "kubernetes-konnectivity", ["system:masters"]),
])
def test_component_kubeconfigs_present_their_identity(cluster: Cluster, name: str, user: str, groups: list[str]):
    assert whoami(cluster, cluster.env.paths.pki(f"{name}.conf")) == {"user": user, "groups": groups}


def test_kubeconfig_create_verifies_the_server_by_ip_and_has_one_o_per_group(cluster: Cluster, tmp_path: Path):
    r = run_kagent("-c", str(cluster.cfg), "--data-dir", str(cluster.env.paths.data_dir), "kubeconfig", "create", "jane",
                   "--groups", "dev,ops", "--context-name", "test")
    assert r.returncode == 0, r.stderr
    conf = tmp_path / "jane.conf"
    conf.write_text(r.stdout)
    kc = parse_kubeconfig(r.stdout)
    assert kc.server == f"https://127.0.0.1:{cluster.port}" and kc.context == "test"
    api = kubectl(cluster, conf, "get", "--raw", "/api")
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout)["versions"] == ["v1"]
    assert whoami(cluster, conf) == {"user": "jane", "groups": ["dev", "ops"]}
    assert kubectl(cluster, conf, "version", "-o", "json").returncode == 0


def test_kubeconfig_admin_prints_admin_with_the_external_url(cluster: Cluster, tmp_path: Path):
    r = run_kagent("-c", str(cluster.cfg), "--data-dir", str(cluster.env.paths.data_dir), "kubeconfig", "admin")
    assert r.returncode == 0, r.stderr
    conf = tmp_path / "admin.conf"
    conf.write_text(r.stdout)
    assert parse_kubeconfig(r.stdout).server == f"https://127.0.0.1:{cluster.port}"
    assert whoami(cluster, conf)["user"] == "kubernetes-admin"


def test_an_address_outside_the_sans_is_refused_by_kubectl(cluster: Cluster, tmp_path: Path):
    kc = parse_kubeconfig(cluster.env.paths.admin_conf.read_text())
    conf = tmp_path / "other-ip.conf"
    conf.write_text(render_kubeconfig(Kubeconfig(server=f"https://127.0.0.2:{cluster.port}", ca_pem=kc.ca_pem,
                                                 cert_pem=kc.cert_pem, key_pem=kc.key_pem)))
    r = kubectl(cluster, conf, "get", "--raw", "/api")
    assert r.returncode != 0
    assert "x509" in r.stderr and "not 127.0.0.2" in r.stderr


def _server_errors(cluster: Cluster) -> int:
    return cluster.server_stderr.read_text().count("handshake_failed")


def _wait_for_more_errors(cluster: Cluster, before: int) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = _server_errors(cluster)
        if now > before:
            return now
        time.sleep(0.05)
    return _server_errors(cluster)


def test_a_client_cert_from_another_ca_is_refused_by_the_server(cluster: Cluster, tmp_path: Path):
    foreign = build(tmp_path / "foreign", "spec:\n  storage:\n    type: kine\n")
    ours = parse_kubeconfig(cluster.env.paths.admin_conf.read_text())
    theirs = parse_kubeconfig(foreign.paths.admin_conf.read_text())
    conf = tmp_path / "foreign.conf"
    conf.write_text(render_kubeconfig(Kubeconfig(server=ours.server, ca_pem=ours.ca_pem,
                                                 cert_pem=theirs.cert_pem, key_pem=theirs.key_pem)))
    before = _server_errors(cluster)
    r = kubectl(cluster, conf, "get", "--raw", "/api")
    assert r.returncode != 0
    assert _wait_for_more_errors(cluster, before) > before


def test_no_client_cert_is_refused_by_the_server(cluster: Cluster, tmp_path: Path):
    ours = parse_kubeconfig(cluster.env.paths.admin_conf.read_text())
    conf = tmp_path / "anonymous.conf"
    conf.write_text(render_kubeconfig(Kubeconfig(server=ours.server, ca_pem=ours.ca_pem, token="abcdef.0123456789abcdef")))
    before = _server_errors(cluster)
    assert kubectl(cluster, conf, "get", "--raw", "/api").returncode != 0
    assert _wait_for_more_errors(cluster, before) > before


def test_a_server_from_another_ca_is_refused_by_kubectl(cluster: Cluster, tmp_path: Path):
    foreign = build(tmp_path / "foreign", "spec:\n  storage:\n    type: kine\n")
    theirs = parse_kubeconfig(foreign.paths.admin_conf.read_text())
    conf = tmp_path / "wrong-ca.conf"
    conf.write_text(render_kubeconfig(Kubeconfig(server=f"https://localhost:{cluster.port}", ca_pem=theirs.ca_pem,
                                                 cert_pem=theirs.cert_pem, key_pem=theirs.key_pem)))
    r = kubectl(cluster, conf, "get", "--raw", "/api")
    assert r.returncode != 0 and "x509" in r.stderr
