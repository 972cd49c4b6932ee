"""setuptools hook: ship the top-level systemd/ and openrc/ service templates inside the
package (kagent/service/units/<init>/), where importlib.resources finds them in a wheel.
Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
TEMPLATE_DIRS = ("systemd", "openrc")


class build_py_with_units(build_py):  # noqa: N801 - setuptools command naming
    def run(self) -> None:
        super().run()
        for folder in TEMPLATE_DIRS:
            dst = Path(self.build_lib) / "kagent" / "service" / "units" / folder
            dst.mkdir(parents=True, exist_ok=True)
            for src in sorted((HERE / folder).iterdir()):
                if src.is_file() and not src.is_symlink():
                    shutil.copy2(src, dst / src.name)


setup(cmdclass={"build_py": build_py_with_units})
