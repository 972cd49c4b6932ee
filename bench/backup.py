"""Benchmark: ``kagent backup`` and ``kagent restore`` of an etcd holding 10,000 keys, against
doing the same by hand in the same run.

    python bench/backup.py              # 5 rounds each (about a minute)
    python bench/backup.py --keys 2000 --repeat 3
    python bench/backup.py --json

Set-up: one ``kagent controller --init`` (etcd only) in a temp dir on free loopback ports,
filled with N keys (64-byte values) through etcd's JSON gateway.

Each round, timed as wall clock:
- backup, kagent: what ``kagent backup --save-path D`` does (snapshot streamed through etcd's
  JSON gateway, its trailing hash checked, pki/, manifests/ and the config, SHA-256
  manifest, gzip, fsync, link into place), once in this process ("warm": the work) and once
  as the command line ("cold": plus interpreter start-up, imports and config loading);
- backup, by hand: ``etcdctl snapshot save D/snap.db`` then ``tar czf`` of the snapshot, pki/,
  manifests/ and the config;
- restore, kagent: ``kagent restore ARCHIVE`` into a fresh data dir (verifies every checksum
  in a first pass, extracts in a second, then ``etcdctl snapshot restore`` — etcd 3.4 here —
  or ``etcdutl`` for 3.5), warm and cold as above;
- restore, by hand: ``tar xzf`` of the hand-made archive then ``etcdctl snapshot restore``.

Also timed each round, as the floor under every cold run: ``python -c pass`` (the interpreter
with this venv's site, which imports the editable install's finder) and ``python -m kagent
version`` (plus click and kagent's CLI). With ``--single-file PATH`` (or when
``dist/kagent`` exists: ``packaging/build.sh`` makes it) the same backup and restore, and
``version``, run through the single-file executable too.

Before timing, kagent's modules are byte-compiled once (``compileall``): an installed kagent
(a wheel, the single file) has its bytecode, and with ``PYTHONDONTWRITEBYTECODE=1`` in the
environment every cold run would otherwise compile the modules it imports from source.

Reported: the median and min of each, and the ratios kagent / by hand (target: at most 1.5),
warm and cold. The hand-made commands are Go binaries and tar, which start in a few ms; at
10,000 keys the snapshot is about 1.5 MB, so the cold ratio is mostly Python's start-up: the
report prints the floor's share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kagent import backup as bk  # noqa: E402
from kagent.paths import Paths  # noqa: E402
from tests.fixtures.etcd_gateway import Gateway  # noqa: E402

KUBE = "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server"
ETCDCTL = shutil.which("etcdctl") or "etcdctl"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kagent(*args: str) -> list[str]:
    return [sys.executable, "-m", "kagent", *args]


BUNDLE_DIR: list[str] = []  # the single file unpacks into the bench's temp dir, not /var/cache/kagent


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("KAGENT_")}
    e["PYTHONPATH"] = str(REPO)
    e["ETCDCTL_API"] = "3"
    if BUNDLE_DIR:
        e["KAGENT_BUNDLE_DIR"] = BUNDLE_DIR[0]
    return e


def timed_call(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed(argvs: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for argv in argvs:
        r = subprocess.run(argv, capture_output=True, env=env())
        if r.returncode != 0:
            raise SystemExit(f"{argv[:4]} failed: {r.stderr.decode(errors='replace')[-500:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--single-file", type=Path, default=None,
                    help="also time this single-file kagent (default: dist/kagent when it exists)")
    a = ap.parse_args()
    single = (a.single_file or (REPO / "dist" / "kagent" if (REPO / "dist" / "kagent").is_file() else None))
    single = single.absolute() if single is not None else None
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "kagent")], check=True, stdout=subprocess.DEVNULL)

    root = Path(tempfile.mkdtemp(prefix="kab", dir="/tmp"))
    root.chmod(0o711)  # etcd runs as its own user (spec.install.users): it must get through
    if single is not None:
        BUNDLE_DIR.append(str(root / "bundle"))
        (root / "bundle").mkdir(mode=0o700)
        timed([[str(single), "version"]])  # the first run unpacks it: not timed
    data, run, cfg = root / "d", root / "r", root / "kagent.yaml"
    client, peer = free_port(), free_port()
    cfg.write_text(json.dumps({"spec": {"api": {"address": "127.0.0.1", "port": free_port(), "controlApiPort": free_port()},
                                        "storage": {"etcd": {"peerAddress": "127.0.0.1", "clientPort": client, "peerPort": peer}},
                                        "pki": {"keyAlgorithm": "ecdsa-p256"}}}))
    flags = ["-c", str(cfg), "--data-dir", str(data), "--run-dir", str(run)]
    log = (root / "agent.log").open("wb")
    agent = subprocess.Popen(kagent(*flags, "controller", "--init", "--disable-components", KUBE), stdout=log,
                             stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    results: dict[str, list[float]] = {"backup_kagent_warm": [], "backup_kagent_cold": [], "backup_by_hand": [],
                                       "restore_kagent_warm": [], "restore_kagent_cold": [], "restore_by_hand": [],
                                       "floor_python": [], "floor_kagent_version": []}
    if single is not None:
        results.update({"backup_single_file": [], "restore_single_file": [], "floor_single_file_version": []})
    cfg_text = cfg.read_text()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                gw = Gateway(client, data / "pki")
                gw.call("/v3/maintenance/status", {})
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise SystemExit(f"etcd did not come up: {(root / 'agent.log').read_text()[-2000:]}")
                time.sleep(0.2)
        t0 = time.perf_counter()
        gw.put_many(a.keys, prefix="/bench/")
        fill = time.perf_counter() - t0
        gw.close()
        pki = data / "pki"
        ctl = [ETCDCTL, f"--endpoints=https://127.0.0.1:{client}", f"--cacert={pki / 'etcd' / 'ca.crt'}",
               f"--cert={pki / 'apiserver-etcd-client.crt'}", f"--key={pki / 'apiserver-etcd-client.key'}"]
        node = os.uname().nodename
        peer_url = f"https://127.0.0.1:{peer}"
        restore_flags = [f"--name={node}", f"--initial-cluster={node}={peer_url}", f"--initial-advertise-peer-urls={peer_url}"]
        for i in range(a.repeat):
            rd = root / f"round{i}"
            (rd / "k").mkdir(parents=True)
            (rd / "h").mkdir()
            (rd / "w").mkdir()
            paths = Paths.build(data, run)
            results["backup_kagent_warm"].append(timed_call(lambda: bk.create_backup(
                paths, storage="etcd", etcd_client_port=client, kine_data_source=None, config_text=cfg_text,
                cluster_name="kagent", save_path=str(rd / "w"), now=datetime.now(timezone.utc))))
            results["backup_kagent_cold"].append(timed([kagent(*flags, "backup", "--save-path", str(rd / "k"))]))
            results["floor_python"].append(timed([[sys.executable, "-c", "pass"]]))
            results["floor_kagent_version"].append(timed([kagent("version")]))
            if single is not None:
                (rd / "s").mkdir()
                results["backup_single_file"].append(timed([[str(single), *flags, "backup", "--save-path", str(rd / "s")]]))
                results["floor_single_file_version"].append(timed([[str(single), "version"]]))
            snap = rd / "h" / "snap.db"
            results["backup_by_hand"].append(timed([
                [*ctl, "snapshot", "save", str(snap)],
                ["tar", "czf", str(rd / "h" / "backup.tar.gz"), "-C", str(data), "pki", "manifests",
                 "-C", str(rd / "h"), "snap.db", "-C", str(root), "kagent.yaml"],
            ]))
            archive = next((rd / "k").glob("kagent_backup_*.tar.gz"))
            warm = next((rd / "w").glob("kagent_backup_*.tar.gz"))
            target = bk.RestoreTarget(node_name=node, peer_url=peer_url)
            results["restore_kagent_warm"].append(timed_call(lambda: bk.restore(
                Paths.build(rd / "wd", rd / "wr"), warm, target, config_out=None)))
            results["restore_kagent_cold"].append(timed([kagent("-c", str(cfg), "--data-dir", str(rd / "kd"), "--run-dir",
                                                                str(rd / "kr"), "restore", str(archive))]))
            if single is not None:
                results["restore_single_file"].append(timed([[str(single), "-c", str(cfg), "--data-dir", str(rd / "sd"),
                                                              "--run-dir", str(rd / "sr"), "restore", str(archive)]]))
            (rd / "hd").mkdir()
            results["restore_by_hand"].append(timed([
                ["tar", "xzf", str(rd / "h" / "backup.tar.gz"), "-C", str(rd / "hd")],
                [ETCDCTL, "snapshot", "restore", str(rd / "hd" / "snap.db"), f"--data-dir={rd / 'hd' / 'etcd'}", *restore_flags],
            ]))
            shutil.rmtree(rd)
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    doc = {
        "keys": a.keys, "rounds": a.repeat, "fill_s": round(fill, 2),
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in results.items()},
        "ratio_backup_warm": round(med["backup_kagent_warm"] / med["backup_by_hand"], 2),
        "ratio_backup_cold": round(med["backup_kagent_cold"] / med["backup_by_hand"], 2),
        "ratio_restore_warm": round(med["restore_kagent_warm"] / med["restore_by_hand"], 2),
        "ratio_restore_cold": round(med["restore_kagent_cold"] / med["restore_by_hand"], 2),
        "target": 1.5,
    }
    floor = med["floor_kagent_version"]
    # what is left of each cold run once the CLI's start-up (kagent version) is taken off
    doc["ratio_backup_cold_minus_floor"] = round((med["backup_kagent_cold"] - floor) / med["backup_by_hand"], 2)
    doc["ratio_restore_cold_minus_floor"] = round((med["restore_kagent_cold"] - floor) / med["restore_by_hand"], 2)
    if single is not None:
        doc["ratio_backup_single_file"] = round(med["backup_single_file"] / med["backup_by_hand"], 2)
        doc["ratio_restore_single_file"] = round(med["restore_single_file"] / med["restore_by_hand"], 2)
    if a.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"etcd with {a.keys} keys (filled in {fill:.1f}s), {a.repeat} rounds, median (min) wall time:")
        for k in results:
            print(f"  {k:20} {med[k]:.3f}s ({min(results[k]):.3f}s)")
        print(f"backup:  kagent / by hand = {doc['ratio_backup_warm']}x warm, {doc['ratio_backup_cold']}x cold (target <= 1.5x)")
        print(f"restore: kagent / by hand = {doc['ratio_restore_warm']}x warm, {doc['ratio_restore_cold']}x cold (target <= 1.5x)")
        print(f"floor:   python -c pass {med['floor_python']:.3f}s, kagent version {floor:.3f}s; cold minus that floor / by hand = "
              f"{doc['ratio_backup_cold_minus_floor']}x backup, {doc['ratio_restore_cold_minus_floor']}x restore")
        if single is not None:
            print(f"single file {single}: version {med['floor_single_file_version']:.3f}s; / by hand = "
                  f"{doc['ratio_backup_single_file']}x backup, {doc['ratio_restore_single_file']}x restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
