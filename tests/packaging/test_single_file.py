"""The single-file kagent, run with a bare environment from a folder outside the checkout:
it is the whole agent (version, sysinfo, install, controller --init --init-only, a short
etcd-only controller whose control-api child is started through the same file), unpacks
itself once into a cache it checks, is the service's main pid itself (sd_notify, HUP, TERM),
and its children see neither the bundle's libraries nor its bootloader variables. Also what
the wheel and the sdist carry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import mapped_cryptography, run_kagent
from tests.fixtures.notify import FakeSystemd
from tests.integration.conftest import base_config, node_factory  # noqa: F401 - the fixture
from tests.packaging.conftest import Built, clean_env

pytestmark = pytest.mark.slow

TEMPLATES = ["systemd/kagentcontroller.service", "systemd/kagentworker.service", "openrc/kagentcontroller",
             "openrc/kagentworker"]


def run_file(built: Built, *args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(built.exe), *args], capture_output=True, text=True, cwd=cwd, env=clean_env(built, **env),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_wheel_and_sdist_carry_the_service_templates(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    assert {f"kagent/service/units/{t}" for t in TEMPLATES} <= names
    assert "kagent/cli/service.py" in names and "kagent/service/notify.py" in names
    members = {m.split("/", 1)[1] for m in tarfile.open(built.sdist).getnames() if "/" in m}
    assert {*TEMPLATES, "setup.py", "packaging/build.sh", "packaging/kagent_entry.py", "pyproject.toml"} <= members


def test_version_and_sysinfo_match_the_venv(built: Built, tmp_path: Path) -> None:
    r = run_file(built, "version", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(run_kagent("version", "--json").stdout)
    r = run_file(built, "sysinfo", "-o", "json", cwd=tmp_path)
    venv = run_kagent("sysinfo", "-o", "json")
    assert r.returncode == venv.returncode, r.stderr
    assert [c["name"] for c in json.loads(r.stdout)] == [c["name"] for c in json.loads(venv.stdout)]


def test_install_renders_the_frozen_templates_naming_the_file(built: Built, tmp_path: Path) -> None:
    r = run_file(built, "install", "controller", "--root", str(tmp_path / "root"), "--init", "systemd", "--init",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "root/etc/systemd/system/kagentcontroller.service"
    lines = unit.read_text().splitlines()
    assert f"ExecStart={built.exe} controller --init" in lines
    assert f"ConditionFileIsExecutable={built.exe}" in lines
    v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stderr
    r = run_file(built, "install", "worker", "--root", str(tmp_path / "root"), "--init", "openrc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"command='{built.exe}'" in (tmp_path / "root/etc/init.d/kagentworker").read_text().splitlines()


def test_controller_init_only(built: Built, tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    r = run_file(built, "--data-dir", str(data), "--run-dir", str(run), "controller", "--init", "--init-only",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for f in ("ca.crt", "ca.key", "admin.conf", "etcd/server.crt"):
        assert (data / "pki" / f).is_file(), f
    assert oct((data / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw if e)


def test_etcd_only_controller_from_the_file(built: Built, node_factory) -> None:  # noqa: F811
    n = node_factory()
    n.write_config(base_config(n))
    sock = n.root / "notify.sock"
    systemd = FakeSystemd(sock)
    log = (n.root / "agent.log").open("wb")
    proc = subprocess.Popen([str(built.exe), "--log-format", "json", *n.flags(), "controller", "--init",
                             "--disable-components", "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server"],
                            stdout=log, stderr=subprocess.STDOUT, env=clean_env(built, NOTIFY_SOCKET=str(sock)),
                            start_new_session=True, cwd=n.root)
    n.proc, n.log = proc, n.root / "agent.log"  # the fixture stops it by this PID, also on failure
    try:
        ready = systemd.wait_for("READY=1", 0, timeout=120)
        comps = n.wait_healthy(["etcd", "control-api"], timeout=30)
        # the file execs the unpacked agent: the pid systemd started is the agent (main pid)
        assert {pid for pid, _ in systemd.messages} == {proc.pid}
        assert (n.run / "kagent.pid").read_text().split()[0] == str(proc.pid)
        # the controller API child is started through this same file (its argv[0]), and runs
        # the same unpacked program as the agent
        api_pid = comps["control-api"]["pid"]
        binaries = {e["component"]: e["path"] for e in n.events() if e.get("event") == "component_binary"}
        assert binaries["control-api"] == str(built.exe)
        assert os.path.samefile(f"/proc/{api_pid}/exe", f"/proc/{proc.pid}/exe")
        assert _environ(api_pid).get("KAGENT_SELF") == str(built.exe)
        # a foreign child inherits nothing of the bundle
        env = _environ(comps["etcd"]["pid"])
        assert not [k for k in env if k.startswith("_PYI_") or k in ("LD_LIBRARY_PATH", "NOTIFY_SOCKET", "KAGENT_SELF")], env
        # systemd's ExecReload and stop signal the main pid: the agent itself
        os.kill(proc.pid, signal.SIGHUP)
        reloading = systemd.wait_for("RELOADING=1", ready + 1)
        systemd.wait_for("READY=1", reloading + 1)
        # the start's and the reload's PKI ran in children of this same file: not in the agent
        assert mapped_cryptography(proc.pid) == []
        assert any(e.get("event") == "pki_file_written" for e in n.events())
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        systemd.wait_for("STOPPING=1", reloading + 1)
        assert not (n.run / "etcd.pid").exists() and not (n.run / "control-api.pid").exists()
    finally:
        log.close()
        systemd.close()


def test_the_file_runs_with_every_python_of_this_host_hidden(built: Built, tmp_path: Path) -> None:
    """A host with no Python: in a private mount namespace, empty tmpfs over every Python
    install of this machine (this interpreter's prefix, the venv, Debian's stdlib dirs)."""
    hide = sorted({sys.base_prefix, sys.prefix, *map(str, Path("/usr/lib").glob("python3*")),
                   *map(str, Path("/usr/local/lib").glob("python3*"))})
    mounts = " && ".join(f"mount -t tmpfs kagent-test-hide '{d}'" for d in hide if Path(d).is_dir())
    script = (f"{mounts} && ! {sys.executable} -c pass 2>/dev/null && ! python3 -c pass 2>/dev/null && "
              f"'{built.exe}' version && '{built.exe}' --data-dir '{tmp_path}/d' --run-dir '{tmp_path}/r' "
              "controller --init --init-only")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, timeout=120, env=clean_env(built), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("kagent ")
    assert (tmp_path / "d" / "pki" / "ca.crt").is_file()


def test_the_bundle_cache_is_unpacked_once_and_checked(built: Built, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = run_file(built, "version", cwd=tmp_path, KAGENT_BUNDLE_DIR=str(cache))
    assert r.returncode == 0, r.stderr
    (entry,) = list(cache.iterdir())  # one folder named after the payload hash, no temp left
    assert len(entry.name) == 16 and (entry / "kagent").is_file()
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    stamp = (entry / "kagent").stat().st_mtime_ns
    assert run_file(built, "version", cwd=tmp_path, KAGENT_BUNDLE_DIR=str(cache)).returncode == 0
    assert (entry / "kagent").stat().st_mtime_ns == stamp  # not unpacked again
    # a cache others can write could hand root a planted kagent: refused, nothing run
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    r = run_file(built, "version", cwd=tmp_path, KAGENT_BUNDLE_DIR=str(shared))
    assert r.returncode == 4 and "writable by other users" in r.stderr and r.stdout == ""
    assert list(shared.iterdir()) == []
