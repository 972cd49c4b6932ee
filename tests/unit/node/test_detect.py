"""kagent.node.detect: what the specs need to know about this node."""

from __future__ import annotations

import base64

from kagent.node.detect import cluster_ca, detect_node
from kagent.paths import Paths

PEM = b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"


def test_cluster_ca_from_pki_then_kubelet_kubeconfig(tmp_path):
    ca, kubeconfig = tmp_path / "ca.crt", tmp_path / "kubelet.conf"
    assert cluster_ca(ca, kubeconfig) == b""
    kubeconfig.write_text(f"clusters:\n- cluster:\n    certificate-authority-data: {base64.b64encode(PEM).decode()}\n")
    assert cluster_ca(ca, kubeconfig) == PEM
    ca.write_bytes(b"pki-ca")
    assert cluster_ca(ca, kubeconfig) == b"pki-ca"
    kubeconfig.write_text("::: not yaml :::\n  - [")
    ca.unlink()
    assert cluster_ca(ca, kubeconfig) == b""


def test_detect_node_finds_binaries_in_data_bin(tmp_path, monkeypatch):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    paths.bin_dir.mkdir(parents=True)
    ctd = paths.bin_dir / "containerd"
    ctd.write_text("#!/bin/sh\necho containerd github.com/containerd/containerd v2.1.4 x\n")
    ctd.chmod(0o750)
    monkeypatch.setenv("PATH", "")
    det = detect_node(paths)
    assert det.bins["containerd"] == ctd and "kubelet" not in det.bins
    assert det.containerd_version == (2, 1)
    assert detect_node(paths, containerd_version=(1, 6)).containerd_version == (1, 6)
