#!/usr/bin/env python3
"""CLI start-up time: median wall time of ``kagent --help`` and ``kagent version`` against a bare
``python -c pass``, all measured in the same run (interleaved, so machine noise hits each alike).

    python bench/cli_startup.py [-n 20] [--kagent /path/to/kagent] [--target-ms 150]

Prints each median, the difference to the bare interpreter in ms and the ratio; exits 1 when a
command is more than ``--target-ms`` above the bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=20, help="runs per command (default 20)")
    ap.add_argument("--kagent", help="time this installed kagent script instead of `python -m kagent` from this checkout")
    ap.add_argument("--target-ms", type=float, default=150.0, help="allowed ms above the bare interpreter (default 150)")
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    kagent = [args.kagent] if args.kagent else [sys.executable, "-m", "kagent"]
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kagent --help": [*kagent, "--help"],
        "kagent version": [*kagent, "version"],
    }
    for argv in cases.values():  # warm the page cache and .pyc files
        wall(argv, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(wall(argv, env))

    base = statistics.median(times["python -c pass"]) * 1000
    print(f"{'command':<16} {'median ms':>10} {'+ms vs python':>14} {'ratio':>7}   ({args.runs} runs each)")
    print(f"{'python -c pass':<16} {base:>10.1f} {'':>14} {'':>7}")
    worst = 0.0
    for name in ("kagent --help", "kagent version"):
        med = statistics.median(times[name]) * 1000
        worst = max(worst, med - base)
        print(f"{name:<16} {med:>10.1f} {med - base:>+14.1f} {med / base:>7.2f}")
    ok = worst <= args.target_ms
    print(f"{'PASS' if ok else 'FAIL'}: worst is {worst:.1f} ms above the bare interpreter (target <= {args.target_ms:.0f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
