"""SIGHUP / ``kagent reload`` with the real etcd and containerd under one agent:
a registry-mirror change restarts containerd alone (etcd keeps its PID) and the running
containerd pulls through the new mirror; an etcd extraArgs change restarts etcd alone; a
broken config is rejected and nothing restarts."""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from tests.fixtures.cri import pull_image
from tests.integration.conftest import KUBE_COMPONENTS, base_config, etcdctl


class FakeRegistry:
    """Answers 404 to everything and records the paths it was asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                reg.paths.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _answer

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registries():
    regs = [FakeRegistry(), FakeRegistry()]
    yield regs
    for r in regs:
        r.close()


def _config(n, registry: str, mirror: str, etcd_extra: dict[str, str] | None = None) -> dict:
    cfg = base_config(n, containerd={"registryMirrors": {registry: [mirror]}})
    if etcd_extra:
        cfg["spec"]["storage"]["etcd"]["extraArgs"] = etcd_extra
    return cfg


def _pids(n) -> dict[str, int]:
    return {name: c["pid"] for name, c in n.components().items()}


def test_hup_restarts_only_the_changed_component(node_factory, registries):
    n = node_factory()
    # the registry host is a closed loopback port, so a fallback past the mirror stays on this machine
    registry = f"127.0.0.1:{free_port()}"
    image = f"{registry}/library/kagent-probe:1"
    a, b = registries
    n.write_config(_config(n, registry, a.url))
    n.start("controller", "--init", "--enable-worker", "--disable-components", f"{KUBE_COMPONENTS},kubelet")
    before = n.wait_healthy(["etcd", "control-api", "containerd"], timeout=90)
    pids = {k: v["pid"] for k, v in before.items()}

    ok, _ = pull_image(n.run / "containerd.sock", image)
    assert not ok
    assert any("/v2/library/kagent-probe/manifests/1" in p for p in a.paths), a.paths
    assert b.paths == []

    # 1. mirror change -> containerd alone restarts, and pulls through the new mirror
    n.write_config(_config(n, registry, b.url))
    os.kill(n.proc.pid, signal.SIGHUP)
    after = n.wait_for(lambda c: c["containerd"]["pid"] not in (None, pids["containerd"]) and c["containerd"]["health"] == "healthy",
                       timeout=60, what="containerd restarted")
    assert after["etcd"]["pid"] == pids["etcd"]
    a.paths.clear()
    ok, _ = pull_image(n.run / "containerd.sock", image)
    assert any("/v2/library/kagent-probe/manifests/1" in p for p in b.paths), b.paths
    assert a.paths == []
    pids = _pids(n)

    # 2. etcd extraArgs change via `kagent reload` -> etcd alone restarts; the reply names it
    n.write_config(_config(n, registry, b.url, etcd_extra={"heartbeat-interval": "150", "election-timeout": "1500"}))
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "etcd" in r.stdout
    after = n.wait_healthy(["etcd", "containerd"])
    assert after["etcd"]["pid"] != pids["etcd"]
    assert after["containerd"]["pid"] == pids["containerd"]
    assert f"--heartbeat-interval=150" in open(f"/proc/{after['etcd']['pid']}/cmdline").read().replace("\0", " ")
    assert etcdctl(n, "endpoint", "health").returncode == 0
    pids = _pids(n)

    # 3. a broken config is rejected: exit 3 naming the field, nothing restarts
    n.config.write_text("spec:\n  storage:\n    etcd:\n      clientPort: 99999\n")
    r = n.kagent("reload", timeout=60)
    assert r.returncode == 3
    assert "spec.storage.etcd.clientPort" in (r.stdout + r.stderr)
    time.sleep(1)
    assert _pids(n) == pids
    assert n.stop() == 0
