"""Benchmark: kagent's supervisor engine vs runit vs supervisord vs a bare asyncio+pidfd floor.

    python bench/supervisor.py            # full run (a few minutes)
    python bench/supervisor.py --quick    # short run (about a minute)
    python bench/supervisor.py --children 20 --child-cmd "sleep 3600"

Before timing, kagent's modules are byte-compiled once (``compileall``, as bench/backup.py
does): an installed kagent has its bytecode, and with ``PYTHONDONTWRITEBYTECODE=1`` in the
environment each agent start would otherwise compile every module it imports from source.

What runs:
- kagent: ``run_agent_sync`` (the code path of ``kagent controller``/``worker``) in a child
  process of this script, over N components running ``--child-cmd``, health=None (no periodic
  probes: the idle numbers measure the engine, not a probe interval), RestartPolicy(min_uptime=1)
  (= supervisord's ``startsecs=1``), run dir on tmpfs (/dev/shm, like /run on a real host);
- runit: ``runsvdir -P`` over N service dirs on tmpfs, each ``run`` script ``exec``-ing
  ``--child-cmd`` (runsvdir -> one runsv per service -> the child); the child counts as back at
  the first exec of the new pid (its ``run`` script: the shell's exec of the command follows
  within a millisecond, which favours runit slightly), stopped by PID;
- supervisord: /usr/bin/supervisord -n with a generated config (unix socket, numprocs=N,
  autorestart=true, startsecs=1) in a temp dir, stopped by PID;
- floor: a few lines of asyncio + pidfd that only respawn (defined below).

How it measures: the kernel's process-events connector (netlink, needs root) reports every
fork/exec with a CLOCK_MONOTONIC timestamp, so "the child is back" is the exec of a new child
of the supervisor, to the microsecond, with no polling by this script. CPU and wake-ups
(voluntary + involuntary context switches over all threads) come from /proc/<pid>.

Metrics (each supervisor in the same run): restart latency after SIGKILL of a long-running
child (median, p95 over K kills), idle CPU and wake-ups over T s at N = 10/50/200, RSS, start-up
time for N = 50 (launch until all N children exec'd), mass restart of N = 200 (all killed at
once until all 200 exec'd again); start-up is the median of ``--startup-repeat`` (7)
launches and mass restart of ``--repeat`` (3) runs, the supervisors taking turns (one start-up
on this 2-core VM varies by up to 2x, the floor's included: with 3 launches the start-up
verdict flipped from run to run). Ratios are kagent / floor, kagent / runit and
kagent / supervisord. ``--etcd`` adds the agent's own RSS while it runs a real etcd (the
``kagent controller`` path, etcd-only, in temp dirs on free loopback ports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"
RUNSVDIR = shutil.which("runsvdir") or "/usr/bin/runsvdir"
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None

# ---- the floor: bare asyncio + pidfd respawner ----------------------------------------------


def floor_main(n: int, argv: list[str]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        procs: dict[int, subprocess.Popen[bytes]] = {}

        def start(i: int) -> None:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, process_group=0)
            fd = os.pidfd_open(p.pid)
            procs[i] = p
            loop.add_reader(fd, exited, i, p, fd)

        def exited(i: int, p: subprocess.Popen[bytes], fd: int) -> None:
            loop.remove_reader(fd)
            os.close(fd)
            p.wait()
            if not stop.is_set():
                start(i)

        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        for i in range(n):
            start(i)
        await stop.wait()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    asyncio.run(main())


# ---- kagent's engine in agent mode ------------------------------------------------------------


def agent_main(n: int, argv: list[str], run_dir: Path, extra_fds: int = 0) -> None:
    sys.path.insert(0, str(REPO))
    from kagent import log
    from kagent.components.spec import ComponentSpec
    from kagent.paths import Paths
    from kagent.supervisor.manager import run_agent_sync
    from kagent.supervisor.policy import RestartPolicy

    log.configure(fmt="json", hold=True)  # as kagent controller/worker (kagent/cli/run.py)
    binary = Path(shutil.which(argv[0]) or argv[0])
    specs = [ComponentSpec(name=f"c{i:03d}", binary=binary, args=tuple(argv[1:]), health=None, stop_timeout=5.0)
             for i in range(n)]
    held = [fd for _ in range(extra_fds // 2) for fd in os.pipe()]  # restart_phases.py --extra-fds
    sys.exit(run_agent_sync(paths=Paths.build(run_dir / "data", run_dir), role="bench", load_specs=lambda: specs,
                            policy=RestartPolicy(min_uptime=1.0)))


# ---- process events (netlink connector) -------------------------------------------------------

PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT = 0x1, 0x2, 0x80000000


class ProcEvents:
    """Every fork and exec on the host, with kernel CLOCK_MONOTONIC timestamps (ns).
    ``phases``: also every process's fork and exit, as ("fork" | "exit", pid, ts_ns) in
    ``self.phases`` (bench/restart_phases.py)."""

    def __init__(self, phases: bool = False) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)  # NETLINK_CONNECTOR
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((os.getpid(), 1))  # CN_IDX_PROC
        op = struct.pack("I", 1)  # PROC_CN_MCAST_LISTEN
        cn = struct.pack("IIIIHH", 1, 1, 0, 0, len(op), 0) + op
        self.sock.send(struct.pack("IHHII", 16 + len(cn), 3, 0, 0, os.getpid()) + cn)
        self.parent: dict[int, int] = {}  # child pid -> parent tgid
        self.execs: queue.Queue[tuple[int, int]] = queue.Queue()  # (pid, ts_ns)
        self.phases: queue.Queue[tuple[str, int, int]] | None = queue.Queue() if phases else None
        self.lost = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:  # ENOBUFS: events were dropped
                self.lost = True
                continue
            off = 0
            while off + 16 <= len(data):
                length = struct.unpack_from("I", data, off)[0]
                what, _cpu, ts = struct.unpack_from("IIQ", data, off + 36)
                if what == PROC_EVENT_FORK:
                    _ppid, ptgid, cpid, ctgid = struct.unpack_from("IIII", data, off + 52)
                    if cpid == ctgid:
                        self.parent[cpid] = ptgid
                        if self.phases is not None:
                            self.phases.put(("fork", cpid, ts))
                elif what == PROC_EVENT_EXEC:
                    pid, _tgid = struct.unpack_from("II", data, off + 52)
                    self.execs.put((pid, ts))
                elif what == PROC_EVENT_EXIT and self.phases is not None:
                    pid, tgid = struct.unpack_from("II", data, off + 52)
                    if pid == tgid:
                        self.phases.put(("exit", pid, ts))
                off += max(length, 16)

    def drain(self) -> None:
        for q in (self.execs, self.phases):
            while q is not None:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break

    def find(self, kind: str, pid: int, timeout: float = 2.0) -> int | None:
        """The timestamp of the next ``kind`` ("fork" | "exit") event of ``pid`` (``phases``)."""
        assert self.phases is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                k, p, ts = self.phases.get(timeout=left)
            except queue.Empty:
                return None
            if k == kind and p == pid:
                return ts
        return None

    def wait_execs(self, parent: int, count: int, timeout: float, depth: int = 1) -> list[tuple[int, int]]:
        """The next ``count`` execs of new pids that are children (``depth`` 1) or grandchildren
        (2: runit's runsvdir -> runsv -> child) of ``parent`` (pid, ts of the pid's first exec)."""
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(out) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {len(out)}/{count} children of {parent} exec'd within {timeout}s")
            try:
                pid, ts = self.execs.get(timeout=left)
            except queue.Empty:
                continue
            # the fork event is sent before the exec event; give the reader a moment if needed
            if self.parent.get(pid) is None:
                time.sleep(0.0005)
            up = self.parent.get(pid)
            if depth == 2 and up is not None:
                up = self.parent.get(up)
            if up == parent and pid not in seen:
                seen.add(pid)
                out.append((pid, ts))
        return out


# ---- the three supervisors --------------------------------------------------------------------


@dataclass
class Sup:
    name: str
    argv: list[str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    children: list[int] = field(default_factory=list)
    started_ns: int = 0
    depth: int = 1  # generations between the supervisor and its children (runit: 2)
    svdir: Path | None = None  # runit's service dir
    scratch: Path | None = None  # removed at stop (a run dir or service dir on tmpfs)

    def launch(self, events: ProcEvents, n: int, timeout: float = 120) -> float:
        """Start and wait until n children have exec'd; returns the start-up time in seconds."""
        log = open(self.workdir / f"{self.name}.out", "ab")
        self.started_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.workdir)
        got = events.wait_execs(self.proc.pid, n, timeout, self.depth)
        self.children = [pid for pid, _ in got]
        return (max(ts for _, ts in got) - self.started_ns) / 1e9

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.svdir is not None:
            # runsv exits on TERM only once its service is down: ask each one to stop it (d)
            # and to exit (x), through its control fifo
            for ctl in self.svdir.glob("*/supervise/control"):
                try:
                    fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
                    os.write(fd, b"dx")
                    os.close(fd)
                except OSError:
                    pass
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{p}").exists() for p in self.children) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.children:  # anything a supervisor left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def make_sup(kind: str, n: int, child: list[str], base: Path, extra_fds: int = 0) -> Sup:
    wd = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=base))
    if kind == "kagent":
        run = Path(tempfile.mkdtemp(prefix="kagent-run-", dir=TMPFS or base))
        argv = [sys.executable, __file__, "_agent", "--n", str(n), "--run-dir", str(run),
                *(["--extra-fds", str(extra_fds)] if extra_fds else []), "--", *child]
        return Sup(kind, argv, wd, scratch=run)
    elif kind == "floor":
        argv = [sys.executable, __file__, "_floor", "--n", str(n), "--", *child]
    elif kind == "runit":
        svdir = Path(tempfile.mkdtemp(prefix="runit-sv-", dir=TMPFS or base))
        for i in range(n):
            d = svdir / f"c{i:03d}"
            d.mkdir()
            (d / "run").write_text(f"#!/bin/sh\nexec {shlex.join(child)}\n")
            (d / "run").chmod(0o755)
        argv = [RUNSVDIR, "-P", str(svdir)]
        return Sup(kind, argv, wd, depth=2, svdir=svdir, scratch=svdir)
    else:
        conf = wd / "supervisord.conf"
        conf.write_text(f"""[unix_http_server]
file={wd}/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile={wd}/supervisord.log
pidfile={wd}/supervisord.pid
childlogdir={wd}
minfds=1024

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{wd}/supervisor.sock

[program:c]
command={shlex.join(child)}
numprocs={n}
process_name=%(program_name)s_%(process_num)03d
autorestart=true
startsecs=1
stopasgroup=true
killasgroup=true
""")
        argv = [SUPERVISORD, "-n", "-c", str(conf)]
    return Sup(kind, argv, wd)


def proc_cpu_wakeups(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    wake = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    wake += int(line.split()[1])
        except FileNotFoundError:
            pass
    return cpu, wake


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


KINDS = ("kagent", "runit", "supervisord", "floor")


def restart_latencies(group: list[Sup], events: ProcEvents, kills: int) -> dict[str, list[float]]:
    """Per supervisor, ``kills`` times: SIGKILL one child, the time to its replacement's exec.
    The supervisors take turns kill by kill, so that what the machine does meanwhile (another
    tenant, a cache gone cold) falls on all of them alike."""
    out: dict[str, list[float]] = {s.name: [] for s in group}
    for i in range(kills):
        for sup in group:
            victim = sup.children[i % len(sup.children)]
            time.sleep(0.05)
            events.drain()
            t0 = time.monotonic_ns()
            os.kill(victim, signal.SIGKILL)
            (pid, ts), = events.wait_execs(sup.pid, 1, 30, sup.depth)
            sup.children[i % len(sup.children)] = pid
            out[sup.name].append((ts - t0) / 1e9)
    return out


def mass_restart(sup: Sup, events: ProcEvents) -> float:
    events.drain()
    victims = list(sup.children)
    t0 = time.monotonic_ns()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    got = events.wait_execs(sup.pid, len(victims), 60, sup.depth)
    sup.children = [pid for pid, _ in got]
    return (max(ts for _, ts in got) - t0) / 1e9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_rss_with_etcd(base: Path, timeout: float = 60) -> float:
    """``kagent controller --init`` (etcd only) in temp dirs on free loopback ports, until etcd
    is healthy; the agent's own VmRSS (MiB, children not counted). Stopped by PID."""
    sys.path.insert(0, str(REPO))
    from kagent.supervisor import status as status_mod

    root = Path(tempfile.mkdtemp(prefix="etcd-rss-", dir=base))
    run = Path(tempfile.mkdtemp(prefix="kagent-etcd-run-", dir=TMPFS or base))
    for d in (base, root, run):  # etcd runs as the etcd user: it must reach its certs
        d.chmod(0o755)
    ports = [_free_port() for _ in range(4)]
    (root / "kagent.yaml").write_text(json.dumps({"apiVersion": "kagent.dev/v1beta1", "kind": "ClusterConfig", "spec": {
        "api": {"address": "127.0.0.1", "port": ports[0], "controlApiPort": ports[1]},
        "storage": {"type": "etcd", "etcd": {"peerAddress": "127.0.0.1", "clientPort": ports[2], "peerPort": ports[3]}},
        "pki": {"keyAlgorithm": "ecdsa-p256"}}}))
    disabled = "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server,control-api"
    argv = [sys.executable, "-m", "kagent", "-c", str(root / "kagent.yaml"), "--data-dir", str(root / "data"),
            "--run-dir", str(run), "controller", "--init", "--disable-components", disabled]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(root / "agent.out", "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited {proc.returncode}: {(root / 'agent.out').read_text()[-2000:]}")
            try:
                _, doc = status_mod.request(run / "status.sock", "GET", "/status", timeout=2)
                if doc["components"] and all(c["health"] == "healthy" for c in doc["components"]):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("etcd not healthy within 60 s")
            time.sleep(0.2)
        time.sleep(1.0)
        return rss_mb(proc.pid)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(run, ignore_errors=True)


def compile_kagent() -> None:
    """An installed kagent (a wheel, the single file) has its bytecode; with
    PYTHONDONTWRITEBYTECODE=1 in the environment every agent start would otherwise compile
    kagent's modules from source, while the floor's stdlib imports use their shipped .pyc."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "kagent")], check=True,
                   stdout=subprocess.DEVNULL)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a (0)" if a == 0 else "inf"
    return f"{a / b:.3g}x"


def row(label: str, vals: dict[str, float], fmt: str) -> str:
    cells = "  ".join(f"{fmt.format(vals[k]):>12}" for k in KINDS)
    return (f"{label:<34}{cells}  {ratio(vals['kagent'], vals['floor']):>10}"
            f"  {ratio(vals['kagent'], vals['runit']):>10}  {ratio(vals['kagent'], vals['supervisord']):>10}")


def run(args: argparse.Namespace) -> dict[str, object]:
    child = shlex.split(args.child_cmd)
    events = ProcEvents()
    base = Path(tempfile.mkdtemp(prefix="kagent-bench-"))
    results: dict[str, object] = {"child_cmd": args.child_cmd}
    lines: list[str] = []
    header = (f"{'metric':<34}" + "  ".join(f"{k:>12}" for k in KINDS)
              + f"  {'vs floor':>10}  {'vs runit':>10}  {'vs superv.':>10}")
    sups: list[Sup] = []
    try:
        # 1. start-up time for N = startup_n, one supervisor at a time
        # (each the median of --startup-repeat launches, the supervisors taking turns: one
        # launch on a shared 2-core machine varies by 2x)
        starts: dict[str, list[float]] = {k: [] for k in KINDS}
        for _ in range(args.startup_repeat):
            for kind in KINDS:
                s = make_sup(kind, args.startup_n, child, base)
                sups.append(s)
                starts[kind].append(s.launch(events, args.startup_n))
                s.stop()
        startup = {k: statistics.median(v) for k, v in starts.items()}
        lines.append(row(f"start-up, N={args.startup_n} (s)", startup, "{:.3f}"))
        results["startup_s"] = startup

        # 2. idle CPU / wake-ups / RSS at each N (the three run side by side, all idle)
        for n in args.idle_n:
            group = [make_sup(kind, n, child, base) for kind in KINDS]
            sups.extend(group)
            for s in group:
                s.launch(events, n)
            time.sleep(args.settle)
            before = {s.name: proc_cpu_wakeups(s.pid) for s in group}
            time.sleep(args.idle_seconds)
            after = {s.name: proc_cpu_wakeups(s.pid) for s in group}
            cpu = {k: (after[k][0] - before[k][0]) * 1000 for k in KINDS}
            wake = {k: float(after[k][1] - before[k][1]) for k in KINDS}
            rss = {s.name: rss_mb(s.pid) for s in group}
            lines.append(row(f"idle CPU, N={n}, {args.idle_seconds:g}s (ms)", cpu, "{:.0f}"))
            lines.append(row(f"idle wake-ups, N={n}, {args.idle_seconds:g}s", wake, "{:.0f}"))
            lines.append(row(f"RSS, N={n} (MB)", rss, "{:.1f}"))
            results[f"idle_N{n}"] = {"cpu_ms": cpu, "wakeups": wake, "rss_mb": rss}
            if n == max(args.idle_n):
                # 3. restart latency, then 4. mass restart, on the largest group
                lat = restart_latencies(group, events, args.kills)
                med = {k: statistics.median(v) * 1000 for k, v in lat.items()}
                p95 = {k: pct(v, 0.95) * 1000 for k, v in lat.items()}
                lines.append(row(f"restart after SIGKILL, median (ms)", med, "{:.2f}"))
                lines.append(row(f"restart after SIGKILL, p95 (ms)", p95, "{:.2f}"))
                results["restart_ms"] = {"median": med, "p95": p95, "kills": args.kills}
                masses: dict[str, list[float]] = {s.name: [] for s in group}
                for _ in range(args.repeat):
                    time.sleep(1.5)  # every child up longer than min_uptime/startsecs again
                    for s in group:
                        masses[s.name].append(mass_restart(s, events))
                mass = {k: statistics.median(v) for k, v in masses.items()}
                lines.append(row(f"all N={n} back after mass kill (s)", mass, "{:.3f}"))
                results["mass_restart_s"] = mass
            for s in group:
                s.stop()
        if args.etcd:
            etcd_rss = agent_rss_with_etcd(base)
            results["agent_rss_with_etcd_mib"] = etcd_rss
            lines.append(f"{'agent RSS with a running etcd (MiB)':<34}{etcd_rss:>12.1f}")
    finally:
        for s in sups:
            s.stop()
        shutil.rmtree(base, ignore_errors=True)
    if events.lost:
        lines.append("warning: the kernel dropped process events; numbers may be off")
    print(header)
    print("\n".join(lines))
    r: dict[str, Any] = results
    med = r["restart_ms"]["median"]
    mass = r["mass_restart_s"]
    st = r["startup_s"]
    big = f"idle_N{max(args.idle_n)}"

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print("\ntargets (issue 8):")
    print(f"  restart median at or below runit: {ratio(med['kagent'], med['runit'])} -> "
          f"{verdict(med['kagent'] <= med['runit'])}")
    print(f"  mass restart of N={max(args.idle_n)} at or below runit: {ratio(mass['kagent'], mass['runit'])} -> "
          f"{verdict(mass['kagent'] <= mass['runit'])}")
    print(f"  start-up of N={args.startup_n} at or below runit: {ratio(st['kagent'], st['runit'])} -> "
          f"{verdict(st['kagent'] <= st['runit'])}")
    print(f"  start-up within 1.2x of the floor: {ratio(st['kagent'], st['floor'])} -> "
          f"{verdict(st['kagent'] <= 1.2 * st['floor'])}")
    idle_w = [r[f"idle_N{n}"]["wakeups"]["kagent"] for n in args.idle_n]
    print(f"  zero wake-ups while idle: {[int(w) for w in idle_w]} -> {verdict(not any(idle_w))}")
    print(f"  RSS at N={max(args.idle_n)}: {r[big]['rss_mb']['kagent']:.1f} MB")
    if args.etcd:
        print(f"  agent RSS with a running etcd under 40 MiB: {r['agent_rss_with_etcd_mib']:.1f} MiB -> "
              f"{verdict(r['agent_rss_with_etcd_mib'] < 40)}")
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_agent", "_floor"):
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--n", type=int, required=True)
        ap.add_argument("--run-dir", type=Path)
        ap.add_argument("--extra-fds", type=int, default=0)
        cut = sys.argv.index("--")
        a = ap.parse_args(sys.argv[1:cut])
        child = sys.argv[cut + 1:]
        if a.mode == "_agent":
            agent_main(a.n, child, a.run_dir, a.extra_fds)
        else:
            floor_main(a.n, child)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: N=10/50, 5 s idle, 10 kills")
    ap.add_argument("--children", type=int, nargs="+", dest="idle_n", default=None,
                    help="N values for the idle/RSS runs; restart and mass-kill run on the largest (default 10 50 200)")
    ap.add_argument("--child-cmd", default="sleep 3600", help="command of every child (default: %(default)s)")
    ap.add_argument("--idle-seconds", type=float, default=None, help="idle window (default 30, quick 5)")
    ap.add_argument("--kills", type=int, default=None, help="SIGKILLs per supervisor for the latency numbers (default 60)")
    ap.add_argument("--startup-n", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3,
                    help="mass restarts per supervisor; the median is reported (default 3)")
    ap.add_argument("--startup-repeat", type=int, default=7,
                    help="start-ups per supervisor; the median is reported (default 7)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds after start-up before measuring idle")
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    ap.add_argument("--etcd", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the agent's RSS with a running etcd (default: on)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: bench: the process-events connector needs root\nhint: run as root (CI and dev machines are)")
    a.idle_n = a.idle_n or ([10, 50] if a.quick else [10, 50, 200])
    a.idle_seconds = a.idle_seconds or (5.0 if a.quick else 30.0)
    a.kills = a.kills or (10 if a.quick else 60)
    compile_kagent()
    res = run(a)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
