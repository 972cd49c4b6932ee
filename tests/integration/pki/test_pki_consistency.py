"""Certificates and components stay consistent (a real controller: etcd as the ``etcd`` user,
control-api): a reload rejected after its PKI step leaves every PKI file as it was (staged
files removed), an accepted one puts them in place and restarts their readers, and a
renewal check never takes the component users' way to their certificates away."""

from __future__ import annotations

import hashlib
import subprocess
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


def test_a_reload_rejected_after_its_pki_step_leaves_the_pki_files_as_they_were(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    pids = {k: v["pid"] for k, v in n.wait_healthy(["etcd", "control-api"]).items()}
    pki = n.data / "pki"
    before = _hashes(pki)
    # the ownership step (after the PKI step) fails for real: chown of a file in etcd's data dir
    # that the operator made immutable is EPERM, also for root
    pinned = n.data / "etcd" / "operator-note"
    pinned.write_text("do not touch\n")
    subprocess.run(["chattr", "+i", str(pinned)], check=True)
    try:
        # a SAN added: server.crt and control-api.crt are reissued by the PKI step
        n.write_config(base_config(n, api={"sans": ["203.0.113.7"]}))
        seen = len(n.events())
        r = n.kagent("reload", timeout=120)
        assert r.returncode != 0 and "nothing was changed" in r.stderr, (r.returncode, r.stdout, r.stderr)
        assert "operator-note" in r.stderr, r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=True)
    assert _hashes(pki) == before  # byte-identical, and no staged temp file left
    assert {e["path"] for e in n.events()[seen:] if e.get("event") == "pki_file_written" and e.get("staged")} == \
        {str(pki / "server.crt"), str(pki / "control-api.crt")}  # (the PKI step did run and stage them)
    assert _mode(pki) == _mode(pki / "etcd") == 0o711
    assert {k: v["pid"] for k, v in n.components().items()} == pids
    assert etcdctl(n, "endpoint", "health").returncode == 0  # etcd still reaches its certs

    # the same reload, accepted: the new files are in place, owned as before, and their readers restart
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "restarted: control-api" in r.stdout
    after = _hashes(pki)
    assert {k for k in after if after[k] != before.get(k)} == {"server.crt", "control-api.crt"}
    assert set(after) == set(before)  # no temp file
    comps = n.wait_healthy(["etcd", "control-api"])
    assert comps["etcd"]["pid"] == pids["etcd"] and comps["control-api"]["pid"] != pids["control-api"]
    assert "203.0.113.7" in subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                                             str(pki / "server.crt")], capture_output=True, text=True).stdout
    assert etcdctl(n, "endpoint", "health").returncode == 0
    assert n.stop() == 0


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
