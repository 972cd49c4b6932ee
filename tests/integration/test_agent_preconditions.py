"""``kagent controller`` before its first write: the run and data dirs must be writable
directories, and the instance lock is taken before anything is written (also --init-only), so
two concurrent --init runs on one data dir cannot interleave their CA writes."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.conftest import kagent_cmd, kagent_env, run_kagent
from tests.integration.conftest import base_config

ETCD_ONLY = ("--disable-components", "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server")


def test_a_run_dir_that_is_a_regular_file_is_refused_before_anything_is_written(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.run.write_text("not a dir\n")
    r = n.kagent("controller", "--init", "--init-only", *ETCD_ONLY, timeout=60)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith(f"error: {n.run}: the run dir is not a directory"), r.stderr
    assert not n.data.exists()  # no PKI written first
    n.run.unlink()
    nested = n.root / "file"
    nested.write_text("")
    r = run_kagent("-c", str(n.config), "--data-dir", str(nested / "data"), "--run-dir", str(n.run),
                   "controller", "--init", "--init-only", *ETCD_ONLY, timeout=60)
    assert r.returncode == 4 and f"error: {nested}: a parent of the data dir" in r.stderr, r.stderr


def test_a_read_only_data_dir_is_refused_before_anything_is_written(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.data.mkdir()
    # a private mount namespace: the read-only tmpfs exists only for this one command
    script = f'mount -t tmpfs -o ro tmpfs "{n.data}" && exec "$@"'
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        *kagent_cmd(*n.flags(), "controller", "--init", "--init-only", *ETCD_ONLY)],
                       capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith(f"error: {n.data}: the data dir is on a read-only file system"), r.stderr
    assert not n.run.exists()  # the lock comes after the checks


def _verifies(cert_path: Path, cas: list[x509.Certificate]) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    for ca in cas:
        if ca.subject == cert.issuer:
            try:
                cert.verify_directly_issued_by(ca)
                return True
            except Exception:  # noqa: BLE001 - a wrong signature is the failure we look for
                return False
    return False


@pytest.mark.slow
def test_concurrent_init_runs_cannot_interleave_their_pki_writes(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    argv = kagent_cmd(*n.flags(), "controller", "--init", "--init-only", *ETCD_ONLY)
    runs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=kagent_env())
            for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in runs]
    for code, err in results:
        assert code in (0, 4), err
        if code == 4:
            assert "another kagent is already running with this run dir" in err, err
    pki = n.data / "pki"
    cas = [x509.load_pem_x509_certificate(p.read_bytes()) for p in pki.rglob("*ca.crt")]
    leaves = [p for p in pki.rglob("*.crt") if not p.name.endswith("ca.crt")]
    assert leaves and cas
    bad = [str(p) for p in leaves if not _verifies(p, cas)]
    assert not bad, f"leaves that do not verify against the CA on disk: {bad}"
    admin = yaml.safe_load((pki / "admin.conf").read_text())
    embedded = base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
    assert embedded == (pki / "ca.crt").read_bytes()
