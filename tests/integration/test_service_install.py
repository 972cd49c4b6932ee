"""``kagent install|uninstall|start|stop`` into a root prefix (never the host's /etc):
the unit carries every given run flag (paths absolute, the config checked first), refuses to
overwrite without --force, systemd-analyze verify accepts both units, the OpenRC scripts parse
and carry their variables; enabling through a test double of systemctl/rc-update, with the
previous file put back when enabling fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kagent.service import install as svc
from kagent.service.render import Init, ServiceSpec
from tests.conftest import run_kagent

UNIT = "etc/systemd/system/kagent{role}.service"
SCRIPT = "etc/init.d/kagent{role}"


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify without a booted systemd (this container): it still parses
    every directive and checks that the named binaries exist; problems go to stderr."""
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})


def test_install_writes_the_given_flags_and_verify_accepts_both_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cfg = tmp_path / "kagent.yaml"
    assert run_kagent("config", "create").returncode == 0
    cfg.write_text(run_kagent("config", "create").stdout)
    r = run_kagent("-c", str(cfg), "install", "controller", "--root", str(root), "--init", "systemd", "--init",
                   "--data-dir", str(tmp_path / "data"), "--disable-components", "konnectivity-server",
                   "--log-dir", "relative/logs", "-e", "HTTPS_PROXY=http://proxy:3128", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    unit = root / UNIT.format(role="controller")
    assert f"installed {unit} (systemd)" in r.stdout
    text = unit.read_text()
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert exec_start == (f"ExecStart={sys.executable} -P -m kagent controller --config={cfg} --data-dir={tmp_path / 'data'} "
                          f"--init --disable-components=konnectivity-server --log-dir={tmp_path / 'relative/logs'}")
    assert 'Environment="HTTPS_PROXY=http://proxy:3128"' in text.splitlines()
    assert oct(unit.stat().st_mode & 0o777) == "0o644"

    r = run_kagent("install", "worker", "--root", str(root), "--init", "systemd", "--labels", "zone=a")
    assert r.returncode == 0, r.stderr
    for role in ("controller", "worker"):
        v = verify(root / UNIT.format(role=role))
        assert v.returncode == 0 and v.stderr.strip() == "", v.stderr

    # the check is not vacuous: verify does report a broken directive and a missing binary
    broken = tmp_path / "kagentbroken.service"
    broken.write_text(text.replace("Type=notify", "Type=notfy"))
    assert "notfy" in verify(broken).stderr
    missing = tmp_path / "kagentmissing.service"
    missing.write_text(text.replace(f"ExecStart={sys.executable}", "ExecStart=/nonexistent/kagent"))
    assert verify(missing).returncode != 0


@pytest.mark.parametrize("role", ["controller", "worker"])
def test_openrc_scripts_parse_and_carry_their_variables(tmp_path: Path, role: str) -> None:
    r = run_kagent("install", role, "--root", str(tmp_path), "--init", "openrc", "--labels", "a=b c",
                   "-e", "NO_PROXY=10.0.0.0/8")
    assert r.returncode == 0, r.stderr
    script = tmp_path / SCRIPT.format(role=role)
    assert oct(script.stat().st_mode & 0o777) == "0o755"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    probe = ('. "$1"; eval "set -- $command_args"; printf "%s\\0" "$command" "$supervisor" "$name" '
             '"$supervise_daemon_args" "$retry" "$rc_ulimit" "$NO_PROXY" "$@"')
    out = subprocess.run(["sh", "-c", probe, "sh", str(script)], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "RC_SVCNAME": f"kagent{role}"}).stdout.split("\0")[:-1]
    assert out == [sys.executable, "supervise-daemon", f"kagent{role}",
                   f"--stdout /var/log/kagent{role}.log --stderr /var/log/kagent{role}.err", "SIGTERM/120/SIGKILL/5",
                   "-n 999999 -u unlimited", "10.0.0.0/8", "-P", "-m", "kagent", role, "--labels=a=b c"]


def test_existing_unit_is_kept_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    args = ["install", "controller", "--root", str(tmp_path), "--init", "systemd"]
    assert run_kagent(*args, "--labels", "v=1").returncode == 0
    unit = tmp_path / UNIT.format(role="controller")
    first = unit.read_bytes()
    r = run_kagent(*args, "--labels", "v=2")
    assert r.returncode == 4
    assert f"error: {unit}: already exists" in r.stderr and "--force" in r.stderr
    assert unit.read_bytes() == first
    r = run_kagent(*args, "--labels", "v=2", "--force")
    assert r.returncode == 0, r.stderr
    assert "--labels=v=2" in unit.read_text() and "--labels=v=1" not in unit.read_text()


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kagent.dev/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    port: 70000\n")
    base = ["--root", str(tmp_path / "root"), "--init", "systemd"]
    r = run_kagent("-c", str(bad), "install", "controller", *base)
    assert r.returncode == 3 and "spec.api.port" in r.stderr
    r = run_kagent("install", "controller", *base, "-c", "-", input="")
    assert r.returncode == 2 and "stdin" in r.stderr
    r = run_kagent("install", "worker", *base, "--init")
    assert r.returncode == 2 and "controller run flag" in r.stderr
    r = run_kagent("install", "worker", "--root", str(tmp_path / "root"), "--init", "upstart")
    assert r.returncode == 2 and "'upstart' is not an init system" in r.stderr
    r = run_kagent("install", "worker", *base, "-e", "BAD NAME=1")
    assert r.returncode == 2 and "-e" in r.stderr
    r = run_kagent("install", "worker", *base, "--start")
    assert r.returncode == 2 and "--start" in r.stderr
    assert not (tmp_path / "root").exists()


def test_uninstall_from_a_prefix_is_idempotent(tmp_path: Path) -> None:
    for role, init in (("controller", "systemd"), ("worker", "openrc")):
        assert run_kagent("install", role, "--root", str(tmp_path), "--init", init).returncode == 0
    found = svc.find_installed(tmp_path)
    assert [(u.role, u.init) for u in found] == [("controller", Init.SYSTEMD), ("worker", Init.OPENRC)]
    r = run_kagent("uninstall", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / UNIT.format(role="controller")).exists() and not (tmp_path / SCRIPT.format(role="worker")).exists()
    assert svc.find_installed(tmp_path) == []
    r = run_kagent("uninstall", "--root", str(tmp_path))
    assert r.returncode == 0 and "no kagent service installed" in r.stderr


def test_init_is_detected_from_the_prefix(tmp_path: Path) -> None:
    r = run_kagent("install", "worker", "--root", str(tmp_path))
    assert r.returncode == 4 and "--init systemd" in r.stderr
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "openrc-run").write_text("")
    assert run_kagent("install", "worker", "--root", str(tmp_path)).returncode == 0
    assert (tmp_path / SCRIPT.format(role="worker")).exists()


def test_start_and_stop_need_an_installed_service() -> None:
    if svc.find_installed():
        pytest.skip("this host has a kagent service installed")  # never the case on CI machines
    for action in ("start", "stop"):
        r = run_kagent(action, "--init", "systemd")
        assert r.returncode == 4 and "no kagent service is installed" in r.stderr


# ---- enabling through the init system (a test double of its tools on PATH) ------------------

@pytest.fixture
def fake_init_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """systemctl, rc-update and rc-service that record their argv and exit $FAKE_RC."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("systemctl", "rc-update", "rc-service"):
        p = bindir / tool
        p.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n[ -n "$FAKE_FAIL" ] && echo "Failed: $FAKE_FAIL" >&2 '
                     f'&& exit 1\nexit 0\n')
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return log


def _spec(init: Init, label: str) -> ServiceSpec:
    return ServiceSpec(role="controller", init=init, executable=Path(shutil.which("sh") or "/bin/sh"),
                       args=(f"--labels=v={label}",))


def test_enable_start_disable_through_the_init_tools(tmp_path: Path, fake_init_tools: Path) -> None:
    root = tmp_path / "root"
    svc.install(_spec(Init.SYSTEMD, "1"), root=root, start=True, manage=True)
    assert fake_init_tools.read_text().splitlines() == [
        "systemctl daemon-reload", "systemctl enable kagentcontroller.service", "systemctl start kagentcontroller.service"]
    svc.control("stop", root=root)
    svc.remove_installed(root, manage=True)
    assert fake_init_tools.read_text().splitlines()[3:] == [
        "systemctl stop kagentcontroller.service", "systemctl disable --now kagentcontroller.service",
        "systemctl daemon-reload"]
    fake_init_tools.unlink()
    svc.install(_spec(Init.OPENRC, "1"), root=root, start=True, manage=True)
    svc.remove_installed(root, manage=True)
    assert fake_init_tools.read_text().splitlines() == [
        "rc-update add kagentcontroller default", "rc-service kagentcontroller start",
        "rc-service kagentcontroller stop", "rc-update del kagentcontroller default"]
    assert svc.find_installed(root) == []


def test_a_failed_enable_puts_the_previous_unit_back(tmp_path: Path, fake_init_tools: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    svc.install(_spec(Init.SYSTEMD, "old"), root=root, manage=True)
    unit = root / UNIT.format(role="controller")
    before = unit.read_bytes()
    monkeypatch.setenv("FAKE_FAIL", "unit is masked")
    with pytest.raises(svc.PreconditionError, match="unit is masked"):
        svc.install(_spec(Init.SYSTEMD, "new"), root=root, force=True, manage=True)
    assert unit.read_bytes() == before
    other = tmp_path / "other"
    with pytest.raises(svc.PreconditionError):
        svc.install(_spec(Init.SYSTEMD, "new"), root=other, manage=True)
    assert not (other / UNIT.format(role="controller")).exists()  # a first install that failed leaves nothing
