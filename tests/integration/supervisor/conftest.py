"""A real agent process (tests/fixtures/agent_entry.py) driven through its JSON spec file,
its signals and its status socket. Every process it leaves behind is killed by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from kagent.supervisor import status as status_mod
from kagent.supervisor.process import MARKER_ENV, instance_id
from tests.conftest import REPO, kagent_env

FAKE = REPO / "tests" / "fixtures" / "fake_component.py"
ENTRY = REPO / "tests" / "fixtures" / "agent_entry.py"


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def marked_pids(instance: str) -> dict[int, str]:
    """pid -> component for every live process carrying this instance's marker."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{MARKER_ENV}={instance}".encode() in env and alive(int(entry)):
            comp = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"KAGENT_COMPONENT=")), "?")
            out[int(entry)] = comp
    return out


def fake(name: str, mode: str = "sleep", *args: str, **kw: Any) -> dict[str, Any]:
    """A component spec dict running the fake component."""
    return {"name": name, "binary": sys.executable, "args": [str(FAKE), mode, *args], **kw}


class Agent:
    def __init__(self, tmp: Path, procs: Any) -> None:
        self.tmp = tmp
        self.run_dir = tmp / "run"
        self.spec_file = tmp / "specs.json"
        self.events = tmp / "events.txt"
        self.stderr_path = tmp / "agent.stderr"
        self.procs = procs
        self.proc: subprocess.Popen[bytes] | None = None
        self.instance = instance_id(self.run_dir)

    def write(self, components: list[dict[str, Any]]) -> None:
        tmp = self.spec_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"components": components}))
        tmp.replace(self.spec_file)

    def start(self, *extra: str, wait_ready: bool = True) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(ENTRY), "--run-dir", str(self.run_dir), "--specs", str(self.spec_file), *extra]
        readies = self.log_text().count('"agent_ready"')
        self.stderr_fh = open(self.stderr_path, "ab")
        self.proc = self.procs.popen(argv, stdout=subprocess.DEVNULL, stderr=self.stderr_fh, env=kagent_env())
        if wait_ready:
            wait_for(lambda: self.log_text().count('"agent_ready"') > readies or self.proc.poll() is not None, 20, what="agent_ready")
            assert self.proc.poll() is None, self.log_text()
        return self.proc

    def log_text(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                if event is None or d.get("event") == event:
                    out.append(d)
        return out

    def status(self) -> dict[str, Any]:
        code, doc = status_mod.request(self.run_dir / "status.sock", "GET", "/status")
        assert code == 200
        return doc

    def comp(self, name: str) -> dict[str, Any]:
        """The component's status row ({} while it is not in the set)."""
        return next((c for c in self.status()["components"] if c["name"] == name), {})

    def pids(self) -> dict[str, int | None]:
        return {c["name"]: c["pid"] for c in self.status()["components"]}

    def pidfile(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text())
        except FileNotFoundError:
            return None

    def fake_events(self) -> list[tuple[str, str, int, int]]:
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text().splitlines():
            name, what, ns, pid = line.split()
            out.append((name, what, int(ns), int(pid)))
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        for pid in marked_pids(self.instance):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def agent(tmp_path: Path, procs: Any):
    a = Agent(tmp_path, procs)
    try:
        yield a
    finally:
        procs.stop_all()
        a.cleanup()


@pytest.fixture
def free_port_() -> int:
    from tests.conftest import free_port

    return free_port()
