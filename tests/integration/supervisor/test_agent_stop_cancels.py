"""The engine in-process: a stop (SIGTERM) cancels a reload or a renewal whose PKI child hangs:
the child is killed by pid and reaped, the command is answered as cancelled, and the normal
stop runs at once (not after the PKI child's 300 s timeout, nor systemd's TimeoutStopSec)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kagent.components.spec import ComponentSpec
from kagent.paths import Paths
from kagent.pki.child import apply_in_child
from kagent.supervisor.manager import Hooks, run_agent
from tests.conftest import kagent_env
from tests.fixtures.pki_env import utcnow
from tests.integration.supervisor.conftest import alive
from tests.unit.pki.test_pki_child import _plan

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("command", ["reload", "renew"])
def test_sigterm_cancels_a_command_whose_pki_child_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         command: str) -> None:
    for k, v in kagent_env().items():
        monkeypatch.setenv(k, v)
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    specs = [ComponentSpec(name="etcd", binary=Path("/bin/sleep"), args=("60",))]
    pid_file = tmp_path / "pki-child.pid"
    # stands in for a PKI child stuck on a hung file system: it says its pid, then never answers
    hang = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
    loads: list[int] = []

    def pki_step() -> list[Path]:
        return list(apply_in_child(_plan(tmp_path), now=utcnow(), argv=hang, timeout=60))

    def load_specs() -> list[ComponentSpec]:
        loads.append(1)
        if len(loads) > 1:  # the reload's PKI step
            pki_step()
        return specs

    done: list[dict[str, Any]] = []
    hooks = Hooks(on_reload_done=[done.append])

    pids: list[int] = []  # killed by pid at the end, also when the test fails

    async def main() -> tuple[int, float, int, int]:
        ready = asyncio.Event()
        hooks.on_ready.append(ready.set)
        task = asyncio.ensure_future(run_agent(
            paths=paths, role="controller", load_specs=load_specs, hooks=hooks,
            renew=pki_step if command == "renew" else None, renew_interval=0.2 if command == "renew" else 3600))
        await asyncio.wait_for(ready.wait(), 10)
        comp = int(paths.pidfile("etcd").read_text())
        pids.append(comp)
        if command == "reload":
            os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(1500):
            if pid_file.is_file() and pid_file.read_text():
                break
            await asyncio.sleep(0.02)
        child = int(pid_file.read_text())
        pids.append(child)
        t0 = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        rc = await asyncio.wait_for(task, 20)
        return rc, time.monotonic() - t0, comp, child

    try:
        rc, took, comp, child = asyncio.run(main())
        assert rc == 0
        assert took < 5, f"the stop waited {took:.1f} s behind the hung PKI child"
        assert not alive(comp), "the component outlived the agent"
        assert not alive(child), "the PKI child outlived the agent"
        with pytest.raises(ProcessLookupError):  # reaped, not a zombie
            os.kill(child, 0)
        if command == "reload":
            assert len(done) == 1 and done[0]["rejected"] and "the agent is stopping" in done[0]["error"]
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
