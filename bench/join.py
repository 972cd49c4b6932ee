"""Benchmark: worker joins per second and their latency against one controller on loopback.

    python bench/join.py                      # 1,000 joins, 16 concurrent clients (about a minute)
    python bench/join.py --joins 200 --quick  # a short run
    python bench/join.py --json               # machine-readable result on stdout

What runs: a real ``kagent controller --init`` (etcd + the control-api child; the Kubernetes
components disabled) in a temp dir on free loopback ports, one worker token, then:

- floor: ``GET /healthz`` on the same server, each request on a new TLS connection (what a
  join costs in TLS, with no auth, no etcd and no signing), with the same client count;
- joins: ``POST /v1beta1/worker/join`` per node name, each on a new TLS connection, with the
  token (one etcd read), a CSR the client made (the key never leaves it), the cluster CA
  signing the kubelet client cert, the node record created in etcd (one transaction) and the
  token use recorded (one put).

Before the clock starts, 100 GETs and 4 joins per client warm the server up (its etcd
connection pool is filled by the first concurrent joins). Clients are threads with ``http.client``, spread over ``--procs`` processes (default 4) so the
client side's own GIL does not dominate the tail; keys and CSRs are made before the clock starts.
Reported: requests/s, p50 and p99 latency for both, and the ratio joins/floor. Targets from
the issue: at least 50 joins/s and p99 under 250 ms on this machine.

Then (``--failover-rounds N``, default 1, 0 skips it) etcd failover, from bench/etcd_failover.py:
three controllers on 127.0.0.1/2/3, the etcd leader's controller SIGKILLed (agent, etcd,
control-api), the time until a write through another controller succeeds, against the same
with three bare etcd processes. Target: under 5 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kagent.config.model import KeyAlgorithm  # noqa: E402
from kagent.join.nodes import make_csr  # noqa: E402
from kagent.join.token import decode_token  # noqa: E402
from kagent.pki import issue  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.conftest import kagent_cmd as kagent  # noqa: E402
from tests.conftest import kagent_env as env  # noqa: E402

KUBE = "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server"


class Controller:
    def __init__(self, root: Path, key_algorithm: str) -> None:
        self.root = root
        self.ports = {n: free_port() for n in ("api", "control", "client", "peer")}
        self.config = root / "kagent.yaml"
        self.config.write_text(json.dumps({"apiVersion": "kagent.dev/v1beta1", "kind": "ClusterConfig", "spec": {
            "api": {"address": "127.0.0.1", "port": self.ports["api"], "controlApiPort": self.ports["control"]},
            "storage": {"type": "etcd", "etcd": {"peerAddress": "127.0.0.1", "clientPort": self.ports["client"],
                                                  "peerPort": self.ports["peer"]}},
            "pki": {"keyAlgorithm": key_algorithm}}}))
        self.flags = ["-c", str(self.config), "--data-dir", str(root / "d"), "--run-dir", str(root / "r")]
        self.log = (root / "agent.log").open("wb")
        self.proc = subprocess.Popen(kagent("--log-format", "json", *self.flags, "controller", "--init",
                                            "--disable-components", KUBE), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env(), start_new_session=True)

    @property
    def ca(self) -> Path:
        return self.root / "d" / "pki" / "ca.crt"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"controller exited {self.proc.returncode} (its log: {self.root / 'agent.log'})")
            if self.ca.exists():
                try:
                    if healthz(self.ports["control"], ssl.create_default_context(cafile=str(self.ca))) == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise SystemExit("control-api not healthy in time")

    def token(self) -> str:
        r = subprocess.run(kagent(*self.flags, "token", "create", "--expiry", "1h"), capture_output=True, text=True,
                           env=env(), timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"token create failed: {r.stderr}")
        return r.stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def healthz(port: int, ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def join(port: int, ctx: ssl.SSLContext, token: str, body: bytes) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request("POST", "/v1beta1/worker/join", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _threads(jobs: list[Callable[[], int]], clients: int, start_at: float) -> tuple[list[float], list[int], float]:
    """Run every job once with ``clients`` threads from ``start_at`` (time.time()); latencies,
    failed statuses, and the time the last one finished."""
    lat: list[float] = []
    bad: list[int] = []
    lock = threading.Lock()
    it = iter(jobs)

    def worker() -> None:
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            t0 = time.perf_counter()
            status = job()
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if status != 200:
                    bad.append(status)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    time.sleep(max(0.0, start_at - time.time()))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, bad, time.time()


def _proc_main(kind: str, port: int, ca: str, token: str, bodies: list[bytes], n: int, clients: int, start_at: float,
               out: Any) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    if kind == "floor":
        jobs: list[Callable[[], int]] = [lambda: healthz(port, ctx)] * n
    else:
        jobs = [(lambda b=b: join(port, ctx, token, b)) for b in bodies]
    out.put(_threads(jobs, clients, start_at))


def run(kind: str, port: int, ca: Path, token: str, bodies: list[bytes], clients: int, procs: int) -> dict[str, Any]:
    """``clients`` concurrent clients as ``procs`` processes of threads (one Python process
    with 16 TLS client threads would measure its own GIL more than the server)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 1.0
    share = [bodies[i::procs] for i in range(procs)]
    ps = [ctx.Process(target=_proc_main, args=(kind, port, str(ca), token, share[i], len(share[i]),
                                               clients // procs + (1 if i < clients % procs else 0), start_at, q))
          for i in range(procs)]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    bad = [x for r in results for x in r[1]]
    wall = max(r[2] for r in results) - start_at
    return {"requests": len(lat), "failed": len(bad), "statuses": sorted(set(bad)), "wall_s": round(wall, 3),
            "per_s": round(len(lat) / wall, 1), "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1)}


def _failover(rounds: int) -> dict[str, Any]:
    """bench/etcd_failover.py's two measurements (three kagent controllers, three bare etcd)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import etcd_failover

    return etcd_failover.measure(rounds)


def _joins(root: Path, args: argparse.Namespace, joins: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The controller in ``root``, then the floor and the joins (warmed up first)."""
    ctl = Controller(root, args.key_algorithm)
    try:
        ctl.wait_ready()
        tok = decode_token(ctl.token(), "token")
        port = ctl.ports["control"]
        keys = [issue.new_key(KeyAlgorithm.ECDSA_P256) for _ in range(args.clients)]

        def body(name: str, i: int) -> bytes:
            return json.dumps({"node": name, "csr": make_csr(name, keys[i % len(keys)]).decode()}).encode()

        bodies = [body(f"bench-{i:05d}", i) for i in range(joins)]
        warm = [body(f"warm-{i:03d}", i) for i in range(4 * args.clients)]
        procs = max(1, min(args.procs, args.clients))
        # warm up, not measured: the server's first TLS sessions and its pool of etcd connections
        run("floor", port, ctl.ca, tok.value, bodies[:100], args.clients, procs)
        run("join", port, ctl.ca, tok.value, warm, args.clients, procs)
        floor = run("floor", port, ctl.ca, tok.value, bodies, args.clients, procs)
        joined = run("join", port, ctl.ca, tok.value, bodies, args.clients, procs)
    finally:
        ctl.stop()
    return floor, joined


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--joins", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--key-algorithm", choices=["rsa-2048", "ecdsa-p256"], default="rsa-2048",
                    help="the cluster CA's key (signs each kubelet cert); default kagent's default")
    ap.add_argument("--procs", type=int, default=4, help="client processes the clients are spread over")
    ap.add_argument("--quick", action="store_true", help="200 joins")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--failover-rounds", type=int, default=1,
                    help="also measure etcd failover of three controllers vs bare etcd (bench/etcd_failover.py); 0: skip")
    args = ap.parse_args()
    joins = 200 if args.quick else args.joins
    root = Path(tempfile.mkdtemp(prefix="kbj", dir="/tmp"))
    root.chmod(0o755)  # etcd runs as its own user: it must be able to pass through to the data dir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlog

    # stdout carries the results only: the agent's output is in <tmp>/agent.log, this process's
    # own kagent events (in-process PKI and etcd calls) in <tmp>/bench.log; tails on a failure
    try:
        with benchlog.logs_in(root):
            floor, joined = _joins(root, args, joins)
            if joined["failed"] or floor["failed"]:
                benchlog.print_tails(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    failover = _failover(args.failover_rounds) if args.failover_rounds > 0 else None
    result = {"joins": joined, "floor_bare_tls_get": floor, "failover": failover, "clients": args.clients, "key_algorithm": args.key_algorithm,
              "joins_vs_floor_per_s": round(joined["per_s"] / floor["per_s"], 2),
              "targets": {"joins_per_s>=50": joined["per_s"] >= 50, "p99_ms<250": joined["p99_ms"] < 250}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{joins} requests, {args.clients} concurrent clients ({args.procs} processes), CA key {args.key_algorithm}")
        for name, r in (("floor (TLS GET /healthz)", floor), ("worker joins", joined)):
            print(f"  {name:<26} {r['per_s']:>7.1f}/s  p50 {r['p50_ms']:>6.1f} ms  p99 {r['p99_ms']:>6.1f} ms"
                  f"  failed {r['failed']}")
        print(f"  joins/s vs floor: {result['joins_vs_floor_per_s']:.2f}x;  targets: >=50 joins/s "
              f"{'met' if result['targets']['joins_per_s>=50'] else 'MISSED'}, p99 < 250 ms "
              f"{'met' if result['targets']['p99_ms<250'] else 'MISSED'}")
        if failover is not None:
            print(f"etcd failover (SIGKILL of the leader's controller until a write through another succeeds), "
                  f"{args.failover_rounds} round(s): kagent median {failover['kagent_median_s']:.2f} s, worst "
                  f"{failover['kagent_max_s']:.2f} s; bare etcd {failover['bare_median_s']:.2f} s "
                  f"({failover['ratio_kagent_over_bare']:.2f}x); target < 5 s "
                  f"{'met' if failover['kagent_max_s'] < 5 else 'MISSED'}")
    return 0 if joined["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
