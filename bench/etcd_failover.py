"""Benchmark: etcd failover of a three-controller kagent cluster, against bare etcd.

    python bench/etcd_failover.py             # 3 rounds per variant (about a minute and a half)
    python bench/etcd_failover.py --rounds 5
    python bench/etcd_failover.py --json      # machine-readable result on stdout

What runs, on loopback addresses 127.0.0.1/2/3 in temp dirs on free ports:
- kagent: controller 1 ``--init``, 2 and 3 joined with a controller token (etcd and the
  controller API; the Kubernetes components disabled). Each round finds the etcd leader
  (``/v3/maintenance/status`` on every member), SIGKILLs that controller's agent and every
  child (etcd, control-api), and measures the time until a write (``/v3/kv/put``, 0.5 s
  timeout, retried every 50 ms) through another controller's etcd succeeds; then the killed
  controller is started again from its data dir (no token) and rejoins before the next round.
- bare etcd (the floor): three etcd processes with the same PKI and flags' defaults, the
  leader SIGKILLed, the same write loop; what etcd's own election costs.

Reported: median and max failover per variant and the ratio kagent / bare etcd. Target from
the issue: under 5 s from the SIGKILL of the leader's controller to a successful write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kagent.bins import find_binary  # noqa: E402
from kagent.join.etcdclient import EtcdClient, EtcdError  # noqa: E402
from kagent.paths import Paths  # noqa: E402
from tests.conftest import ProcRegistry, free_port, traversable_tmpdir  # noqa: E402
from tests.fixtures.controllers import Host, configure, voting, wait_until, write_token  # noqa: E402
from tests.fixtures.etcd import client_for, start_member  # noqa: E402
from tests.fixtures.pki_env import build  # noqa: E402
from tests.integration.conftest import Node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlog import logs_in  # noqa: E402

HEALTHY = ["etcd", "control-api"]


def _client(paths: Paths, port: int) -> EtcdClient:
    return EtcdClient(f"https://127.0.0.1:{port}", ca=paths.etcd_pki("ca.crt"), cert=paths.pki("apiserver-etcd-client.crt"),
                      key=paths.pki("apiserver-etcd-client.key"), timeout=0.5)


def _time_to_write(c: EtcdClient, t0: float, limit: float = 30.0) -> float:
    while True:
        try:
            c.put("/bench/failover", str(time.time()))
            return time.monotonic() - t0
        except EtcdError:
            if time.monotonic() - t0 > limit:
                raise
            time.sleep(0.05)


def _leader(clients: list[EtcdClient]) -> int:
    for i, c in enumerate(clients):
        try:
            if c.status().is_leader:
                return i
        except EtcdError:
            continue
    raise RuntimeError("no member reports itself leader")


def bench_kagent(rounds: int, base: Path) -> list[float]:
    nodes = []
    for i in range(3):
        root = base / f"c{i + 1}"
        n = Node(root=root, data=root / "d", run=root / "r", config=root / "kagent.yaml")
        root.mkdir(parents=True)
        n.ports = {"api": free_port(), "control": free_port(), "etcd_client": free_port(), "etcd_peer": free_port()}
        configure(n, f"127.0.0.{i + 1}")
        nodes.append(n)
    hosts = [Host(n, f"127.0.0.{i + 1}") for i, n in enumerate(nodes)]
    out: list[float] = []
    try:
        hosts[0].start("--init")
        hosts[0].node.wait_healthy(HEALTHY, timeout=60)
        token = base / "controller.token"
        write_token(hosts[0], "controller", token)
        for h in hosts[1:]:
            h.start("--token-file", str(token))
            h.node.wait_healthy(HEALTHY, timeout=90)
            name = h.member_name()
            wait_until(lambda: name in voting(hosts[0]), 60, f"{name} voting")
        for _ in range(rounds):
            clients = [_client(Paths.build(h.node.data, h.node.run), h.node.ports["etcd_client"]) for h in hosts]
            li = _leader(clients)
            other = clients[(li + 1) % 3]
            t0 = time.monotonic()
            hosts[li].kill_hard()
            out.append(_time_to_write(other, t0))
            hosts[li].start()
            hosts[li].node.wait_healthy(HEALTHY, timeout=90)
            wait_until(lambda: len(voting(hosts[(li + 1) % 3])) == 3 and clients[li].health(), 60, "rejoined")
            time.sleep(6)  # etcd's 5 s connectivity rule before the next leader is killed
            for c in clients:
                c.close()
    finally:
        for h in hosts:
            h.node.stop(timeout=30)
            for pid in h.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return out


def bench_bare(rounds: int, base: Path) -> list[float]:
    etcd = find_binary("etcd", Paths.build("/nonexistent", "/nonexistent"))
    assert etcd is not None
    first = build(base / "m1", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    envs = [first]
    for i in (2, 3):
        p = Paths.build(base / f"m{i}" / "data", base / f"m{i}" / "run")
        p.etcd_pki_dir.mkdir(parents=True)
        for f in ("ca.crt", "ca.key"):
            shutil.copy2(first.paths.etcd_pki(f), p.etcd_pki(f))
        envs.append(build(base / f"m{i}", f"spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.{i}\n  pki:\n    keyAlgorithm: ecdsa-p256\n"))
    peers = [f"https://127.0.0.{i + 1}:{free_port()}" for i in range(3)]
    initial = ",".join(f"m{i + 1}={u}" for i, u in enumerate(peers))
    reg = ProcRegistry()
    out: list[float] = []
    try:
        members = [start_member(reg, etcd, e.paths, base, name=f"m{i + 1}", peer_url=peers[i], initial_cluster=initial,
                                wait=0) for i, e in enumerate(envs)]
        clients = [client_for(m.paths, m.client_url, timeout=0.5) for m in members]
        wait_until(lambda: all(c.health() for c in clients), 30, "bare cluster healthy")
        for _ in range(rounds):
            li = _leader(clients)
            t0 = time.monotonic()
            members[li].proc.send_signal(signal.SIGKILL)
            members[li].proc.wait(10)
            out.append(_time_to_write(clients[(li + 1) % 3], t0))
            m = members[li]
            argv = list(m.proc.args)  # type: ignore[arg-type]
            argv = [a.replace("--initial-cluster-state=new", "--initial-cluster-state=existing") for a in argv]
            with m.log.open("ab") as fh:
                m.proc = reg.popen(argv, stdout=fh, stderr=fh)
            wait_until(lambda: clients[li].health(), 30, "bare member back")
            time.sleep(6)
    finally:
        reg.stop_all()
    return out


def measure(rounds: int) -> dict[str, Any]:
    """Both variants, ``rounds`` each (also called by bench/join.py)."""
    base = traversable_tmpdir("kfo")  # etcd runs as the etcd user: it must get through to its data dir
    try:
        # the agents' and etcds' output and this process's kagent events stay in files under
        # base (stdout carries the results only); their tails are printed on a failure
        with logs_in(base):
            bare = bench_bare(rounds, base / "bare")
            kagent = bench_kagent(rounds, base / "k")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    res: dict[str, Any] = {"rounds": rounds, "bare_etcd_s": bare, "kagent_s": kagent,
                           "bare_median_s": statistics.median(bare), "kagent_median_s": statistics.median(kagent),
                           "kagent_max_s": max(kagent)}
    res["ratio_kagent_over_bare"] = res["kagent_median_s"] / res["bare_median_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = measure(args.rounds)
    bare = res["bare_etcd_s"]
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"etcd failover: SIGKILL of the leader until a write through another member succeeds, {args.rounds} rounds")
    print(f"{'variant':<28}{'median':>10}{'max':>10}{'vs bare':>10}")
    print(f"{'bare etcd (3 members)':<28}{res['bare_median_s']:>9.2f}s{max(bare):>9.2f}s{1.0:>9.2f}x")
    print(f"{'kagent (3 controllers)':<28}{res['kagent_median_s']:>9.2f}s{res['kagent_max_s']:>9.2f}s"
          f"{res['ratio_kagent_over_bare']:>9.2f}x")
    print(f"target: kagent failover under 5 s ........ {'met' if res['kagent_max_s'] < 5 else 'NOT met'} "
          f"({res['kagent_max_s']:.2f} s worst)")


if __name__ == "__main__":
    main()
