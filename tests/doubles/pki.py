"""A throwaway PKI for tests, made with the openssl CLI (independent of kagent.pki): every
cert, key and kubeconfig the component specs read, at the paths DESIGN §2 fixes. EC P-256
keys keep it fast. Test use only."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import yaml

from kagent.paths import Paths

# leaf name -> (CN, O or None, client?)  all signed by the one test CA
_LEAVES = {
    "server": ("kube-apiserver", None, False),
    "admin": ("kubernetes-admin", "system:masters", True),
    "apiserver-kubelet-client": ("apiserver-kubelet-client", "system:masters", True),
    "apiserver-etcd-client": ("apiserver-etcd-client", None, True),
    "front-proxy-client": ("front-proxy-client", None, True),
    "ccm": ("system:kube-controller-manager", None, True),
    "scheduler": ("system:kube-scheduler", None, True),
    "konnectivity": ("kube-apiserver-konnectivity-server", None, True),
    "kubelet": ("system:node:node-1", "system:nodes", True),
}
_KUBECONFIGS = {"admin.conf": "admin", "ccm.conf": "ccm", "scheduler.conf": "scheduler", "konnectivity.conf": "konnectivity"}


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(path: Path) -> None:
    _ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=path.parent)
    path.chmod(0o600)


def kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes, user: str = "user") -> str:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kagent", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "kagent", "context": {"cluster": "kagent", "user": user}}],
        "current-context": "kagent",
    })


def _leaf(folder: Path, ca_dir: Path, leaf: str, subj: str, usage: str) -> None:
    _key(folder / f"{leaf}.key")
    _ssl("req", "-new", "-key", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", subj, cwd=folder)
    (folder / "ext.cnf").write_text(f"extendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _ssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", str(ca_dir / "ca.crt"), "-CAkey", str(ca_dir / "ca.key"),
         "-CAcreateserial", "-out", f"{leaf}.crt", "-days", "1", "-extfile", "ext.cnf", cwd=folder)
    (folder / f"{leaf}.csr").unlink()
    (folder / "ext.cnf").unlink()


def make_test_pki(paths: Paths, server_url: str = "https://localhost:6443", *, jwt_rsa: bool = False) -> None:
    """One CA (also playing the etcd and front-proxy CAs) and every leaf and kubeconfig.
    ``jwt_rsa``: the etcd JWT key is RSA (config keyAlgorithm rsa-2048), else EC P-256."""
    pki, etcd = paths.pki_dir, paths.etcd_pki_dir
    etcd.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    _key(pki / "ca.key")
    _ssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=kagent-test-ca", cwd=pki)
    for name in ("front-proxy-ca.crt",):
        (pki / name).write_bytes((pki / "ca.crt").read_bytes())
    (etcd / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    for leaf, (cn, org, client) in _LEAVES.items():
        _leaf(pki, pki, leaf, f"/CN={cn}" + (f"/O={org}" if org else ""), "clientAuth" if client else "serverAuth")
    for leaf in ("server", "peer"):
        _leaf(etcd, pki, leaf, "/CN=node-1", "serverAuth,clientAuth")
    if jwt_rsa:
        _ssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "jwt.key", cwd=etcd)
    else:
        _key(etcd / "jwt.key")
    _ssl("pkey", "-in", "jwt.key", "-pubout", "-out", "jwt.pub", cwd=etcd)
    _key(pki / "sa.key")
    _ssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    ca = (pki / "ca.crt").read_bytes()
    for conf, leaf in _KUBECONFIGS.items():
        (pki / conf).write_text(kubeconfig(server_url, ca, (pki / f"{leaf}.crt").read_bytes(), (pki / f"{leaf}.key").read_bytes()))
    kubelet = kubeconfig(server_url, ca, (pki / "kubelet.crt").read_bytes(), (pki / "kubelet.key").read_bytes())
    paths.kubelet_conf.write_text(kubelet)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.kubelet_direct_conf.write_text(kubelet)
