"""Entry point of the single-file kagent (the PyInstaller bundle packaging/stub.sh unpacks
and execs): the same ``main`` as the console script, after two fixes.

``sys.executable`` becomes the single file itself (``$KAGENT_SELF``, set by the stub), not the
unpacked copy: a child that is kagent (``kagent api``) and the unit ``kagent install`` writes
name the file the operator installed.

What the bootloader put into the environment for this process alone is taken out, so that no
child inherits it:

- ``LD_LIBRARY_PATH`` points into the unpacked bundle (``<cache>/<hash>/_internal``); containerd, runc or
  kubectl must load the host's libraries, not ours. The dynamic loader read it at start-up,
  so this process keeps its bundled libraries.
- ``_PYI_*``: bootloader state a child that is kagent itself must not mistake for its own.
"""

import os
import sys

from kagent.cli import main


def _clean_environment() -> None:
    single_file = os.environ.pop("KAGENT_SELF", "")
    if single_file and os.path.isfile(single_file):
        sys.executable = single_file
    bundle = getattr(sys, "_MEIPASS", "") or os.environ.get("_PYI_APPLICATION_HOME_DIR", "")
    orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    value = orig if orig is not None else os.environ.get("LD_LIBRARY_PATH")
    if value is not None:
        keep = [d for d in value.split(os.pathsep) if d and not (bundle and (d == bundle or d.startswith(bundle + os.sep)))]
        if keep:
            os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(keep)
        else:
            os.environ.pop("LD_LIBRARY_PATH", None)
    for key in [k for k in os.environ if k.startswith("_PYI_") or k == "_MEIPASS2"]:
        del os.environ[key]


if __name__ == "__main__":
    _clean_environment()
    main()
