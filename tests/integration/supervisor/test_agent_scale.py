"""The engine in-process with 100 real children: no zombie, no leaked fd, no thread left."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

from kagent.components.spec import ComponentSpec
from kagent.paths import Paths
from kagent.supervisor.manager import run_agent
from kagent.supervisor.policy import RestartPolicy
from tests.conftest import open_fds


def _children_of_us() -> list[tuple[int, str]]:
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[1] == me:
                out.append((int(entry), stat[0]))
    return out


def test_100_children_started_killed_and_stopped_leave_no_zombie_and_no_fd(tmp_path):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    specs = [ComponentSpec(name=f"s{i:03d}", binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0)
             for i in range(100)]
    fds_before = open_fds()
    threads_before = set(threading.enumerate())  # other tests' threads may end meanwhile
    seen: dict[str, object] = {}

    async def main() -> int:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run_agent(paths=paths, role="worker", load_specs=lambda: specs,
                                               on_ready=ready.set, policy=RestartPolicy(min_uptime=0.0)))
        await asyncio.wait_for(ready.wait(), 30)
        pids = {s.name: int(paths.pidfile(s.name).read_text()) for s in specs}
        seen["first"] = pids
        seen["running"] = len([p for p, st in _children_of_us() if st != "Z"])
        for pid in list(pids.values())[:50]:  # half of them die at once and come back
            os.kill(pid, signal.SIGKILL)
        for _ in range(500):
            await asyncio.sleep(0.01)
            now = {s.name: int(t) for s in specs if (t := _read(paths.pidfile(s.name)))}
            if len(now) == 100 and len(set(now.values()) - set(pids.values())) == 50:
                break
        seen["second"] = now
        os.kill(os.getpid(), signal.SIGTERM)
        return await task

    assert asyncio.run(main()) == 0
    assert seen["running"] == 100
    assert len(set(seen["second"].values()) - set(seen["first"].values())) == 50
    assert _children_of_us() == []  # every child reaped: no zombie, none left running
    assert open_fds() == fds_before, "no fd left open"
    assert set(threading.enumerate()) - threads_before == set(), "the agent left a thread running"
    assert sorted(p.name for p in paths.run_dir.iterdir()) == ["kagent.lock"]


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip() or None
    except FileNotFoundError:
        return None
