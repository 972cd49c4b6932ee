"""``kagent reset`` against real mounts and processes (the tests run as root): bind mounts and
tmpfs below the data dir are unmounted deepest first, a tmpfs on the data dir itself stays
mounted and is only emptied, symlinks pointing outside are removed as links with their targets
untouched, a running agent is refused, leftover marked processes and a leftover containerd
with a running container are stopped and nothing else is, and a second run changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kagent.reset import parse_mountinfo
from kagent.supervisor.process import instance_id
from tests.conftest import run_kagent
from tests.fixtures.oci import build_oci_tarball
from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


def _mounts_below(root: Path) -> list[str]:
    return [m.point for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            if m.point == str(root) or m.point.startswith(str(root) + "/")]


@pytest.fixture
def mounts(tmp_path):
    """Mount helper that always unmounts what it mounted (deepest first), also on failure."""
    made: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True)
        made.append(target)

    yield mount
    for t in reversed(made):
        while str(t) in _mounts_below(t):
            if subprocess.run(["umount", "-l", str(t)], capture_output=True).returncode != 0:
                break


def _sleeper(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], env={**os.environ, **env}, start_new_session=True)


def _reset(data: Path, run: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kagent("--data-dir", str(data), "--run-dir", str(run), "reset", *args, timeout=120)


def test_reset_unmounts_below_keeps_the_data_dir_mount_and_never_follows_symlinks(tmp_path, mounts):
    data, run, outside = tmp_path / "data", tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    mounts("-t", "tmpfs", "-o", "size=16m", "kagent-test-data", target=data)  # the operator's own disk
    (data / "pki").mkdir()
    (data / "pki" / "ca.key").write_text("k")
    (data / "to-outside").symlink_to(outside)
    (data / "to-root").symlink_to("/")
    (data / "to-etc").symlink_to("/etc")
    (data / "pki" / "passwd").symlink_to("/etc/passwd")
    mounts("--bind", str(outside), target=data / "kubelet" / "pods" / "a b" / "vol")  # a space: octal-escaped in mountinfo
    mounts("-t", "tmpfs", "-o", "size=4m", "kagent-test-inner", target=data / "kubelet" / "plugins")
    mounts("-t", "tmpfs", "-o", "size=4m", "kagent-test-nested", target=data / "kubelet" / "plugins" / "deeper")
    (data / "kubelet" / "plugins" / "deeper" / "f").write_text("x")
    (run / "containerd").mkdir(parents=True)
    mounts("-t", "tmpfs", "-o", "size=4m", "kagent-test-run", target=run / "containerd" / "rootfs")
    other = _sleeper({"KAGENT_MANAGED": "someone-else"})
    unmarked = _sleeper({})
    ours = _sleeper({"KAGENT_MANAGED": instance_id(run.absolute()), "KAGENT_COMPONENT": "etcd"})
    try:
        dry = _reset(data, run, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would stop: pid {ours.pid} etcd" in dry.stdout
        assert str(other.pid) not in dry.stdout and str(unmarked.pid) not in dry.stdout
        lines = [ln.removeprefix("would unmount: ") for ln in dry.stdout.splitlines() if ln.startswith("would unmount")]
        assert lines.index(str(data / "kubelet" / "plugins" / "deeper")) < lines.index(str(data / "kubelet" / "plugins"))
        assert str(data / "kubelet" / "pods" / "a b" / "vol") in lines and str(data) not in lines
        assert f"would empty: {data} (a mount point: kept mounted)" in dry.stdout
        assert ours.poll() is None and (data / "pki" / "ca.key").exists()  # a dry run changes nothing
        assert len(_mounts_below(data)) == 4

        r = _reset(data, run)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ours.wait(15) == -signal.SIGTERM
        assert other.poll() is None and unmarked.poll() is None  # not provably ours: untouched
        assert _mounts_below(data) == [str(data)]  # still mounted, only emptied
        assert os.listdir(data) == []
        assert not run.exists()
        assert (outside / "precious").read_text() == "keep me"  # through the symlink and the bind mount
        assert Path("/etc/passwd").exists() and os.listdir("/etc")

        again = _reset(data, run)
        assert again.returncode == 0 and "nothing to reset" in again.stdout
        assert _mounts_below(data) == [str(data)] and not run.exists()
    finally:
        for p in (other, unmarked, ours):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_reset_does_not_delete_through_a_mount_it_could_not_remove(tmp_path, mounts):
    """A mount that appears after the plan (or could not be unmounted) fences the walk."""
    from kagent.reset import ResetReport, build_plan, remove_trees
    from kagent.paths import Paths

    data, run, outside = tmp_path / "data", tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (data / "x").mkdir(parents=True)
    paths = Paths.build(data, run)
    plan = build_plan(paths)  # planned before the mount exists
    mounts("--bind", str(outside), target=data / "x" / "late")
    report = ResetReport(plan=plan)
    remove_trees(plan, report)
    assert [(f.path, f.what) for f in report.failures] == [(str(data / "x" / "late"), "is still a mount point; not removed")]
    assert (outside / "precious").read_text() == "keep"


def test_reset_refuses_a_running_agent_and_names_its_pid(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd"])
    r = n.kagent("reset")
    assert r.returncode == 4
    assert f"kagent (pid {n.proc.pid}) is running" in r.stderr
    assert (n.data / "pki" / "ca.key").exists()
    assert n.stop() == 0
    r = n.kagent("reset")
    assert r.returncode == 0, r.stderr
    assert not n.data.exists() and not n.run.exists()


def test_reset_stops_a_leftover_containerd_its_shim_and_container(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    (n.data / "images").mkdir(parents=True)
    build_oci_tarball(n.data / "images" / "busybox.tar", "docker.io/library/kagent-reset:1")
    n.start("worker", "--disable-components", "kubelet")
    comps = n.wait_healthy(["containerd"], timeout=90)
    containerd_pid = comps["containerd"]["pid"]
    deadline = time.monotonic() + 60
    while "docker.io/library/kagent-reset:1" not in n.kagent("ctr", "images", "ls", "-q").stdout.split():
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cid = f"kagent-reset-{os.getpid()}"  # runc's state dir is shared by every containerd on the host: an id of its own
    r = n.kagent("ctr", "run", "-d", "docker.io/library/kagent-reset:1", cid, "/bin/sleep", "600", timeout=120)
    assert r.returncode == 0, r.stderr
    task = n.kagent("ctr", "tasks", "ls").stdout
    container_pid = int(next(ln.split()[1] for ln in task.splitlines() if ln.startswith(cid)))
    os.kill(n.proc.pid, signal.SIGKILL)  # the agent dies; containerd, its shim and the container stay
    n.proc.wait(10)
    shim_pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_shim_for(int(p), n.run / "containerd.sock")]
    assert shim_pids and os.path.exists(f"/proc/{containerd_pid}") and os.path.exists(f"/proc/{container_pid}")
    assert any(m.startswith(str(n.run)) for m in _mounts_below(n.root))  # the container's rootfs

    dry = n.kagent("reset", "--dry-run")
    for pid in (containerd_pid, container_pid, *shim_pids):
        assert f"would stop: pid {pid} " in dry.stdout, dry.stdout
    r = n.kagent("reset", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for pid in (containerd_pid, container_pid, *shim_pids):
        assert _gone(pid), pid
    assert _mounts_below(n.root) == []
    assert not n.data.exists() and not n.run.exists()


def _is_shim_for(pid: int, sock: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and b"containerd-shim" in argv[0] and str(sock).encode() in argv


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_reset_removes_only_the_service_that_runs_its_data_dir(tmp_path):
    root = tmp_path / "root"
    ours, other = tmp_path / "our data", tmp_path / "other"
    run = tmp_path / "run"
    r = run_kagent("--data-dir", str(ours), "install", "controller", "--root", str(root), "--init", "systemd")
    assert r.returncode == 0, r.stderr
    r = run_kagent("--data-dir", str(other), "install", "worker", "--root", str(root), "--init", "systemd")
    assert r.returncode == 0, r.stderr
    units = sorted(p.name for p in (root / "etc" / "systemd" / "system").iterdir())
    assert units == ["kagentcontroller.service", "kagentworker.service"]
    ours.mkdir()
    (ours / "pki").mkdir()

    dry = _reset(ours, run, "--root", str(root), "--dry-run")
    assert f"would remove service: {root / 'etc/systemd/system/kagentcontroller.service'}" in dry.stdout, dry.stdout
    assert "kagentworker.service runs another data dir: left installed" in dry.stdout
    r = _reset(ours, run, "--root", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed service kagentcontroller" in r.stdout
    assert sorted(p.name for p in (root / "etc" / "systemd" / "system").iterdir()) == ["kagentworker.service"]
    assert not ours.exists()
    again = _reset(ours, run, "--root", str(root))
    assert again.returncode == 0 and "nothing to reset" in again.stdout
