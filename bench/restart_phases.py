"""Benchmark: one restart after SIGKILL, split by phase, for kagent and its peers.

    python bench/restart_phases.py                  # kagent, runit, floor; N=50, 40 kills
    python bench/restart_phases.py --n 200 --kills 60 kagent runit
    python bench/restart_phases.py --n 10 --extra-fds 1000 kagent   # what 1,000 more agent fds cost

The kernel's process-events connector (netlink, root) reports the victim's exit, the fork of
its replacement and that replacement's exec, each with a CLOCK_MONOTONIC timestamp. Per kill:
kill -> exit (the victim's death: the same for every supervisor), exit -> fork (the
supervisor's wake-up, its own work and the clone) and fork -> exec (the new child's way to
exec: for a vfork, its fd-table copy and close). Medians per phase, and the phases of the
slowest tenth. The supervisors run one at a time, as ``bench/supervisor.py`` starts them
(``make_sup``); each is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import supervisor as bench  # noqa: E402 - this directory's bench/supervisor.py

UP_S = 1.5  # a victim has run this long: a long run, restarted at once by every supervisor


def measure(kind: str, n: int, kills: int, child: list[str], events: bench.ProcEvents,
            base: Path, extra_fds: int = 0) -> list[tuple[float, float, float, float]]:
    sup = bench.make_sup(kind, n, child, base, extra_fds=extra_fds if kind == "kagent" else 0)
    rows = []
    try:
        sup.launch(events, n)
        up_since = [time.monotonic()] * n
        for i in range(kills):
            victim = sup.children[i % n]
            # 50 ms apart, and each victim up UP_S: a shorter run is a crash loop, restarted
            # after a backoff (kagent's min_uptime, supervisord's startsecs, runsv's 1 s)
            time.sleep(max(0.05, up_since[i % n] + UP_S - time.monotonic()))
            events.drain()
            t0 = time.monotonic_ns()
            os.kill(victim, signal.SIGKILL)
            (pid, exec_ts), = events.wait_execs(sup.pid, 1, 30, sup.depth)
            sup.children[i % n] = pid
            up_since[i % n] = time.monotonic()
            exit_ts = events.find("exit", victim)
            fork_ts = events.find("fork", pid) if exit_ts is not None else None
            if exit_ts is not None and fork_ts is not None:
                rows.append(((exit_ts - t0) / 1e3, (fork_ts - exit_ts) / 1e3, (exec_ts - fork_ts) / 1e3,
                             (exec_ts - t0) / 1e3))
    finally:
        sup.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kinds", nargs="*", default=["kagent", "runit", "floor"], choices=bench.KINDS)
    ap.add_argument("--n", type=int, default=50, help="children per supervisor (default 50)")
    ap.add_argument("--kills", type=int, default=40, help="SIGKILLs per supervisor (default 40)")
    ap.add_argument("--child-cmd", default="sleep 3600")
    ap.add_argument("--extra-fds", type=int, default=0,
                    help="kagent only: this many more open fds in the agent (pipes), to see what its fd count costs a spawn")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: bench: the process-events connector needs root\nhint: run as root (CI and dev machines are)")
    bench.compile_kagent()
    events = bench.ProcEvents(phases=True)
    base = Path(tempfile.mkdtemp(prefix="kagent-phases-"))
    try:
        print(f"N={a.n}, {a.kills} kills each; medians in µs (slowest tenth: kill->exit/exit->fork/fork->exec)")
        for kind in a.kinds:
            rows = measure(kind, a.n, a.kills, shlex.split(a.child_cmd), events, base, a.extra_fds)
            if not rows:
                print(f"{kind:8} no complete kill (events lost?)")
                continue
            med = [statistics.median(r[j] for r in rows) for j in range(4)]
            worst = sorted(rows, key=lambda r: r[3])[-max(1, len(rows) // 10):]
            print(f"{kind:8} kill->exit {med[0]:6.0f}  exit->fork {med[1]:6.0f}  fork->exec {med[2]:6.0f}  "
                  f"total {med[3]:6.0f}  (n={len(rows)}; slowest: "
                  + ", ".join(f"{x:.0f}/{y:.0f}/{z:.0f}" for x, y, z, _ in worst) + ")")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
