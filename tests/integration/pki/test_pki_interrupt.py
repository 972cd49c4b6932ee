"""A PKI run SIGKILLed at any point leaves no half-written file, and the next run completes
the set: every certificate verifies with openssl, every key matches its certificate, every
kubeconfig embeds the current files, and a run after that writes nothing.

The kill points come from tests/fixtures/pki_crash.py, which wraps ``os.replace`` in a
child process and SIGKILLs itself just before or just after the N-th rename."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kagent.kubeconfig import parse_kubeconfig
from kagent.pki import issue
from kagent.paths import Paths
from kagent.pki.plan import plan_pki
from kagent.pki.store import apply_pki
from tests.conftest import TESTS, kagent_env
from tests.fixtures.pki_env import FACTS, PkiEnv, build, make_config, openssl_verify, utcnow

EC = "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n"
RSA = "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n"
HARNESS = TESTS / "fixtures" / "pki_crash.py"


def _harness(base: Path, text: str, kill_at: int = 0, when: str = "before") -> list[str]:
    cfg = base / "kagent.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)
    return [sys.executable, str(HARNESS), "--base", str(base), "--config", str(cfg), "--kill-at", str(kill_at), "--when", when]


def crash(base: Path, text: str, kill_at: int, when: str) -> None:
    r = subprocess.run(_harness(base, text, kill_at, when), capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])


def assert_no_half_written_file(base: Path) -> None:
    for p in base.rglob("*"):
        if not p.is_file() or (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        data = p.read_bytes()
        if p.suffix == ".crt":
            assert issue.load_cert(data) is not None, p
        elif p.suffix == ".key":
            assert issue.load_key(data) is not None, p
        elif p.suffix == ".pub":
            assert issue.load_public(data) is not None, p
        elif p.suffix == ".conf":
            parse_kubeconfig(data.decode(), str(p))


def assert_complete_and_valid(env: PkiEnv) -> None:
    leftovers = [*env.paths.data_dir.rglob(".*.tmp"), *env.paths.run_dir.rglob(".*.tmp")]
    assert leftovers == []
    for p in env.plan.files():
        assert p.is_file(), p
    for leaf in env.plan.leaves:
        r = openssl_verify(env.plan.ca(leaf.signer).cert, leaf.cert)
        assert r.returncode == 0, (leaf.name, r.stdout, r.stderr)
        cert = issue.load_cert(leaf.cert.read_bytes())
        assert issue.same_public_key(cert.public_key(), issue.load_key(leaf.key.read_bytes())), leaf.name
    for ca in env.plan.cas:
        assert issue.same_public_key(issue.load_cert(ca.cert.read_bytes()).public_key(), issue.load_key(ca.key.read_bytes()))
    for kc in env.plan.kubeconfigs:
        parsed = parse_kubeconfig(kc.path.read_text())
        leaf = env.plan.leaf(kc.client)
        assert (parsed.ca_pem, parsed.cert_pem, parsed.key_pem) == (
            env.plan.ca(kc.ca).cert.read_bytes(), leaf.cert.read_bytes(), leaf.key.read_bytes()), kc.name
    assert apply_pki(env.plan, now=utcnow()).written == ()


@pytest.fixture(scope="module")
def renames(tmp_path_factory) -> int:
    """How many atomic renames a full run makes (the kill points range over them)."""
    base = tmp_path_factory.mktemp("count")
    r = subprocess.run(_harness(base, EC), capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def _points(n: int) -> list[int]:
    return sorted({1, 2, 3, n // 4, n // 2, (3 * n) // 4, n - 1, n})


@pytest.mark.parametrize("when", ["before", "after"])
def test_killed_first_run_is_completed_by_the_next(renames: int, when: str, tmp_path: Path):
    paths = Paths.build(tmp_path / "x", tmp_path / "y")
    assert renames == len(plan_pki(make_config(EC), paths, FACTS, kubelet_node="node-a").files())  # one rename per file
    for n in _points(renames):
        base = tmp_path / f"{when}-{n}"
        crash(base, EC, n, when)
        assert_no_half_written_file(base)
        if when == "before":
            assert list(base.rglob(".*.tmp")), "the kill before a rename leaves its finished temp file"
        env = build(base, EC, kubelet_node="node-a")
        assert bool(env.result.written) is (when == "before" or n < renames), n
        assert_complete_and_valid(env)


def test_rsa_run_killed_between_a_key_and_its_certificate(tmp_path: Path):
    # rename 1 = ca.key, 2 = ca.crt; killing after rename 1 leaves a CA key without certificate
    for n in (1, 9):
        base = tmp_path / f"rsa-{n}"
        crash(base, RSA, n, "after")
        assert_no_half_written_file(base)
        assert_complete_and_valid(build(base, RSA, kubelet_node="node-a"))


def test_killed_reissue_after_a_san_change_is_completed(tmp_path: Path):
    build(tmp_path, EC, kubelet_node="node-a")
    changed = EC + "  api:\n    sans: [api.example.com]\n"
    crash(tmp_path, changed, 1, "after")  # server.crt renamed into place, control-api.crt not yet
    env = build(tmp_path, changed, kubelet_node="node-a")
    assert {p.name for p in env.result.written} == {"control-api.crt"}
    assert_complete_and_valid(env)


def test_killed_ca_regeneration_is_completed(tmp_path: Path):
    first = build(tmp_path, EC, kubelet_node="node-a")
    first.paths.pki("ca.key").unlink()
    crash(tmp_path, EC, 1, "after")  # the new ca.key is in place; ca.crt is still the old CA's
    env = build(tmp_path, EC, kubelet_node="node-a")
    assert env.result.reasons[env.paths.pki("ca.crt")] == "certificate does not match key"
    assert {leaf.cert for leaf in env.plan.leaves if leaf.signer == "ca"} <= set(env.result.written)
    assert_complete_and_valid(env)


def test_sigkill_from_outside_while_files_appear(procs, tmp_path: Path):
    for target in (5, 20, 35):
        base = tmp_path / f"outside-{target}"
        p = procs.popen(_harness(base, RSA), env=kagent_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pki = base / "data" / "pki"
        deadline = time.monotonic() + 30
        while p.poll() is None and time.monotonic() < deadline:
            if pki.is_dir() and sum(1 for _ in pki.rglob("*")) >= target:
                break
            time.sleep(0.001)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert_no_half_written_file(base)
        assert_complete_and_valid(build(base, RSA, kubelet_node="node-a"))
