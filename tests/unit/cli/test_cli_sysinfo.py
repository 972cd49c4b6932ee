"""``kagent sysinfo`` through the CLI, on the real machine."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.conftest import run_kagent

CONTROLLER_CHECKS = {
    "kernel version", "memory", "data dir free space", "running as root",
    "binary etcd", "binary kube-apiserver", "binary kube-controller-manager", "binary kube-scheduler",
    "binary konnectivity-server",
}
WORKER_CHECKS = {
    "kernel version", "cgroup version", "cgroup controller cpu", "cgroup controller memory", "cgroup controller pids",
    "sysctl net.ipv4.ip_forward", "sysctl net.bridge.bridge-nf-call-iptables", "sysctl net.bridge.bridge-nf-call-ip6tables",
    "kernel module overlay", "kernel module br_netfilter", "kernel module nf_conntrack",
    "memory", "data dir free space", "running as root", "binary containerd", "binary runc", "binary kubelet",
    "port 10250 (kubelet)",
}


def config_with_ports(tmp_path: Path, ports: list[int]) -> Path:
    api, ctl, client, peer, agent, admin = ports
    cfg = tmp_path / "kagent.yaml"
    cfg.write_text(
        "spec:\n"
        f"  api: {{port: {api}, controlApiPort: {ctl}}}\n"
        f"  storage: {{etcd: {{clientPort: {client}, peerPort: {peer}}}}}\n"
        f"  konnectivity: {{agentPort: {agent}, adminPort: {admin}}}\n"
    )
    return cfg


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_real_machine_json_has_every_check(tmp_path: Path) -> None:
    r = run_kagent("--data-dir", str(tmp_path / "data"), "sysinfo", "-o", "json")
    checks = json.loads(r.stdout)
    names = {c["name"] for c in checks}
    assert CONTROLLER_CHECKS | WORKER_CHECKS <= names
    assert {n for n in names if n.startswith("port ")} >= {
        "port 6443 (kube-apiserver)", "port 9443 (control-api)", "port 2379 (etcd client)", "port 2380 (etcd peer)",
        "port 8132 (konnectivity agent)", "port 8133 (konnectivity admin)", "port 10250 (kubelet)"}
    for c in checks:
        assert set(c) == {"name", "status", "value", "hint"}
        assert c["status"] in ("pass", "warn", "fail") and c["value"]
    any_failed = any(c["status"] == "fail" for c in checks)
    assert r.returncode == (4 if any_failed else 0), r.stderr
    assert not (tmp_path / "data").exists()  # a preflight creates nothing


def test_controller_only_on_free_ports_passes_with_warnings_for_absent_kube_binaries(tmp_path: Path) -> None:
    # etcd is installed on this machine (setup.sh); the kube binaries are not: warn, not fail
    cfg = config_with_ports(tmp_path, free_ports(6))
    r = run_kagent("-c", str(cfg), "--data-dir", str(tmp_path / "data"), "sysinfo", "--controller")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert all(line.startswith(("PASS  ", "WARN  ", "      hint: ")) for line in lines)
    assert any(line.startswith("PASS  binary etcd: ") for line in lines)
    names = {line.split("  ", 1)[1].split(":", 1)[0] for line in lines if not line.startswith(" ")}
    assert CONTROLLER_CHECKS <= names
    assert not names & {"binary containerd", "cgroup version", "port 10250 (kubelet)"}


def test_port_in_use_fails_with_exit_4_and_names_it(tmp_path: Path) -> None:
    ports = free_ports(6)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[0]))
        holder.listen()
        cfg = config_with_ports(tmp_path, ports)
        r = run_kagent("-c", str(cfg), "--data-dir", str(tmp_path), "sysinfo", "--controller")
    assert r.returncode == 4
    assert f"FAIL  port {ports[0]} (kube-apiserver): in use by pid " in r.stdout
    assert r.stderr.splitlines()[0].startswith("error: sysinfo: 1 of ")
    assert f"checks failed: port {ports[0]} (kube-apiserver)" in r.stderr


def test_missing_required_binary_fails(tmp_path: Path) -> None:
    # storage kine: kine is the required binary, and it is installed nowhere (no wheel ships it)
    cfg = config_with_ports(tmp_path, free_ports(6))
    cfg.write_text(cfg.read_text().replace("storage: {", "storage: {type: kine, "))
    r = run_kagent("-c", str(cfg), "--data-dir", str(tmp_path), "sysinfo", "--controller", "-o", "json",
                   env={"PATH": str(tmp_path / "empty")})
    assert r.returncode == 4
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert checks["binary kine"] == {"name": "binary kine", "status": "fail", "value": "not found",
                                     "hint": "put kine in <data-dir>/bin or on PATH"}
    assert "binary etcd" not in checks
    assert r.stderr.splitlines()[0].endswith("checks failed: binary kine")


def test_bad_output_format_is_a_usage_error() -> None:
    r = run_kagent("sysinfo", "-o", "yaml")
    assert r.returncode == 2
