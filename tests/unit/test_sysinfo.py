"""sysinfo checks against fake /proc, /sys and /lib/modules trees made in tmp dirs."""

from __future__ import annotations

import socket
import os
from pathlib import Path

import pytest

from kagent import sysinfo as si
from kagent.config.load import load_config
from kagent.paths import Paths
from kagent.sysinfo import Role, Status

RELEASE = "6.1.0-28-amd64"
V2_MOUNTS = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
V1_MOUNTS = (
    "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
)
V1_CGROUPS = (
    "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
    "cpu\t1\t1\t1\nmemory\t4\t12\t1\npids\t8\t1\t1\nblkio\t7\t1\t1\n"
)
MEMINFO = "MemTotal:        8049180 kB\nMemFree:         1000000 kB\n"


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


class FakeHost:
    """A fake machine: proc, sys and modules roots under one tmp dir."""

    def __init__(self, base: Path) -> None:
        self.proc = base / "proc"
        self.sys = base / "sys"
        self.mods = base / "lib/modules"
        for d in (self.proc, self.sys / "module", self.mods):
            d.mkdir(parents=True)
        self.proc_file("sys/kernel/osrelease", RELEASE + "\n")
        self.proc_file("meminfo", MEMINFO)

    def proc_file(self, rel: str, text: str) -> FakeHost:
        write(self.proc, rel, text)
        return self

    def sys_file(self, rel: str, text: str) -> FakeHost:
        write(self.sys, rel, text)
        return self

    def module_file(self, rel: str, text: str = "") -> FakeHost:
        write(self.mods / RELEASE, rel, text)
        return self

    def cgroup_v2(self, controllers: str = "cpuset cpu io memory hugetlb pids rdma misc") -> FakeHost:
        self.proc_file("mounts", V2_MOUNTS)
        return self.sys_file("fs/cgroup/cgroup.controllers", controllers + "\n")

    def kernel(self) -> si.KernelReadings:
        return si.read_kernel(proc_root=self.proc, sys_root=self.sys, modules_root=self.mods)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def by_name(checks: list[si.Check]) -> dict[str, si.Check]:
    return {c.name: c for c in checks}


# ---- kernel version -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "status"),
    [("6.1.0-28-amd64", Status.PASS), ("4.15.0", Status.PASS), ("4.4.0-210-generic", Status.WARN),
     ("3.10.0-1160.el7.x86_64", Status.WARN), ("3.2.0", Status.FAIL), ("2.6.32-754.el6", Status.FAIL)],
)
def test_kernel_version_thresholds(host: FakeHost, release: str, status: Status) -> None:
    host.proc_file("sys/kernel/osrelease", release + "\n")
    c = si.check_kernel(host.kernel().osrelease)
    assert (c.status, c.value) == (status, release)


def test_kernel_version_unreadable_fails(host: FakeHost) -> None:
    (host.proc / "sys/kernel/osrelease").unlink()
    c = si.check_kernel(host.kernel().osrelease)
    assert c.status is Status.FAIL and "unknown" in c.value


# ---- cgroups ------------------------------------------------------------------------------


def test_cgroup_v2_with_all_controllers_passes(host: FakeHost) -> None:
    k = host.cgroup_v2().kernel()
    mode = si.cgroup_mode(k.mounts, k.cgroup2_controllers)
    assert si.check_cgroup_version(mode) == si.Check("cgroup version", Status.PASS, "v2")
    checks = si.check_cgroup_controllers(mode, k.proc_cgroups, k.cgroup2_controllers)
    assert [(c.name, c.status) for c in checks] == [
        ("cgroup controller cpu", Status.PASS), ("cgroup controller memory", Status.PASS), ("cgroup controller pids", Status.PASS)]


def test_cgroup_v2_missing_controller_fails_naming_what_is_there(host: FakeHost) -> None:
    k = host.cgroup_v2("cpuset cpu io").kernel()
    checks = by_name(si.check_cgroup_controllers("v2", k.proc_cgroups, k.cgroup2_controllers))
    assert checks["cgroup controller cpu"].status is Status.PASS
    mem = checks["cgroup controller memory"]
    assert mem.status is Status.FAIL and mem.value == "not in cgroup.controllers (cpu cpuset io)"
    assert checks["cgroup controller pids"].status is Status.FAIL


def test_cgroup_v1_hybrid_warns_and_reads_proc_cgroups(host: FakeHost) -> None:
    k = host.proc_file("mounts", V1_MOUNTS).proc_file("cgroups", V1_CGROUPS).kernel()
    mode = si.cgroup_mode(k.mounts, k.cgroup2_controllers)
    assert mode == "v1"
    assert si.check_cgroup_version(mode).status is Status.WARN
    checks = by_name(si.check_cgroup_controllers(mode, k.proc_cgroups, k.cgroup2_controllers))
    assert checks["cgroup controller memory"].value == "enabled (cgroup v1, hierarchy 4)"


def test_cgroup_v1_disabled_memory_fails_with_cmdline_hint(host: FakeHost) -> None:
    k = host.proc_file("mounts", V1_MOUNTS).proc_file("cgroups", V1_CGROUPS.replace("memory\t4\t12\t1", "memory\t0\t1\t0")).kernel()
    mem = by_name(si.check_cgroup_controllers("v1", k.proc_cgroups, None))["cgroup controller memory"]
    assert mem.status is Status.FAIL and mem.value == "disabled (cgroup v1)"
    assert "cgroup_disable=memory" in (mem.hint or "")


def test_no_cgroup_filesystem_fails(host: FakeHost) -> None:
    k = host.proc_file("mounts", "proc /proc proc rw 0 0\n").kernel()
    mode = si.cgroup_mode(k.mounts, k.cgroup2_controllers)
    assert mode is None
    assert si.check_cgroup_version(mode).status is Status.FAIL
    assert all(c.status is Status.FAIL for c in si.check_cgroup_controllers(mode, k.proc_cgroups, k.cgroup2_controllers))


# ---- sysctls ------------------------------------------------------------------------------


def test_ip_forward_values(host: FakeHost) -> None:
    host.proc_file("sys/net/ipv4/ip_forward", "1\n")
    assert si.check_ip_forward(host.kernel().sysctls[si.IP_FORWARD]).status is Status.PASS
    host.proc_file("sys/net/ipv4/ip_forward", "0\n")
    c = si.check_ip_forward(host.kernel().sysctls[si.IP_FORWARD])
    assert (c.status, c.value) == (Status.WARN, "0")
    assert "sysctl -w net.ipv4.ip_forward=1" in (c.hint or "")
    (host.proc / "sys/net/ipv4/ip_forward").unlink()
    assert si.check_ip_forward(host.kernel().sysctls[si.IP_FORWARD]).status is Status.FAIL


def test_bridge_sysctls_checked_only_when_br_netfilter_is_there(host: FakeHost) -> None:
    key = "net.bridge.bridge-nf-call-iptables"
    c = si.check_bridge_sysctl(key, host.kernel().sysctls[key])
    assert c.status is Status.WARN and c.value.startswith("not present (br_netfilter not loaded)")
    host.proc_file("sys/net/bridge/bridge-nf-call-iptables", "0\n")
    c = si.check_bridge_sysctl(key, host.kernel().sysctls[key])
    assert (c.status, c.value) == (Status.WARN, "0")
    host.proc_file("sys/net/bridge/bridge-nf-call-iptables", "1\n")
    assert si.check_bridge_sysctl(key, host.kernel().sysctls[key]).status is Status.PASS


# ---- kernel modules -----------------------------------------------------------------------


def test_module_loaded_in_proc_modules(host: FakeHost) -> None:
    host.proc_file("modules", "overlay 151552 0 - Live 0x0000000000000000\nbr_netfilter 32768 0 - Live 0x0\n")
    k = host.kernel()
    assert si.check_module("overlay", k) == si.Check("kernel module overlay", Status.PASS, "loaded")
    assert si.check_module("br_netfilter", k).value == "loaded"


def test_module_built_in_from_modules_builtin(host: FakeHost) -> None:
    host.proc_file("modules", "").module_file("modules.builtin", "kernel/fs/overlayfs/overlay.ko\nkernel/net/netfilter/nf_conntrack.ko\n")
    k = host.kernel()
    assert si.check_module("overlay", k).value == "built in (modules.builtin)"
    assert si.check_module("nf_conntrack", k).status is Status.PASS


def test_module_only_loadable_warns_with_the_file(host: FakeHost) -> None:
    host.proc_file("modules", "").module_file("kernel/net/bridge/br_netfilter.ko.xz")
    c = si.check_module("br_netfilter", host.kernel())
    assert c.status is Status.WARN
    assert c.value == f"not loaded, loadable ({host.mods / RELEASE / 'kernel/net/bridge/br_netfilter.ko.xz'})"
    assert "modprobe br_netfilter" in (c.hint or "")


def test_module_loadable_found_through_modules_dep(host: FakeHost) -> None:
    # modules.dep names the file; it is read instead of walking the tree
    host.proc_file("modules", "").module_file("modules.dep", "kernel/fs/overlayfs/overlay.ko.zst:\nkernel/net/x.ko: kernel/net/y.ko\n")
    c = si.check_module("overlay", host.kernel())
    assert c.status is Status.WARN and c.value.endswith("kernel/fs/overlayfs/overlay.ko.zst)")


def test_module_missing_everywhere_fails(host: FakeHost) -> None:
    host.proc_file("modules", "ext4 1 0 - Live 0x0\n").module_file("kernel/fs/ext4/ext4.ko")
    c = si.check_module("overlay", host.kernel())
    assert c.status is Status.FAIL
    assert c.value == f"not loaded, not built in, no module file under {host.mods}/{RELEASE}"


def test_module_built_in_on_a_kernel_without_module_support(host: FakeHost) -> None:
    # CONFIG_MODULES=n: no /proc/modules, no /lib/modules; the features show in /sys and /proc
    (host.sys / "module/nf_conntrack").mkdir()
    host.proc_file("filesystems", "nodev\tsysfs\nnodev\toverlay\n")
    host.proc_file("sys/net/bridge/bridge-nf-call-iptables", "1\n")
    k = host.kernel()
    assert k.proc_modules is None
    assert si.check_module("nf_conntrack", k).value == "built in (/sys/module)"
    assert si.check_module("overlay", k).value == "built in (overlay listed in /proc/filesystems)"
    assert si.check_module("br_netfilter", k).value == "built in (/proc/sys/net/bridge present)"


# ---- memory, disk, root ---------------------------------------------------------------------


def test_memory_thresholds_per_role(host: FakeHost) -> None:
    host.proc_file("meminfo", "MemTotal:  786432 kB\n")  # 768 MiB
    meminfo = host.kernel().meminfo
    assert si.check_memory(meminfo, {Role.WORKER}).status is Status.PASS
    c = si.check_memory(meminfo, {Role.CONTROLLER})
    assert (c.status, c.value) == (Status.WARN, "768 MiB total")
    assert si.check_memory(None, {Role.WORKER}).status is Status.WARN


def test_disk_probe_uses_nearest_existing_parent(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "data"
    d = si.probe_disk(target)
    assert d.target == str(target) and d.probed == str(tmp_path)
    assert 0 < d.free <= d.total
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize(("free", "status"), [(100 * si.MiB, Status.FAIL), (1 * si.GiB, Status.WARN), (50 * si.GiB, Status.PASS)])
def test_disk_thresholds(free: int, status: Status) -> None:
    c = si.check_disk(si.DiskProbe("/d", "/d", free=free, total=100 * si.GiB))
    assert c.status is status
    assert c.value.startswith(si._size(free) + " free of 100.0 GiB on /d")


def test_root_check_depends_on_role() -> None:
    assert si.check_root(0, {Role.WORKER}).status is Status.PASS
    assert si.check_root(1000, {Role.CONTROLLER, Role.WORKER}).status is Status.FAIL
    c = si.check_root(1000, {Role.CONTROLLER})
    assert (c.status, c.value) == (Status.WARN, "no (uid 1000)")


# ---- binaries and ports (real probes on fake bin dirs and real sockets) -----------------------


def fake_binary(folder: Path, name: str, output: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f"#!/bin/sh\necho '{output}'\n")
    p.chmod(0o755)
    return p


def test_binaries_required_fail_optional_warn_found_pass(tmp_path: Path) -> None:
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    etcd = fake_binary(paths.bin_dir, "etcd", "etcd Version: 3.5.21")
    needs = si.Needs(binaries=(("etcd", True), ("containerd", True), ("kubelet", False)), ports=())
    probes = si.probe_binaries([n for n, _ in needs.binaries], paths, search_path=str(tmp_path / "empty"))
    checks = by_name(si.evaluate(si.Readings(kernel=si.KernelReadings(), uid=0, disk=si.DiskProbe("/", "/", 10 * si.GiB, 20 * si.GiB),
                                             binaries=probes), {Role.CONTROLLER}, needs))
    assert checks["binary etcd"] == si.Check("binary etcd", Status.PASS, f"{etcd} (3.5.21)")
    assert checks["binary containerd"].status is Status.FAIL
    assert checks["binary containerd"].hint == "put containerd in <data-dir>/bin or on PATH"
    assert checks["binary kubelet"].status is Status.WARN


def test_port_in_use_fails_naming_the_holder() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        probe = si.probe_port(port)
    assert probe.free is False
    assert probe.holder is not None and probe.holder.startswith(f"pid {os.getpid()} (")
    c = si.check_port(probe, "etcd client")
    assert c.name == f"port {port} (etcd client)"
    assert c.status is Status.FAIL and c.value == f"in use by {probe.holder}"
    # released again: the port is free now
    assert si.probe_port(port).free is True


def test_role_needs_follow_the_config() -> None:
    cfg = load_config("spec:\n  api: {port: 7443}\n  storage: {type: kine}\n", host_address="10.0.0.5")
    needs = si.role_needs({Role.CONTROLLER}, cfg)
    assert needs.binaries[0] == ("kine", True)
    assert ("etcd", True) not in needs.binaries
    assert [p for p, _ in needs.ports] == [7443, 9443, 8132, 8133]  # kine: no etcd ports
    both = si.role_needs({Role.CONTROLLER, Role.WORKER}, load_config(None, host_address="10.0.0.5"))
    assert [p for p, _ in both.ports] == [6443, 9443, 2379, 2380, 8132, 8133, 10250]
    assert ("containerd", True) in both.binaries and ("kubelet", False) in both.binaries


# ---- the whole run over a fake host ---------------------------------------------------------


def test_evaluate_a_healthy_fake_worker(host: FakeHost, tmp_path: Path) -> None:
    host.cgroup_v2().proc_file("sys/net/ipv4/ip_forward", "1\n").proc_file("modules", "overlay 1 0 - Live 0x0\n")
    host.proc_file("sys/net/bridge/bridge-nf-call-iptables", "1\n").proc_file("sys/net/bridge/bridge-nf-call-ip6tables", "1\n")
    host.module_file("modules.builtin", "kernel/net/netfilter/nf_conntrack.ko\n").module_file("kernel/net/bridge/br_netfilter.ko")
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    for name, out in (("containerd", "containerd github.com/containerd/containerd v1.7.28 abc"), ("runc", "runc version 1.3.3"),
                      ("kubelet", "Kubernetes v1.34.2")):
        fake_binary(tmp_path / "path", name, out)
    needs = si.Needs(binaries=(("containerd", True), ("runc", True), ("kubelet", False)), ports=())
    readings = si.read_host(needs, paths, proc_root=host.proc, sys_root=host.sys, modules_root=host.mods,
                            search_path=str(tmp_path / "path"), uid=0)
    checks = si.evaluate(readings, {Role.WORKER}, needs)
    assert [c.name for c in checks] == [
        "kernel version", "cgroup version", "cgroup controller cpu", "cgroup controller memory", "cgroup controller pids",
        "sysctl net.ipv4.ip_forward", "sysctl net.bridge.bridge-nf-call-iptables", "sysctl net.bridge.bridge-nf-call-ip6tables",
        "kernel module overlay", "kernel module br_netfilter", "kernel module nf_conntrack",
        "memory", "data dir free space", "running as root", "binary containerd", "binary runc", "binary kubelet"]
    assert {c.name: c.status for c in checks if c.status is not Status.PASS} == {}
    assert by_name(checks)["binary kubelet"].value.endswith("(1.34.2)")
    assert si.failed(checks) == []


def test_controller_only_skips_worker_checks(host: FakeHost, tmp_path: Path) -> None:
    needs = si.Needs(binaries=(), ports=())
    readings = si.read_host(needs, Paths.build(tmp_path / "d", tmp_path / "r"), proc_root=host.proc, sys_root=host.sys,
                            modules_root=host.mods, uid=1000)
    names = [c.name for c in si.evaluate(readings, {Role.CONTROLLER}, needs)]
    assert names == ["kernel version", "memory", "data dir free space", "running as root"]


def test_render_text_and_json() -> None:
    checks = [si.Check("kernel version", Status.PASS, "6.1.0"),
              si.Check("binary etcd", Status.FAIL, "not found", "put etcd in <data-dir>/bin or on PATH"),
              si.Check("memory", Status.PASS, "8 GiB total", "never shown for a pass")]
    assert si.render_text(checks) == (
        "PASS  kernel version: 6.1.0\n"
        "FAIL  binary etcd: not found\n"
        "      hint: put etcd in <data-dir>/bin or on PATH\n"
        "PASS  memory: 8 GiB total\n")
    import json

    assert json.loads(si.render_json(checks))[1] == {"name": "binary etcd", "status": "fail", "value": "not found",
                                                    "hint": "put etcd in <data-dir>/bin or on PATH"}


# ---- component users (spec.install.users) ------------------------------------------------------

def test_sysinfo_reports_each_component_user() -> None:
    from kagent.config.load import load_config
    from kagent.sysinfo import check_user, component_users

    cfg = load_config("spec:\n  install:\n    users: {kubeSchedulerUser: kube-apiserver}\n", host_address="10.0.0.5")
    assert component_users(cfg) == [("etcd", "etcd"), ("kube-apiserver", "kube-apiserver, kube-controller-manager, kube-scheduler"),
                                    ("konnectivity-server", "konnectivity-server")]
    assert check_user("etcd", "etcd", 102, 0).status.value == "pass"
    missing = check_user("kube-apiserver", "kube-apiserver", None, 0)
    assert missing.status.value == "warn" and "created on first start" in missing.value
    assert check_user("etcd", "etcd", 102, 1000).status.value == "warn"
    assert check_user("root", "etcd", 0, 0).value == "etcd: run as root (spec.install.users)"


def test_sysinfo_cli_shows_the_users(tmp_path) -> None:
    from tests.conftest import run_kagent

    cfg = tmp_path / "k.yaml"
    cfg.write_text("spec:\n  install:\n    users: {etcdUser: etcd, kubeAPIserverUser: kagent-no-such-user}\n")
    r = run_kagent("sysinfo", "--controller", "-c", str(cfg), "--data-dir", str(tmp_path / "d"))
    lines = r.stdout.splitlines()
    assert any(ln.startswith("PASS  user etcd: etcd (uid ") for ln in lines), r.stdout
    assert "WARN  user kagent-no-such-user: kube-apiserver, kube-controller-manager: missing, created on first start (useradd --system)" in lines
