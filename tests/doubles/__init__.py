"""Test doubles (never shipped in kagent/): install ``k8s_double.py`` into a ``<data>/bin``
as kube-apiserver, kube-controller-manager, kube-scheduler, konnectivity-server, kubelet and
kine."""

from __future__ import annotations

import sys
from pathlib import Path

DOUBLES_DIR = Path(__file__).resolve().parent
DOUBLE_NAMES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server", "kubelet", "kine")

_WRAPPER = """#!{python}
# kagent TEST DOUBLE for {name}: see {script}
import sys
sys.path.insert(0, {doubles_dir!r})
from k8s_double import main
sys.exit(main({name!r}, sys.argv[1:]))
"""


def install(bin_dir: Path, names: tuple[str, ...] = DOUBLE_NAMES) -> dict[str, Path]:
    """Write one executable wrapper per name into ``bin_dir`` (made if missing)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in names:
        target = bin_dir / name
        target.write_text(_WRAPPER.format(python=sys.executable, name=name, script=DOUBLES_DIR / "k8s_double.py",
                                          doubles_dir=str(DOUBLES_DIR)))
        target.chmod(0o750)
        out[name] = target
    return out
