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

ALL = ["etcd", "control-api", "konnectivity-server", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "containerd", "kubelet"]


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


def test_single_node_runs_kine_and_no_konnectivity(node_factory, netns):
    n = node_factory()
    cfg = base_config(n)
    cfg["spec"]["api"] = {"address": "127.0.0.1"}
    cfg["spec"].pop("storage")
    n.write_config(cfg)
    install(n.data / "bin")
    n.start("controller", "--init", "--single", prefix=("ip", "netns", "exec", netns))
    expected = ["kine", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "containerd", "kubelet"]
    comps = n.wait_healthy(expected, timeout=120)
    assert set(comps) == set(expected)
    assert not (n.data / "pki" / "konnectivity.crt").exists()
    assert not list((n.data / "pki").glob("etcd/*.crt")) and not (n.data / "pki" / "apiserver-etcd-client.crt").exists()
    assert "--leader-elect=false" in open(f"/proc/{comps['kube-scheduler']['pid']}/cmdline").read().split("\0")
    assert n.stop(timeout=120) == 0


def test_init_only_prepares_and_exits_without_starting_anything(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    r = n.kagent("controller", "--init", "--init-only", "--disable-components",
                 "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server", timeout=120)
    assert r.returncode == 0, r.stderr
    assert (n.data / "pki" / "ca.crt").exists() and (n.data / "pki" / "admin.conf").stat().st_mode & 0o777 == 0o600
    assert not list(n.run.glob("*.pid"))
