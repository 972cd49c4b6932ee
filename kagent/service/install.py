"""Edge. kagent as a system service: find the template, write the rendered unit (systemd) or
init script (OpenRC), enable/disable/start/stop it through ``systemctl`` or ``rc-update`` /
``rc-service``. With a ``root`` other than ``/`` (``--root DIR``: tests, image builds) only
the file is written or removed and no init system is called.

For ``kagent reset``: ``find_installed(root)`` lists the installed kagent units and
``remove_installed(root)`` disables (and stops) and deletes them; both are safe to call when
nothing is installed.
"""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kagent import fsutil
from kagent.errors import PreconditionError
from kagent.service.render import ROLES, Init, ServiceSpec, render_service, service_name, template_name, unit_mode, unit_relpath

HOST_ROOT = Path("/")
COMMAND_TIMEOUT = 300.0  # `systemctl start` of a Type=notify unit waits for READY=1


@dataclass(frozen=True, slots=True)
class InstalledUnit:
    role: str
    init: Init
    path: Path

    @property
    def name(self) -> str:
        return service_name(self.role)


def load_template(init: Init, role: str) -> str:
    """The template text: package data of an installed wheel or the single file
    (``kagent/service/units/<init>/``), else the top-level folder of a source checkout."""
    name = template_name(init, role)
    res = importlib.resources.files("kagent.service").joinpath("units", str(init), name)
    if res.is_file():
        return res.read_text(encoding="utf-8")
    src = Path(__file__).resolve().parents[2] / str(init) / name
    if src.is_file():
        return src.read_text(encoding="utf-8")
    raise PreconditionError(f"template {init}/{name}", "not shipped with this kagent",
                            hint="reinstall kagent (the wheel or the single file carries the service templates)")


def detect_init(root: Path = HOST_ROOT) -> Init:
    """The init system of ``root``: a booted systemd (``/run/systemd/system``) or OpenRC on the
    host; for another root, the one whose binaries it holds."""
    if root == HOST_ROOT:
        if Path("/run/systemd/system").is_dir():
            return Init.SYSTEMD
        if Path("/run/openrc").is_dir() or (Path("/sbin/openrc-run").exists() and not Path("/run/systemd").exists()):
            return Init.OPENRC
    else:
        if any((root / p).exists() for p in ("lib/systemd/systemd", "usr/lib/systemd/systemd")):
            return Init.SYSTEMD
        if any((root / p).exists() for p in ("sbin/openrc-run", "usr/sbin/openrc-run", "sbin/openrc")):
            return Init.OPENRC
    where = "this host" if root == HOST_ROOT else str(root)
    raise PreconditionError("init system", f"neither a running systemd nor OpenRC found on {where}",
                            hint="pass --init systemd or --init openrc")


def unit_path(init: Init, role: str, root: Path = HOST_ROOT) -> Path:
    return root / unit_relpath(init, role)


def find_installed(root: Path = HOST_ROOT, init: Init | None = None) -> list[InstalledUnit]:
    """Every kagent unit file present under ``root`` (controller first)."""
    inits = [init] if init is not None else list(Init)
    return [InstalledUnit(role, i, unit_path(i, role, root)) for role in ROLES for i in inits
            if unit_path(i, role, root).exists() or unit_path(i, role, root).is_symlink()]


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(argv[0])
    if tool is None:
        raise PreconditionError(argv[0], "not found on PATH", hint="pass --init for the init system this host runs")
    try:
        proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PreconditionError(" ".join(argv), f"did not finish in {COMMAND_TIMEOUT:g}s") from None
    if check and proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise PreconditionError(" ".join(argv), f"exited {proc.returncode}: {out[-1] if out else 'no output'}")
    return proc


def _enable_argvs(u: InstalledUnit) -> list[list[str]]:
    if u.init is Init.SYSTEMD:
        return [["systemctl", "daemon-reload"], ["systemctl", "enable", f"{u.name}.service"]]
    return [["rc-update", "add", u.name, "default"]]


def control_argv(u: InstalledUnit, action: str) -> list[str]:
    """``start``/``stop`` of the installed unit through its init system."""
    if u.init is Init.SYSTEMD:
        return ["systemctl", action, f"{u.name}.service"]
    return ["rc-service", u.name, action]


def install(spec: ServiceSpec, *, root: Path = HOST_ROOT, force: bool = False, start: bool = False,
            manage: bool | None = None) -> InstalledUnit:
    """Render and write the unit; enable it (and start it) when ``manage`` (default: ``root``
    is ``/``). Refuses to replace an existing unit without ``force``. When enabling fails, the
    previous file (or none) is put back, so a failed install leaves the disk as it was."""
    text = render_service(spec, load_template(spec.init, spec.role))
    path = unit_path(spec.init, spec.role, root)
    if (path.exists() or path.is_symlink()) and not force:
        raise PreconditionError(str(path), "already exists",
                                hint="pass --force to replace it, or run `kagent uninstall` first")
    unit = InstalledUnit(spec.role, spec.init, path)
    previous = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    if path.is_symlink():
        path.unlink()  # replace the link itself, never write through it
    fsutil.write_atomic(path, text, mode=unit_mode(spec.init))
    if not (root == HOST_ROOT if manage is None else manage):
        return unit
    try:
        for argv in _enable_argvs(unit):
            _run(argv)
    except PreconditionError:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            fsutil.write_atomic(path, previous, mode=unit_mode(spec.init))
        raise
    if start:
        _run(control_argv(unit, "start"))
    return unit


def remove_installed(root: Path = HOST_ROOT, init: Init | None = None, *,
                     manage: bool | None = None, only: Callable[[InstalledUnit], bool] | None = None) -> list[InstalledUnit]:
    """Disable, stop and delete every installed kagent unit (``manage``, default: ``root`` is
    ``/``: through the init system; else only the files); ``only``: just the units it accepts
    (``kagent reset``: the units of its data dir). Returns what was removed; nothing
    installed is not an error."""
    manage = root == HOST_ROOT if manage is None else manage
    found = [u for u in find_installed(root, init) if only is None or only(u)]
    for u in found:
        if manage:
            if u.init is Init.SYSTEMD:
                _run(["systemctl", "disable", "--now", f"{u.name}.service"])
            else:
                _run(["rc-service", u.name, "stop"], check=False)  # not running is fine
                _run(["rc-update", "del", u.name, "default"], check=False)
        u.path.unlink(missing_ok=True)
    if manage and any(u.init is Init.SYSTEMD for u in found):
        _run(["systemctl", "daemon-reload"])
    return found


def control(action: str, init: Init | None = None, *, root: Path = HOST_ROOT) -> InstalledUnit:
    """``kagent start|stop``: the installed unit (the controller's when both are)."""
    found = find_installed(root, init)
    if not found:
        raise PreconditionError("service", "no kagent service is installed",
                                hint="run `kagent install controller` or `kagent install worker` first")
    _run(control_argv(found[0], action))
    return found[0]
