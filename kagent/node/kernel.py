"""Kernel setup a worker needs (k0s reference §1.7): load overlay, nf_conntrack, br_netfilter
and ip_tables when absent, and turn on forwarding and bridge netfilter.

``plan_kernel_setup`` is pure over what it is given; ``apply_kernel_setup`` does the writes
and reports each step (done / already / skipped / failed) instead of raising: a read-only
/proc/sys (a container, a network namespace) is reported, never fatal.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MODULES = ("overlay", "nf_conntrack", "br_netfilter", "ip_tables")
SYSCTLS = (
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/default/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)


class Outcome(StrEnum):
    DONE = "done"
    ALREADY = "already"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # "module" | "sysctl"
    name: str
    outcome: Outcome
    detail: str = ""


def loaded_modules(proc_modules_text: str) -> frozenset[str]:
    """Pure: module names from the text of /proc/modules."""
    return frozenset(line.split()[0] for line in proc_modules_text.splitlines() if line.strip())


def apply_kernel_setup(*, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys"),
                       modprobe: str = "modprobe") -> list[Step]:
    steps: list[Step] = []
    try:
        loaded = loaded_modules((proc_root / "modules").read_text())
    except OSError:
        loaded = frozenset()
    for mod in MODULES:
        if mod in loaded or (sys_root / "module" / mod).exists():
            steps.append(Step("module", mod, Outcome.ALREADY))
            continue
        try:
            r = subprocess.run([modprobe, mod], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as err:
            steps.append(Step("module", mod, Outcome.FAILED, str(err)))
            continue
        if r.returncode == 0:
            steps.append(Step("module", mod, Outcome.DONE))
        else:
            steps.append(Step("module", mod, Outcome.FAILED, (r.stderr or r.stdout).strip().splitlines()[-1:][0] if (r.stderr or r.stdout).strip() else f"modprobe exited {r.returncode}"))
    for key in SYSCTLS:
        path = proc_root / "sys" / key
        try:
            current = path.read_text().strip()
        except FileNotFoundError:
            steps.append(Step("sysctl", key, Outcome.SKIPPED, "not present (module not loaded)"))
            continue
        except OSError as err:
            steps.append(Step("sysctl", key, Outcome.FAILED, err.strerror or str(err)))
            continue
        if current == "1":
            steps.append(Step("sysctl", key, Outcome.ALREADY))
            continue
        try:
            path.write_text("1\n")
            steps.append(Step("sysctl", key, Outcome.DONE))
        except OSError as err:
            steps.append(Step("sysctl", key, Outcome.FAILED, f"{err.strerror or err} (value stays {current})"))
    return steps
