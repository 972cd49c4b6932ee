"""The rendered specs run the real etcd (3.4 here) and containerd (1.6 here) installed on the
machine: the argv is accepted and the spec's own health check turns healthy."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from kagent import bins
from kagent.components import containerd, etcd
from kagent.components.context import Context, NodeOptions, Role
from kagent.config.load import load_config
from kagent.node.facts import NodeFacts
from kagent.paths import Paths
from tests.conftest import free_port
from tests.doubles.harness import materialize, start
from tests.doubles.pki import make_test_pki

FACTS = NodeFacts(hostname="node-1", addresses=("127.0.0.1",))


@pytest.fixture
def short_paths(tmp_path):
    run = Path(tempfile.mkdtemp(prefix="kr-"))  # unix sockets need a short path
    yield Paths.build(tmp_path / "data", run, tmp_path / "etc")
    shutil.rmtree(run, ignore_errors=True)


def _found(name: str, paths: Paths) -> Path:
    path = bins.find_binary(name, paths)
    assert path is not None, f"{name} is not installed (scripts/setup.sh installs it)"
    return path


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["rsa-2048", "ecdsa-p256"])
def test_real_etcd_accepts_the_argv_and_answers_the_health_check(short_paths, procs, algorithm):
    paths = short_paths
    make_test_pki(paths, jwt_rsa=algorithm == "rsa-2048")
    binary = _found("etcd", paths)
    client, peer = free_port(), free_port()
    cfg = load_config(f"spec:\n  storage:\n    etcd: {{peerAddress: 127.0.0.1, clientPort: {client}, peerPort: {peer}}}\n"
                      f"  pki: {{keyAlgorithm: {algorithm}}}\n", host_address="127.0.0.1")
    opts = NodeOptions(bins={"etcd": binary}, etcd_version=bins.version_tuple(bins.binary_version(binary)) or (3, 5, 8))
    spec = etcd.spec(Context(config=cfg, paths=paths, facts=FACTS, role=Role.CONTROLLER, options=opts))
    proc = start(procs, spec)
    ctl = [str(_found("etcdctl", paths)), f"--endpoints=https://127.0.0.1:{client}", f"--cacert={paths.etcd_pki('ca.crt')}",
           f"--cert={paths.pki('apiserver-etcd-client.crt')}", f"--key={paths.pki('apiserver-etcd-client.key')}"]
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    assert subprocess.run([*ctl, "put", "kagent-test", "v1"], capture_output=True, text=True, env=env, timeout=20).returncode == 0
    got = subprocess.run([*ctl, "get", "kagent-test", "--print-value-only"], capture_output=True, text=True, env=env, timeout=20)
    assert got.stdout.strip() == "v1"
    assert (paths.etcd_data_dir / "member").is_dir()
    assert paths.etcd_data_dir.stat().st_mode & 0o777 == 0o700
    proc.send_signal(signal.SIGTERM)
    # etcd shuts down cleanly and then re-raises SIGTERM: a stop, not a crash
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)


def _containerd_ctx(paths: Paths, version: tuple[int, int], mirrors: str = "") -> Context:
    body = f"spec:\n  containerd:\n    registryMirrors: {{{mirrors}}}\n"
    cfg = load_config(body, host_address="127.0.0.1")
    return Context(config=cfg, paths=paths, facts=FACTS, role=Role.WORKER,
                   options=NodeOptions(bins={"containerd": _found("containerd", paths)}, containerd_version=version))


@pytest.mark.slow
def test_real_containerd_reads_the_rendered_config(short_paths):
    paths = short_paths
    binary = _found("containerd", paths)
    version = bins.binary_major_minor(binary)
    assert version is not None
    spec = containerd.spec(_containerd_ctx(paths, version, 'docker.io: ["https://mirror.example.com"]'))
    materialize(spec)
    dump = subprocess.run([str(binary), "--config", str(paths.containerd_config), "config", "dump"],
                          capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    doc = tomllib.loads(dump.stdout)
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"] if version[0] < 2 else doc["plugins"]["io.containerd.cri.v1.images"]
    hosts_dir = Path(cri["registry"]["config_path"])
    assert (hosts_dir / "docker.io" / "hosts.toml").read_text().count("https://mirror.example.com") == 1


@pytest.mark.slow
def test_real_containerd_starts_with_the_argv_and_answers(short_paths, procs):
    paths = short_paths
    binary = _found("containerd", paths)
    spec = containerd.spec(_containerd_ctx(paths, bins.binary_major_minor(binary) or (1, 7)))
    proc = start(procs, spec)
    ctr = subprocess.run([str(_found("ctr", paths)), "--address", str(paths.containerd_sock), "version"],
                         capture_output=True, text=True, timeout=20)
    assert ctr.returncode == 0, ctr.stderr
    assert "Server:" in ctr.stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_full_controller_worker_topology_real_etcd_containerd_and_doubles(short_paths, procs):
    """Every spec of a controller+worker, in start order: real etcd and containerd, the
    Kubernetes components as test doubles (whose apiserver probes the real etcd over mTLS with
    the apiserver-etcd-client cert); all turn healthy, then stop in reverse order."""
    from dataclasses import replace

    from kagent.components import specs_for
    from tests.doubles import install

    paths = short_paths
    api = free_port()
    make_test_pki(paths, server_url=f"https://localhost:{api}", jwt_rsa=True)
    found = {n: _found(n, paths) for n in ("etcd", "containerd")}
    found.update(install(paths.bin_dir))
    client, peer, kcm, sched, kubelet, konn = (free_port() for _ in range(6))
    cfg = load_config(
        "spec:\n"
        f"  api: {{port: {api}}}\n"
        f"  storage: {{etcd: {{peerAddress: 127.0.0.1, clientPort: {client}, peerPort: {peer}}}}}\n"
        f"  controllerManager: {{extraArgs: {{secure-port: '{kcm}'}}}}\n"
        f"  scheduler: {{extraArgs: {{secure-port: '{sched}'}}}}\n"
        f"  workerProfiles: [{{name: default, values: {{healthzPort: {kubelet}}}}}]\n",
        host_address="127.0.0.1")
    opts = NodeOptions(enable_worker=True, bins=found, cluster_ca=paths.pki("ca.crt").read_bytes(),
                       etcd_version=bins.version_tuple(bins.binary_version(found["etcd"])) or (3, 5, 8),
                       containerd_version=bins.binary_major_minor(found["containerd"]) or (1, 7))
    specs = list(specs_for(Context(config=cfg, paths=paths, facts=FACTS, role=Role.CONTROLLER, options=opts)))
    assert [s.name for s in specs] == ["etcd", "control-api", "konnectivity-server", "kube-apiserver", "kube-scheduler",
                                       "kube-controller-manager", "containerd", "kubelet"]
    # the controller API (kagent itself) has its own end-to-end tests under tests/integration/join
    specs = [s for s in specs if s.name != "control-api"]
    # konnectivity's health port is fixed (8092, as k0s); move it off for a test run
    i = [s.name for s in specs].index("konnectivity-server")
    k = specs[i]
    specs[i] = replace(k, args=tuple(f"--health-port={konn}" if a.startswith("--health-port=") else a for a in k.args),
                       health=k.health._replace(url=f"http://127.0.0.1:{konn}/healthz"))
    started = [(s, start(procs, s)) for s in specs]
    for s, p in reversed(started):
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) in (0, -signal.SIGTERM), s.name
