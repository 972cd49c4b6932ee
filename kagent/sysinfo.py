"""Preflight checks (``kagent sysinfo``): each one passes, warns or fails with the value seen.

Two halves:

- ``read_host`` / ``probe_*`` (edge) read what the checks need: files under a proc root, a sys
  root and a modules root (parameters, so tests hand in fake trees), the free space of the data
  dir, the binaries a role needs and whether its ports can be bound. They return frozen values.
- ``evaluate`` and the ``check_*`` functions (pure) turn those values into ``Check`` results.
  They never touch the machine.

Which checks run depends on the roles: a controller needs its storage binary and its ports; a
worker also needs cgroups, forwarding, the container kernel modules, root, containerd and runc.
kube-apiserver, kube-controller-manager, kube-scheduler, konnectivity-server and kubelet only
warn when absent: an etcd-only controller is a supported topology (DESIGN §3).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from kagent.node.kernel import loaded_modules

if TYPE_CHECKING:
    from kagent.config.model import ClusterConfig
    from kagent.paths import Paths

GiB = 1024**3
MiB = 1024**2

MIN_KERNEL = (3, 10)  # below this neither containerd nor etcd are supported
RECOMMENDED_KERNEL = (4, 15)  # cgroup v2 with the cpu controller
MIN_MEMORY = {"controller": 1 * GiB, "worker": 512 * MiB}
DISK_FAIL_BELOW = 512 * MiB
DISK_WARN_BELOW = 2 * GiB  # etcd's default backend quota

CGROUP_CONTROLLERS = ("cpu", "memory", "pids")
MODULES = ("overlay", "br_netfilter", "nf_conntrack")
IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
CONNTRACK_MAX = "net.netfilter.nf_conntrack_max"
SYSCTLS = (IP_FORWARD, *BRIDGE_SYSCTLS, CONNTRACK_MAX)
KO_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
# why a missing optional binary is only a warning
OPTIONAL_DEFAULT = "an etcd-only controller runs without it"
OPTIONAL_WITHOUT = {"kubelet": "a worker with --disable-components kubelet runs without it"}


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class Role(StrEnum):
    CONTROLLER = "controller"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    value: str
    hint: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "status": self.status.value, "value": self.value, "hint": self.hint}


# ---- what was read ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BinaryProbe:
    name: str
    path: str | None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class PortProbe:
    port: int
    free: bool
    holder: str | None = None  # "pid 123 (etcd)" when it could be told
    error: str | None = None  # why the bind failed, when not "address in use"


@dataclass(frozen=True, slots=True)
class DiskProbe:
    target: str  # the data dir
    probed: str | None  # the nearest existing folder (None: nothing could be statted)
    free: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelReadings:
    """The text of the files the kernel checks read; None where a file was absent or unreadable."""

    proc_root: str = "/proc"
    modules_root: str = "/lib/modules"
    osrelease: str | None = None
    mounts: str | None = None
    proc_cgroups: str | None = None
    cgroup2_controllers: str | None = None
    sysctls: Mapping[str, str | None] = field(default_factory=dict)
    proc_modules: str | None = None
    modules_builtin: str | None = None
    module_files: tuple[str, ...] = ()  # paths of module files under <modules root>/<release>
    sys_modules: frozenset[str] = frozenset()
    filesystems: str | None = None
    meminfo: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Readings:
    kernel: KernelReadings
    uid: int
    disk: DiskProbe
    binaries: tuple[BinaryProbe, ...] = ()
    ports: tuple[PortProbe, ...] = ()


# ---- what a role needs (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needs:
    """Binaries (name -> required) and ports (port -> component) of the requested roles."""

    binaries: tuple[tuple[str, bool], ...]
    ports: tuple[tuple[int, str], ...]


def role_needs(roles: Iterable[Role], cfg: ClusterConfig) -> Needs:
    roles = set(roles)
    binaries: list[tuple[str, bool]] = []
    ports: list[tuple[int, str]] = []
    if Role.CONTROLLER in roles:
        storage = cfg.storage.type.value
        binaries.append((storage, True))
        binaries += [(n, False) for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server")]
        ports.append((cfg.api.port, "kube-apiserver"))
        ports.append((cfg.api.control_api_port, "control-api"))
        if storage == "etcd":
            ports.append((cfg.storage.etcd.client_port, "etcd client"))
            ports.append((cfg.storage.etcd.peer_port, "etcd peer"))
        ports.append((cfg.konnectivity.agent_port, "konnectivity agent"))
        ports.append((cfg.konnectivity.admin_port, "konnectivity admin"))
    if Role.WORKER in roles:
        binaries += [("containerd", True), ("runc", True), ("kubelet", False)]
        ports.append((10250, "kubelet"))
    return Needs(binaries=tuple(binaries), ports=tuple(ports))


# ---- pure checks ----------------------------------------------------------------------------


def _release_tuple(release: str) -> tuple[int, ...] | None:
    head = release.strip().split("-", 1)[0].split("+", 1)[0]
    parts: list[int] = []
    for p in head.split("."):
        digits = "".join(c for c in p if c.isdigit()) if p else ""
        if not digits or not p.startswith(digits):
            break
        parts.append(int(digits))
    return tuple(parts) if len(parts) >= 2 else None


def check_kernel(osrelease: str | None) -> Check:
    name = "kernel version"
    if osrelease is None:
        return Check(name, Status.FAIL, "unknown (sys/kernel/osrelease not readable)", "is /proc mounted?")
    rel = osrelease.strip()
    ver = _release_tuple(rel)
    if ver is None:
        return Check(name, Status.WARN, f"{rel} (not a version kagent can compare)")
    if ver[:2] < MIN_KERNEL:
        return Check(name, Status.FAIL, rel, f"kagent needs Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer")
    if ver[:2] < RECOMMENDED_KERNEL:
        return Check(name, Status.WARN, rel, f"Linux {RECOMMENDED_KERNEL[0]}.{RECOMMENDED_KERNEL[1]}+ is recommended (cgroup v2)")
    return Check(name, Status.PASS, rel)


def cgroup_mode(mounts: str | None, cgroup2_controllers: str | None) -> str | None:
    """Pure. ``v2`` (unified at /sys/fs/cgroup), ``v1`` (legacy or hybrid) or None (none mounted)."""
    if mounts is None:
        return "v2" if cgroup2_controllers is not None else None
    v1 = False
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mountpoint, fstype = fields[1], fields[2]
        if fstype == "cgroup2" and mountpoint == "/sys/fs/cgroup":
            return "v2"
        if fstype == "cgroup":
            v1 = True
    return "v1" if v1 else None


def check_cgroup_version(mode: str | None) -> Check:
    name = "cgroup version"
    if mode == "v2":
        return Check(name, Status.PASS, "v2")
    if mode == "v1":
        return Check(name, Status.WARN, "v1", "kubelet deprecates cgroup v1; boot with systemd.unified_cgroup_hierarchy=1 for v2")
    return Check(name, Status.FAIL, "no cgroup filesystem mounted", "mount cgroup2 on /sys/fs/cgroup")


def v1_controllers(proc_cgroups: str | None) -> dict[str, tuple[int, bool]]:
    """Pure. /proc/cgroups -> {controller: (hierarchy id, enabled)}."""
    out: dict[str, tuple[int, bool]] = {}
    for line in (proc_cgroups or "").splitlines():
        if line.startswith("#"):
            continue
        f = line.split()
        if len(f) >= 4 and f[1].isdigit() and f[3].isdigit():
            out[f[0]] = (int(f[1]), f[3] == "1")
    return out


def check_cgroup_controllers(mode: str | None, proc_cgroups: str | None, cgroup2_controllers: str | None) -> list[Check]:
    checks: list[Check] = []
    v2 = set((cgroup2_controllers or "").split())
    v1 = v1_controllers(proc_cgroups)
    for ctl in CGROUP_CONTROLLERS:
        name = f"cgroup controller {ctl}"
        if mode == "v2":
            if ctl in v2:
                checks.append(Check(name, Status.PASS, "enabled (cgroup v2)"))
            else:
                checks.append(Check(name, Status.FAIL, f"not in cgroup.controllers ({' '.join(sorted(v2)) or 'empty'})",
                                    f"enable the {ctl} controller (kernel config or cgroup delegation)"))
        elif mode == "v1":
            hier, enabled = v1.get(ctl, (0, False))
            if enabled and hier > 0:
                checks.append(Check(name, Status.PASS, f"enabled (cgroup v1, hierarchy {hier})"))
            elif ctl in v1:
                why = "disabled" if not enabled else "not mounted"
                checks.append(Check(name, Status.FAIL, f"{why} (cgroup v1)",
                                    f"remove cgroup_disable={ctl} from the kernel command line" if not enabled
                                    else f"mount the {ctl} hierarchy under /sys/fs/cgroup"))
            else:
                checks.append(Check(name, Status.FAIL, "not in /proc/cgroups", f"the kernel lacks the {ctl} cgroup controller"))
        else:
            checks.append(Check(name, Status.FAIL, "unknown (no cgroup filesystem)", "mount cgroup2 on /sys/fs/cgroup"))
    return checks


def check_ip_forward(value: str | None) -> Check:
    name = f"sysctl {IP_FORWARD}"
    if value is None:
        return Check(name, Status.FAIL, "not present", "is /proc/sys mounted?")
    v = value.strip()
    if v == "1":
        return Check(name, Status.PASS, v)
    return Check(name, Status.WARN, v, f"kagent worker sets it to 1 at start (needs a writable /proc/sys), or: sysctl -w {IP_FORWARD}=1")


def check_bridge_sysctl(key: str, value: str | None) -> Check:
    name = f"sysctl {key}"
    if value is None:
        return Check(name, Status.WARN, "not present (br_netfilter not loaded), not checked",
                     "kagent worker loads br_netfilter at start, or: modprobe br_netfilter")
    v = value.strip()
    if v == "1":
        return Check(name, Status.PASS, v)
    return Check(name, Status.WARN, v, f"kagent worker sets it to 1 at start, or: sysctl -w {key}=1")


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _ko_name(path: str) -> str | None:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    for suf in KO_SUFFIXES:
        if base.endswith(suf):
            return _norm(base[: -len(suf)])
    return None


def _builtin_evidence(name: str, k: KernelReadings) -> str | None:
    """Signs in /proc that the kernel has the module's feature although no module is loaded."""
    if name == "overlay" and k.filesystems is not None:
        if any(line.split()[-1:] == ["overlay"] for line in k.filesystems.splitlines()):
            return "overlay listed in /proc/filesystems"
    if name == "br_netfilter" and k.sysctls.get(BRIDGE_SYSCTLS[0]) is not None:
        return "/proc/sys/net/bridge present"
    if name == "nf_conntrack" and k.sysctls.get(CONNTRACK_MAX) is not None:
        return "/proc/sys/net/netfilter present"
    return None


def check_module(name: str, k: KernelReadings) -> Check:
    """Loaded (/proc/modules), built in (modules.builtin, /sys/module or the feature visible in
    /proc), loadable (a module file under <modules root>/<release>: warn) or missing (fail)."""
    title = f"kernel module {name}"
    want = _norm(name)
    if want in {_norm(m) for m in loaded_modules(k.proc_modules or "")}:
        return Check(title, Status.PASS, "loaded")
    if k.modules_builtin is not None and any(_ko_name(line) == want for line in k.modules_builtin.splitlines()):
        return Check(title, Status.PASS, "built in (modules.builtin)")
    if want in {_norm(m) for m in k.sys_modules}:
        return Check(title, Status.PASS, "built in (/sys/module)")
    evidence = _builtin_evidence(want, k)
    if evidence:
        return Check(title, Status.PASS, f"built in ({evidence})")
    release = (k.osrelease or "").strip()
    for path in k.module_files:
        if _ko_name(path) == want:
            return Check(title, Status.WARN, f"not loaded, loadable ({path})", f"kagent worker loads it at start, or: modprobe {name}")
    where = f"{k.modules_root}/{release}" if release else k.modules_root
    return Check(title, Status.FAIL, f"not loaded, not built in, no module file under {where}",
                 f"install the kernel modules for {release or 'this kernel'} (e.g. the linux-image package), then: modprobe {name}")


def mem_total(meminfo: str | None) -> int | None:
    """Pure. MemTotal from /proc/meminfo, in bytes."""
    for line in (meminfo or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                factor = 1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1
                return int(parts[1]) * factor
    return None


def _size(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    return f"{n / MiB:.0f} MiB"


def check_memory(meminfo: str | None, roles: Iterable[Role]) -> Check:
    name = "memory"
    total = mem_total(meminfo)
    if total is None:
        return Check(name, Status.WARN, "unknown (MemTotal not in /proc/meminfo)")
    need = max(MIN_MEMORY[r.value] for r in roles)
    if total < need:
        return Check(name, Status.WARN, f"{_size(total)} total", f"at least {_size(need)} is recommended for this role")
    return Check(name, Status.PASS, f"{_size(total)} total")


def check_disk(disk: DiskProbe) -> Check:
    name = "data dir free space"
    if disk.probed is None:
        return Check(name, Status.FAIL, f"{disk.target}: no existing parent folder could be inspected")
    where = disk.target if disk.probed == disk.target else f"{disk.probed} (the data dir {disk.target} does not exist yet)"
    value = f"{_size(disk.free)} free of {_size(disk.total)} on {where}"
    if disk.free < DISK_FAIL_BELOW:
        return Check(name, Status.FAIL, value, f"free at least {_size(DISK_WARN_BELOW)} or use another --data-dir")
    if disk.free < DISK_WARN_BELOW:
        return Check(name, Status.WARN, value, f"etcd wants {_size(DISK_WARN_BELOW)}; free space or use another --data-dir")
    return Check(name, Status.PASS, value)


def check_root(uid: int, roles: Iterable[Role]) -> Check:
    name = "running as root"
    if uid == 0:
        return Check(name, Status.PASS, "yes (uid 0)")
    if Role.WORKER in set(roles):
        return Check(name, Status.FAIL, f"no (uid {uid})", "containerd and kubelet need root: run as root")
    return Check(name, Status.WARN, f"no (uid {uid})",
                 "a controller runs unprivileged with --data-dir/--run-dir it owns; the defaults under /var/lib and /run need root")


def check_binary(probe: BinaryProbe, required: bool) -> Check:
    from kagent.bins import missing_hint

    name = f"binary {probe.name}"
    if probe.path is None:
        if required:
            return Check(name, Status.FAIL, "not found", missing_hint(probe.name))
        return Check(name, Status.WARN, f"not found (optional: {OPTIONAL_WITHOUT.get(probe.name, OPTIONAL_DEFAULT)})",
                     missing_hint(probe.name))
    version = probe.version or "no version printed"
    return Check(name, Status.PASS, f"{probe.path} ({version})")


def check_port(probe: PortProbe, component: str) -> Check:
    name = f"port {probe.port} ({component})"
    if probe.free:
        return Check(name, Status.PASS, "free")
    if probe.error:
        return Check(name, Status.FAIL, f"cannot bind: {probe.error}")
    holder = f"in use by {probe.holder}" if probe.holder else "in use"
    return Check(name, Status.FAIL, holder, "stop what holds it, or move this component to another port in the config")


def evaluate(readings: Readings, roles: Iterable[Role], needs: Needs) -> list[Check]:
    """Pure. Every check for ``roles`` over what was read, in a stable order."""
    roles = set(roles) or {Role.CONTROLLER, Role.WORKER}
    k = readings.kernel
    worker = Role.WORKER in roles
    checks = [check_kernel(k.osrelease)]
    if worker:
        mode = cgroup_mode(k.mounts, k.cgroup2_controllers)
        checks.append(check_cgroup_version(mode))
        checks += check_cgroup_controllers(mode, k.proc_cgroups, k.cgroup2_controllers)
        checks.append(check_ip_forward(k.sysctls.get(IP_FORWARD)))
        checks += [check_bridge_sysctl(key, k.sysctls.get(key)) for key in BRIDGE_SYSCTLS]
        checks += [check_module(m, k) for m in MODULES]
    checks.append(check_memory(k.meminfo, roles))
    checks.append(check_disk(readings.disk))
    checks.append(check_root(readings.uid, roles))
    found = {b.name: b for b in readings.binaries}
    for bname, required in needs.binaries:
        checks.append(check_binary(found.get(bname, BinaryProbe(bname, None)), required))
    probed = {p.port: p for p in readings.ports}
    for port, component in needs.ports:
        checks.append(check_port(probed.get(port, PortProbe(port, False, error="not probed")), component))
    return checks


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.status is Status.FAIL]


def render_text(checks: Sequence[Check]) -> str:
    """``PASS  <name>: <value>`` per check, with an indented ``hint:`` line under warn and fail."""
    lines: list[str] = []
    for c in checks:
        lines.append(f"{c.status.value.upper():<4}  {c.name}: {c.value}")
        if c.hint and c.status is not Status.PASS:
            lines.append(f"      hint: {c.hint}")
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    import json

    return json.dumps([c.as_dict() for c in checks], indent=2) + "\n"


# ---- edge: reading the machine ----------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _module_files(modules_dir: Path) -> tuple[str, ...]:
    """Module files of this kernel: from modules.dep when present (fast), else a walk."""
    dep = _read(modules_dir / "modules.dep")
    if dep is not None:
        return tuple(str(modules_dir / line.split(":", 1)[0]) for line in dep.splitlines() if ":" in line)
    if not modules_dir.is_dir():
        return ()
    found: list[str] = []
    for dirpath, _dirs, files in os.walk(modules_dir):
        found += [os.path.join(dirpath, f) for f in files if f.endswith(KO_SUFFIXES)]
    return tuple(sorted(found))


def read_kernel(*, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys"),
                modules_root: Path = Path("/lib/modules")) -> KernelReadings:
    """Read every file the kernel checks look at, under the given roots."""
    osrelease = _read(proc_root / "sys/kernel/osrelease")
    release = osrelease.strip() if osrelease else ""
    modules_dir = modules_root / release if release else None
    try:
        sys_modules = frozenset(p.name for p in (sys_root / "module").iterdir())
    except OSError:
        sys_modules = frozenset()
    return KernelReadings(
        proc_root=str(proc_root),
        modules_root=str(modules_root),
        osrelease=osrelease,
        mounts=_read(proc_root / "mounts"),
        proc_cgroups=_read(proc_root / "cgroups"),
        cgroup2_controllers=_read(sys_root / "fs/cgroup/cgroup.controllers"),
        sysctls={key: _read(proc_root / "sys" / key.replace(".", "/")) for key in SYSCTLS},
        proc_modules=_read(proc_root / "modules"),
        modules_builtin=_read(modules_dir / "modules.builtin") if modules_dir else None,
        module_files=_module_files(modules_dir) if modules_dir else (),
        sys_modules=sys_modules,
        filesystems=_read(proc_root / "filesystems"),
        meminfo=_read(proc_root / "meminfo"),
    )


def probe_disk(data_dir: Path) -> DiskProbe:
    """Free space where the data dir is (or will be: its nearest existing parent)."""
    target = Path(data_dir).absolute()
    probe = target
    while True:
        try:
            st = os.statvfs(probe)
            return DiskProbe(str(target), str(probe), free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize)
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                return DiskProbe(str(target), None)
            probe = probe.parent
        except OSError:
            return DiskProbe(str(target), None)


def probe_binaries(names: Iterable[str], paths: Paths, *, search_path: str | None = None) -> tuple[BinaryProbe, ...]:
    from kagent.bins import binary_version, find_binary

    out = []
    for name in names:
        path = find_binary(name, paths, search_path=search_path)
        out.append(BinaryProbe(name, str(path) if path else None, binary_version(path) if path else None))
    return tuple(out)


def port_holder(port: int) -> str | None:
    """``pid N (name)`` of the process listening on ``port``, when psutil can tell."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except Exception:  # psutil may be denied /proc/<pid>/fd of others: the check still reports "in use"
        return None
    return None


def probe_port(port: int, host: str = "0.0.0.0") -> PortProbe:
    """Try to bind ``host:port`` (TCP) and release it at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "in use"
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return PortProbe(port, False, holder=port_holder(port))
            return PortProbe(port, False, error=err.strerror or str(err))
    return PortProbe(port, True)


def read_host(needs: Needs, paths: Paths, *, proc_root: Path = Path("/proc"),
              sys_root: Path = Path("/sys"), modules_root: Path = Path("/lib/modules"),
              search_path: str | None = None, uid: int | None = None) -> Readings:
    """Everything ``evaluate`` needs, read from this machine (or from the given roots)."""
    return Readings(
        kernel=read_kernel(proc_root=proc_root, sys_root=sys_root, modules_root=modules_root),
        uid=os.geteuid() if uid is None else uid,
        disk=probe_disk(paths.data_dir),
        binaries=probe_binaries([n for n, _ in needs.binaries], paths, search_path=search_path),
        ports=tuple(probe_port(p) for p in dict.fromkeys(p for p, _ in needs.ports)),
    )


def component_users(cfg: ClusterConfig) -> list[tuple[str, str]]:
    """Pure. (user, the components that run as it) of a controller, from spec.install.users;
    containerd and the kubelet run as root."""
    u = cfg.users
    by_user: dict[str, list[str]] = {}
    pairs = (("etcd", u.etcd_user) if cfg.storage.type.value == "etcd" else ("kine", u.kine_user),
             ("kube-apiserver", u.kube_apiserver_user), ("kube-controller-manager", u.kube_apiserver_user),
             ("kube-scheduler", u.kube_scheduler_user), ("konnectivity-server", u.konnectivity_user))
    for component, user in pairs:
        by_user.setdefault(user, []).append(component)
    return [(user, ", ".join(comps)) for user, comps in by_user.items()]


def check_user(user: str, components: str, uid: int | None, agent_uid: int) -> Check:
    """Pure. One component user: exists (PASS), or will be created on first start (WARN)."""
    name = f"user {user}"
    if agent_uid != 0:
        return Check(name, Status.WARN, f"{components}: run as the agent's own user (kagent is not root)",
                     "run kagent as root for privilege separation")
    if user == "root":
        return Check(name, Status.WARN, f"{components}: run as root (spec.install.users)",
                     "name a dedicated system user in spec.install.users")
    if uid is None:
        return Check(name, Status.WARN, f"{components}: missing, created on first start (useradd --system)",
                     f"or create it yourself: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {user}")
    return Check(name, Status.PASS, f"{components} (uid {uid})")


def preflight(roles: Iterable[Role], cfg: ClusterConfig, paths: Paths) -> list[Check]:
    """Read this machine and run every check for ``roles`` (what ``kagent sysinfo`` prints)."""
    import pwd

    roles = set(roles) or {Role.CONTROLLER, Role.WORKER}
    needs = role_needs(roles, cfg)
    readings = read_host(needs, paths)
    checks = evaluate(readings, roles, needs)
    if Role.CONTROLLER in roles:
        for user, components in component_users(cfg):
            try:
                uid: int | None = pwd.getpwnam(user).pw_uid
            except KeyError:
                uid = None
            checks.append(check_user(user, components, uid, readings.uid))
    return checks
