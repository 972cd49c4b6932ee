"""``kagent kubeconfig create|admin`` and ``kagent certs check`` as a user runs them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kagent.kubeconfig import parse_kubeconfig
from kagent.pki import issue
from tests.conftest import run_kagent
from tests.fixtures.pki_env import PkiEnv, build, snapshot, utcnow

CFG = "spec:\n  api:\n    address: 10.11.12.13\n    externalAddress: api.example.com\n    port: 7443\n  pki:\n    keyAlgorithm: ecdsa-p256\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> PkiEnv:
    return build(tmp_path_factory.mktemp("cli"), CFG)


@pytest.fixture(scope="module")
def cfg(env: PkiEnv) -> Path:
    path = env.paths.data_dir.parent / "kagent.yaml"
    path.write_text(CFG)
    return path


def kagent(env: PkiEnv, cfg: Path, *args: str):
    return run_kagent("-c", str(cfg), "--data-dir", str(env.paths.data_dir), *args)


@pytest.mark.parametrize("args", [["kubeconfig", "create", "jane"], ["kubeconfig", "admin"]])
def test_kubeconfig_commands_refuse_without_a_ca(tmp_path: Path, args: list[str]):
    data = tmp_path / "data"
    r = run_kagent("--data-dir", str(data), *args)
    assert r.returncode == 4
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: pki: {data}/pki/ca.key does not exist: {data} holds no cluster CA"
    assert lines[1].startswith("hint: ")
    assert r.stdout == "" and not data.exists()


def test_kubeconfig_create_prints_a_working_identity_and_leaves_no_key(env: PkiEnv, cfg: Path):
    before = snapshot(env.paths.data_dir)
    r = kagent(env, cfg, "kubeconfig", "create", "jane", "--groups", "dev, ops,", "--certificate-expires-after", "48h")
    assert r.returncode == 0, r.stderr
    kc = parse_kubeconfig(r.stdout)
    assert kc.server == "https://api.example.com:7443"
    assert (kc.cluster, kc.context, kc.user) == ("kagent", "kagent", "jane")
    cert = issue.load_cert(kc.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=jane,O=ops,O=dev"
    assert timedelta(hours=47) < cert.not_valid_after_utc - utcnow() <= timedelta(hours=48)
    assert issue.key_algorithm_of(issue.load_key(kc.key_pem)).value == "ecdsa-p256"
    assert snapshot(env.paths.data_dir) == before


def test_kubeconfig_create_refuses_bad_input_with_usage_errors(env: PkiEnv, cfg: Path):
    r = kagent(env, cfg, "kubeconfig", "create", "jane", "--certificate-expires-after", "forever")
    assert r.returncode == 2
    assert r.stderr.startswith("error: --certificate-expires-after: 'forever' is not a duration")
    assert kagent(env, cfg, "kubeconfig", "create", " ").returncode == 2


def test_kubeconfig_admin_uses_the_external_address(env: PkiEnv, cfg: Path):
    r = kagent(env, cfg, "kubeconfig", "admin")
    assert r.returncode == 0, r.stderr
    kc = parse_kubeconfig(r.stdout)
    assert kc.server == "https://api.example.com:7443"
    assert kc.cert_pem == env.paths.pki("admin.crt").read_bytes()


def test_certs_check_text_lists_every_cert(env: PkiEnv, cfg: Path):
    r = kagent(env, cfg, "certs", "check")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["FILE", "SUBJECT", "ISSUER", "NOT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {str(p.relative_to(env.paths.data_dir)) for p in env.plan.files() if p.suffix == ".crt"}
    assert "CN=kubernetes,O=kubernetes" in rows["pki/server.crt"] and "api.example.com" in rows["pki/server.crt"]
    assert rows["pki/ca.crt"].split()[-1] == "ok" or " ok " in rows["pki/ca.crt"]


def test_certs_check_json(env: PkiEnv, cfg: Path):
    r = kagent(env, cfg, "certs", "check", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["renew_before_days"] == 30
    by_file = {Path(c["file"]).name if "etcd" not in c["file"] else "etcd/" + Path(c["file"]).name: c for c in doc["certificates"]}
    server = by_file["server.crt"]
    assert server["subject"] == "CN=kubernetes,O=kubernetes" and server["issuer"] == "CN=kubernetes-ca"
    assert "10.11.12.13" in server["sans"] and server["state"] == "ok" and server["days_left"] in (364, 365)
    assert by_file["ca.crt"]["ca"] is True and by_file["ca.crt"]["days_left"] >= 3649


def test_certs_check_exits_4_when_a_cert_is_within_renew_before(tmp_path: Path):
    short = build(tmp_path, CFG + '    certificatesExpireAfter: "240h"\n    renewBefore: "24h"\n')
    # checked with the default renewBefore (30 days): every 10-day leaf is due
    r = run_kagent("--data-dir", str(short.paths.data_dir), "certs", "check", "-o", "json")
    assert r.returncode == 4
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    states = {Path(c["file"]).name: c["state"] for c in doc["certificates"]}
    assert states["admin.crt"] == "expiring" and states["ca.crt"] == "ok"


def test_certs_check_without_certificates_exits_4(tmp_path: Path):
    r = run_kagent("--data-dir", str(tmp_path / "none"), "certs", "check")
    assert r.returncode == 4 and r.stderr.startswith("error: certs: no certificates under ")


def test_help_documents_the_exit_codes():
    r = run_kagent("certs", "check", "--help")
    assert r.returncode == 0 and "4  one is expired, expires within renewBefore" in r.stdout
    top = run_kagent("--help")
    assert "kubeconfig" in top.stdout and "certs" in top.stdout
