"""Shared test helpers: run the CLI as a subprocess, free loopback ports, temp data/run dirs,
and a registry of started processes that are always stopped by PID, also when a test fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


def kagent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("KAGENT_CONFIG", None)
    env.pop("KAGENT_DATA_DIR", None)
    env.pop("KAGENT_RUN_DIR", None)
    if extra:
        env.update(extra)
    return env


def kagent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kagent", *args]


def run_kagent(*args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(kagent_cmd(*args), input=input, capture_output=True, text=True, env=kagent_env(env),
                          timeout=timeout, cwd=cwd)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_fds() -> dict[int, str]:
    """This process's open fds and what each is (``readlink``), after a garbage collection (an
    object an earlier test left behind would otherwise close its fd in the middle of a
    comparison), without the fd that reads the listing."""
    import gc

    gc.collect()
    own = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = {}
        for name in os.listdir(own):
            fd = int(name)
            if fd != own:
                try:
                    out[fd] = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    pass  # closed meanwhile
        return out
    finally:
        os.close(own)


def mapped_cryptography(pid: int) -> list[str]:
    """The files of the ``cryptography`` package mapped into process ``pid`` (its native
    ``_rust`` module once anything imported it): read from /proc, not from the process itself."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if "/cryptography/" in line})


def traversable_tmpdir(prefix: str) -> Path:
    """A fresh dir under /tmp that every user may traverse (0711, not listable): a component
    kagent runs as its own system user (etcd as ``etcd``) must get through every dir above its
    data dir. pytest's ``tmp_path`` (under a 0700 ``pytest-of-root``) is not such a dir, and the
    agent refuses it (exit 4 naming it). The caller removes it."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o711)
    return d


# spec.install.users for tests: existing users only, so a test never creates one on the host.
# etcd runs as Debian's `etcd` (scripts/setup.sh installs etcd-server); the Kubernetes test
# doubles run as root, because they are scripts of a venv interpreter under /root.
TEST_USERS = {"etcdUser": "etcd", "kineUser": "root", "konnectivityUser": "root", "kubeAPIserverUser": "root",
              "kubeSchedulerUser": "root"}


@dataclass
class Dirs:
    data: Path
    run: Path
    etc: Path

    def flags(self) -> list[str]:
        return ["--data-dir", str(self.data), "--run-dir", str(self.run)]


@pytest.fixture
def kdirs(tmp_path: Path) -> Dirs:
    d = Dirs(data=tmp_path / "data", run=tmp_path / "run", etc=tmp_path / "etc")
    d.etc.mkdir()
    return d


class ProcRegistry:
    """Processes a test started; ``stop_all`` TERMs then KILLs each by PID (and its group)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
        self.pids: list[int] = []

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def track_pid(self, pid: int) -> None:
        self.pids.append(pid)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def procs():
    reg = ProcRegistry()
    try:
        yield reg
    finally:
        reg.stop_all()


@pytest.fixture(autouse=True)
def _no_log_hold_outlives_its_test():
    """A test that holds log lines (``log.configure(hold=True)``, as the agent commands do) has
    them released when it ends: else the hold's timer thread (``log.HOLD_MAX`` later) would
    write them and set structlog up again in the middle of another test, wiping that test's
    ``structlog.testing.capture_logs``. (While holding, capture_logs sees nothing: the lines
    wait for the release; a test that captures logs configures without ``hold``.)"""
    yield
    from kagent import log

    if log.holding():
        log.release()
