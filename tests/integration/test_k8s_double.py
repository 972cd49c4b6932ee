"""The Kubernetes test doubles (tests/doubles): they reject a bad argv and serve health with a
good one, using kagent's real specs and a PKI made with openssl."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from kagent.components import specs_for
from kagent.components.context import Context, NodeOptions, Role
from kagent.components.spec import ComponentSpec, HttpCheck, UnixSocketCheck
from kagent.config.load import load_config
from kagent.node.facts import NodeFacts
from kagent.paths import Paths
from tests.conftest import free_port
from tests.doubles import install
from tests.doubles.harness import materialize, probe, run_once, runtime_socket, start
from tests.doubles.pki import make_test_pki

FACTS = NodeFacts(hostname="node-1", addresses=("127.0.0.1",))


@pytest.fixture
def node(tmp_path):
    # unix socket paths are limited to 107 bytes: the run dir gets a short name in /tmp
    run = Path(tempfile.mkdtemp(prefix="kr-"))
    paths = Paths.build(tmp_path / "data", run, tmp_path / "etc")
    api_port = free_port()
    make_test_pki(paths, server_url=f"https://localhost:{api_port}")
    bins = install(paths.bin_dir)
    yield paths, bins, api_port
    shutil.rmtree(run, ignore_errors=True)


def context(paths: Paths, bins, role: Role, yaml_text: str, **options) -> Context:
    cfg = load_config(yaml_text, host_address="127.0.0.1")
    opts = NodeOptions(bins=bins, cluster_ca=paths.pki("ca.crt").read_bytes(), **options)
    return Context(config=cfg, paths=paths, facts=FACTS, role=role, options=opts)


def by_name(ctx: Context) -> dict[str, ComponentSpec]:
    return {s.name: s for s in specs_for(ctx)}


SINGLE_YAML = """\
spec:
  api: {{port: {api}}}
  controllerManager: {{extraArgs: {{secure-port: "{kcm}"}}}}
  scheduler: {{extraArgs: {{secure-port: "{sched}"}}}}
  workerProfiles: [{{name: default, values: {{healthzPort: {kubelet}}}}}]
"""


def test_bad_argv_is_rejected_with_exit_2(node):
    paths, bins, api_port = node
    specs = by_name(context(paths, bins, Role.CONTROLLER, SINGLE_YAML.format(api=api_port, kcm=1, sched=2, kubelet=3), single=True))
    api = list(specs["kube-apiserver"].argv)
    # a file that does not exist
    bad = [a if not a.startswith("--tls-cert-file=") else "--tls-cert-file=/nonexistent/server.crt" for a in api]
    r = run_once(bad)
    assert r.returncode == 2
    assert "k8s-double[kube-apiserver]: argv violation: --tls-cert-file=/nonexistent/server.crt: file does not exist" in r.stdout
    # a key where a certificate belongs
    r = run_once([a if not a.startswith("--client-ca-file=") else f"--client-ca-file={paths.pki('ca.key')}" for a in api])
    assert r.returncode == 2 and "not a PEM certificate" in r.stdout
    # a required flag missing
    r = run_once([a for a in api if not a.startswith("--etcd-servers=")])
    assert r.returncode == 2 and "required flag(s) missing: --etcd-servers" in r.stdout
    # a kubeconfig whose embedded client key is garbage
    doc = yaml.safe_load(paths.pki("scheduler.conf").read_text())
    doc["users"][0]["user"]["client-key-data"] = base64.b64encode(b"not a key").decode()
    paths.pki("scheduler.conf").write_text(yaml.safe_dump(doc))
    r = run_once(list(specs["kube-scheduler"].argv))
    assert r.returncode == 2 and "scheduler.conf: client-key-data" in r.stdout
    # an egress selector that is not one
    paths.egress_selector_conf.write_text("kind: Nope\n")
    etcd_specs = by_name(context(paths, bins, Role.CONTROLLER, SINGLE_YAML.format(api=api_port, kcm=1, sched=2, kubelet=3)))
    r = run_once(list(etcd_specs["kube-apiserver"].argv))
    assert r.returncode == 2 and "kind is not EgressSelectorConfiguration" in r.stdout


def test_single_controller_topology_serves_health_and_stops_on_sigterm(node, procs):
    paths, bins, api_port = node
    kubelet_port, kcm_port, sched_port = free_port(), free_port(), free_port()
    ctx = context(paths, bins, Role.CONTROLLER,
                  SINGLE_YAML.format(api=api_port, kcm=kcm_port, sched=sched_port, kubelet=kubelet_port), single=True)
    specs = by_name(ctx)
    assert list(specs) == ["kine", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "containerd", "kubelet"]

    kine = start(procs, specs["kine"])
    api = start(procs, specs["kube-apiserver"])
    # mTLS: without a client certificate the apiserver double refuses the request
    no_client = HttpCheck(url=specs["kube-apiserver"].health.url, ca_file=paths.pki("ca.crt"))
    assert probe(no_client) is False
    start(procs, specs["kube-scheduler"])
    start(procs, specs["kube-controller-manager"])

    with runtime_socket(paths.containerd_sock):
        kubelet = start(procs, specs["kubelet"])
        assert specs["kubelet"].health.url == f"http://127.0.0.1:{kubelet_port}/healthz"

    # storage gone: /readyz turns 500 while /livez stays 200
    kine.send_signal(signal.SIGTERM)
    assert kine.wait(timeout=10) == 0
    assert probe(specs["kube-apiserver"].health) == 500
    live = HttpCheck(url=specs["kube-apiserver"].health.url.replace("/readyz", "/livez"), ca_file=paths.pki("ca.crt"),
                     cert_file=paths.pki("admin.crt"), key_file=paths.pki("admin.key"))
    assert probe(live) == 200

    for p in (kubelet, api):
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert "TEST DOUBLE stopping on signal, exit 0" in p.stdout.read()


def test_konnectivity_double_serves_health_and_its_socket(node, procs):
    paths, bins, api_port = node
    spec = by_name(context(paths, bins, Role.CONTROLLER, f"spec: {{api: {{port: {api_port}}}}}"))["konnectivity-server"]
    port = free_port()
    argv = [a if not a.startswith("--health-port=") else f"--health-port={port}" for a in spec.args]
    from dataclasses import replace

    spec = replace(spec, args=tuple(argv), health=HttpCheck(url=f"http://127.0.0.1:{port}/healthz"))
    start(procs, spec)
    assert probe(UnixSocketCheck(path=paths.konnectivity_sock)) is True


def test_kubelet_double_refuses_when_the_runtime_socket_is_dead(node):
    paths, bins, api_port = node
    spec = by_name(context(paths, bins, Role.WORKER, f"spec: {{workerProfiles: [{{name: default, values: {{healthzPort: {free_port()}}}}}]}}"))["kubelet"]
    materialize(spec)
    paths.containerd_sock.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "K8S_DOUBLE_RUNTIME_WAIT": "1"}
    r = subprocess.run(list(spec.argv), capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2
    assert f"container runtime socket {paths.containerd_sock} does not answer" in r.stdout
