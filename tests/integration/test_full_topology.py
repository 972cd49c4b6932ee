"""The full controller+worker topology: real etcd and containerd, and the Kubernetes
components as the test doubles of tests/doubles (they check their argv and every file it
points to, then serve their health endpoint over TLS with the real certs). It runs in its own
network namespace, so the components' fixed ports are free. Everything starts in dependency
order, reports healthy, answers kubectl through admin.conf, and stops in reverse order."""

from __future__ import annotations

from tests.conftest import kagent_cmd, kagent_env
from tests.doubles import install
from tests.integration.conftest import base_config

import subprocess

ALL = ["etcd", "konnectivity-server", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "containerd", "kubelet"]


def test_controller_with_worker_starts_in_order_and_stops_in_reverse(node_factory, netns):
    n = node_factory()
    cfg = base_config(n)
    # inside the namespace every default port is free: use them
    cfg["spec"]["api"] = {"address": "127.0.0.1"}
    cfg["spec"]["storage"]["etcd"] = {"peerAddress": "127.0.0.1"}
    n.write_config(cfg)
    install(n.data / "bin")
    n.start("controller", "--init", "--enable-worker", prefix=("ip", "netns", "exec", netns))
    comps = n.wait_healthy(ALL, timeout=120)
    assert set(comps) == set(ALL)
    order = list(comps)  # status lists components in start order

    text = n.kagent("status")
    assert text.returncode == 0
    assert "controller+worker" in text.stdout

    ready = subprocess.run(["ip", "netns", "exec", netns, *kagent_cmd(*n.flags(), "kubectl", "get", "--raw", "/readyz")],
                           capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == "ok"

    assert n.stop(timeout=120) == 0
    started = [e["component"] for e in n.events() if e.get("event") == "component_started"]
    stopped = [e["component"] for e in n.events() if e.get("event") == "component_stopped"]
    assert started[0] == "etcd" and started.index("kube-apiserver") < started.index("kube-controller-manager")
    assert started.index("containerd") < started.index("kubelet")
    assert sorted(started) == sorted(order)
    assert stopped == list(reversed(order))
    assert not list(n.run.glob("*.pid"))
