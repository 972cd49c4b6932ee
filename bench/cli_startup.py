#!/usr/bin/env python3
"""CLI start-up time: median wall time of ``kagent --help`` and ``kagent version`` against a bare
``python -c pass``, and of the single file's ``kagent version`` against the venv's, all measured
in the same run (interleaved, so machine noise hits each alike).

    python bench/cli_startup.py [-n 20] [--kagent /path/to/kagent] [--target-ms 150]
                                [--single-file dist/kagent | --no-single-file] [--single-file-target 3]

Prints each median, the difference to the bare interpreter in ms and the ratio, the single
file's ratio to the venv and its size; exits 1 when a command is more than ``--target-ms``
above the bare interpreter or the single file is more than ``--single-file-target`` times the
venv. Without ``--single-file`` it uses ``dist/kagent``, building it with packaging/build.sh
when it is not there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def single_file(args: argparse.Namespace) -> Path | None:
    if args.no_single_file:
        return None
    if args.single_file:
        return Path(args.single_file).absolute()
    exe = REPO / "dist" / "kagent"
    if not exe.exists():
        print("building dist/kagent with packaging/build.sh ...", file=sys.stderr)
        subprocess.run([str(REPO / "packaging" / "build.sh"), str(REPO / "dist")], check=True, stdout=subprocess.DEVNULL)
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=20, help="runs per command (default 20)")
    ap.add_argument("--kagent", help="time this installed kagent script instead of `python -m kagent` from this checkout")
    ap.add_argument("--target-ms", type=float, default=150.0, help="allowed ms above the bare interpreter (default 150)")
    ap.add_argument("--single-file", help="the single-file kagent to time (default dist/kagent, built if missing)")
    ap.add_argument("--no-single-file", action="store_true", help="do not time the single file")
    ap.add_argument("--single-file-target", type=float, default=3.0,
                    help="allowed ratio of the single file's `version` to the venv's (default 3)")
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    kagent = [args.kagent] if args.kagent else [sys.executable, "-m", "kagent"]
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kagent --help": [*kagent, "--help"],
        "kagent version": [*kagent, "version"],
    }
    exe = single_file(args)
    if exe is not None:
        cases["single file version"] = [str(exe), "version"]
        # its first run unpacks the bundle (the warm-up below); keep that cache out of /var/cache
        env.setdefault("KAGENT_BUNDLE_DIR", tempfile.mkdtemp(prefix="kagent-bench-bundle-"))
    first = {name: wall(argv, env) for name, argv in cases.items()}  # warm the page cache and .pyc files
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(wall(argv, env))

    base = statistics.median(times["python -c pass"]) * 1000
    print(f"{'command':<20} {'median ms':>10} {'+ms vs python':>14} {'ratio':>7}   ({args.runs} runs each)")
    print(f"{'python -c pass':<20} {base:>10.1f} {'':>14} {'':>7}")
    worst = 0.0
    for name in ("kagent --help", "kagent version"):
        med = statistics.median(times[name]) * 1000
        worst = max(worst, med - base)
        print(f"{name:<20} {med:>10.1f} {med - base:>+14.1f} {med / base:>7.2f}")
    ok = worst <= args.target_ms
    print(f"{'PASS' if ok else 'FAIL'}: worst is {worst:.1f} ms above the bare interpreter (target <= {args.target_ms:.0f} ms)")
    if exe is not None:
        venv = statistics.median(times["kagent version"]) * 1000
        med = statistics.median(times["single file version"]) * 1000
        ratio = med / venv
        size = exe.stat().st_size / (1024 * 1024)
        print(f"{'single file version':<20} {med:>10.1f} {med - base:>+14.1f} {med / base:>7.2f}"
              f"   (first run, unpacking: {first['single file version'] * 1000:.0f} ms)")
        file_ok = ratio <= args.single_file_target
        print(f"{'PASS' if file_ok else 'FAIL'}: single file `version` is {ratio:.2f}x the venv's "
              f"(target <= {args.single_file_target:g}x); {exe} is {size:.1f} MiB")
        ok = ok and file_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
