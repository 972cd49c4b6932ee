"""Helpers for tests that run a whole ``kagent controller`` / ``kagent worker`` as a child
process: short temp dirs (unix socket paths are limited to 107 bytes), a config on free
loopback ports, status polling through ``kagent status -o json``, and a stop by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.conftest import TEST_USERS, free_port, kagent_cmd, kagent_env, run_kagent, traversable_tmpdir

KUBE_COMPONENTS = "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server"


def _unmount_below(root: Path) -> None:
    """containerd may leave overlay mounts under its root; unmount them (deepest first)."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for m in sorted((m for m in mounts if m.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


@dataclass
class Node:
    root: Path
    data: Path
    run: Path
    config: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def flags(self) -> list[str]:
        return ["-c", str(self.config), "--data-dir", str(self.data), "--run-dir", str(self.run)]

    def kagent(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kagent(*self.flags(), *args, **kw)

    def write_config(self, doc: dict[str, Any]) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        os.replace(tmp, self.config)

    def start(self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """Start the agent; ``prefix`` e.g. ``("ip", "netns", "exec", NS)`` (which execs, so the
        PID is the agent's)."""
        self.log = self.root / f"agent-{int(time.monotonic() * 1000)}.log"
        fh = self.log.open("wb")
        self.proc = subprocess.Popen([*prefix, *kagent_cmd("--log-format", "json", *self.flags(), *args)], stdout=fh,
                                     stderr=subprocess.STDOUT, env=kagent_env(env), start_new_session=True)
        return self.proc

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def status(self) -> dict[str, Any] | None:
        r = self.kagent("status", "-o", "json", timeout=20)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def components(self) -> dict[str, dict[str, Any]]:
        st = self.status()
        return {c["name"]: c for c in st["components"]} if st else {}

    def wait_for(self, pred: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 60, what: str = "") -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"agent exited {self.proc.returncode} while waiting for {what}:\n{self.log_text()[-4000:]}")
            last = self.components()
            if last and pred(last):
                return last
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; last status {json.dumps(last, indent=1)}\n{self.log_text()[-4000:]}")

    def wait_healthy(self, names: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
        return self.wait_for(lambda c: all(n in c and c[n]["state"] == "running" and c[n]["health"] == "healthy" for n in names),
                             timeout, f"{names} healthy")

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return None


def _kill_marked_children(run_dir: Path) -> None:
    """Last-resort cleanup after a failed test: children whose pidfile is in this run dir and
    whose environment carries kagent's marker (never anything else)."""
    for pidfile in run_dir.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"KAGENT_MANAGED=" in environ:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def node_factory():
    nodes: list[Node] = []

    def make(**port_overrides: int) -> Node:
        root = traversable_tmpdir("ka")  # etcd runs as the etcd user: it must get through
        n = Node(root=root, data=root / "d", run=root / "r", config=root / "kagent.yaml")
        nodes.append(n)
        n.ports = {"api": free_port(), "control": free_port(), "etcd_client": free_port(), "etcd_peer": free_port(),
                   **port_overrides}
        return n

    yield make
    for n in nodes:
        try:
            n.stop(timeout=30)
        finally:
            _kill_marked_children(n.run)
            _unmount_below(n.root)
            shutil.rmtree(n.root, ignore_errors=True)


@pytest.fixture
def netns():
    """A fresh network namespace with loopback up: a test host whose fixed ports (10250,
    10257, 10259, 8092, ...) cannot collide with anything else on this machine."""
    import uuid

    name = f"kagent-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def base_config(n: Node, **spec_extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "api": {"address": "127.0.0.1", "port": n.ports["api"], "controlApiPort": n.ports["control"]},
        "storage": {"type": "etcd", "etcd": {"peerAddress": "127.0.0.1", "clientPort": n.ports["etcd_client"],
                                              "peerPort": n.ports["etcd_peer"]}},
        "pki": {"keyAlgorithm": "ecdsa-p256"},
        "install": {"users": dict(TEST_USERS)},
    }
    for k, v in spec_extra.items():
        spec[k] = {**spec.get(k, {}), **v} if isinstance(v, dict) else v
    return {"apiVersion": "kagent.dev/v1beta1", "kind": "ClusterConfig", "spec": spec}


def etcdctl(n: Node, *args: str, cert: bool = True) -> subprocess.CompletedProcess[str]:
    pki = n.data / "pki"
    argv = [shutil.which("etcdctl") or "etcdctl", f"--endpoints=https://127.0.0.1:{n.ports['etcd_client']}",
            f"--cacert={pki / 'etcd' / 'ca.crt'}", "--dial-timeout=3s", "--command-timeout=5s"]
    if cert:
        argv += [f"--cert={pki / 'apiserver-etcd-client.crt'}", f"--key={pki / 'apiserver-etcd-client.key'}"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
