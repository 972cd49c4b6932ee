"""Certificates and components stay consistent (a real controller: etcd as the ``etcd`` user,
control-api): a renewal check never takes the component users' way to their certificates away."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.integration.conftest import KUBE_COMPONENTS, base_config, etcdctl

pytestmark = pytest.mark.slow


def _hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (temp files too) -> its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


def test_renewal_checks_keep_the_pki_dirs_traversable_for_the_component_users(node_factory):
    """renewBefore 4s: a renewal check every second, each rewriting nothing. Each used to make
    pki/ and pki/etcd/ 0700 again (the ownership step, which makes them 0711, runs only after a
    rewrite), and etcd, running as the etcd user, then refused every TLS client."""
    n = node_factory()
    n.write_config(base_config(n, pki={"keyAlgorithm": "ecdsa-p256", "renewBefore": "4s"}))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    etcd_pid = n.wait_healthy(["etcd", "control-api"])["etcd"]["pid"]
    pki = n.data / "pki"
    before = _hashes(pki)
    time.sleep(3.5)  # three renewal checks
    assert _mode(pki) == _mode(pki / "etcd") == 0o711
    r = etcdctl(n, "endpoint", "health")
    assert r.returncode == 0, r.stderr
    assert _hashes(pki) == before and n.components()["etcd"]["pid"] == etcd_pid
    assert n.stop() == 0
