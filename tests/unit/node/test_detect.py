"""kagent.node.detect: what the specs need to know about this node."""

from __future__ import annotations

import base64
import os
import time

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


def _counting_etcd(path, count_file, version: str) -> None:
    path.write_text(f'#!/bin/sh\necho x >> {count_file}\necho "etcd Version: {version}"\n')
    path.chmod(0o750)


def test_a_binary_version_is_probed_once_per_path_and_mtime(tmp_path, monkeypatch):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    paths.bin_dir.mkdir(parents=True)
    etcd, count = paths.bin_dir / "etcd", tmp_path / "count"
    _counting_etcd(etcd, count, "3.4.23")
    monkeypatch.setenv("PATH", "")
    assert detect_node(paths).etcd_version == (3, 4, 23)
    assert detect_node(paths).etcd_version == (3, 4, 23)
    assert count.read_text().count("x") == 1  # the second call (a reload) did not run it again
    _counting_etcd(etcd, count, "3.5.17")
    os.utime(etcd, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert detect_node(paths).etcd_version == (3, 5, 17)
    assert count.read_text().count("x") == 2


def test_a_failed_version_probe_never_changes_the_etcd_spec(tmp_path, monkeypatch):
    """etcd 3.4 must not get --tls-min-version (it refuses to start) because --version failed."""
    from kagent.components import etcd as etcd_mod
    from tests.unit.components.cases import ctx

    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    paths.bin_dir.mkdir(parents=True)
    etcd = paths.bin_dir / "etcd"
    _counting_etcd(etcd, tmp_path / "count", "3.4.23")
    monkeypatch.setenv("PATH", "")
    first = detect_node(paths).etcd_version
    etcd.write_text("#!/bin/sh\nexit 1\n")  # a new file whose probe fails (or times out)
    os.utime(etcd, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert detect_node(paths).etcd_version == first == (3, 4, 23)
    # never answered at all: the version whose flags every release accepts, not 3.5's
    other = Paths.build(tmp_path / "data2", tmp_path / "run2")
    other.bin_dir.mkdir(parents=True)
    (other.bin_dir / "etcd").write_text("#!/bin/sh\nexit 1\n")
    (other.bin_dir / "etcd").chmod(0o750)
    det = detect_node(other)
    assert det.etcd_version == (3, 4, 0)
    args = etcd_mod.spec(ctx(etcd_version=det.etcd_version)).args
    assert not any(a.startswith("--tls-min-version") for a in args)
