"""Entry point of the single-file kagent (PyInstaller one-file): the same ``main`` as the
console script, after undoing what the bootloader put into the environment for this process
alone, so that no child inherits it:

- ``LD_LIBRARY_PATH`` points into the unpacked bundle (``/tmp/_MEI...``); containerd, runc or
  kubectl must load the host's libraries, not ours. The dynamic loader read it at start-up,
  so this process keeps its bundled libraries.
- ``_PYI_*`` would make a child that is kagent itself (``kagent api``) reuse this process's
  unpacked files, which vanish when this process exits; without them it is its own instance.
"""

import os

from kagent.cli import main


def _clean_environment() -> None:
    home = os.environ.get("_PYI_APPLICATION_HOME_DIR")
    orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if orig is not None:
        os.environ["LD_LIBRARY_PATH"] = orig
    elif home and os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)[0] == home:
        os.environ.pop("LD_LIBRARY_PATH")
    for key in [k for k in os.environ if k.startswith("_PYI_") or k == "_MEIPASS2"]:
        del os.environ[key]


if __name__ == "__main__":
    _clean_environment()
    main()
