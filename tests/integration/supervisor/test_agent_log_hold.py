"""The agent's held log lines (``log.configure(hold=True)``, as ``kagent controller``/``worker``
set up): the supervisor releases them once its first children are on their way, with no
spawn of the initial burst still in the launcher's pool, and every line of the start comes
out in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from kagent import log
from kagent.components.spec import CommandCheck, ComponentSpec
from kagent.paths import Paths
from kagent.supervisor.manager import Manager
from kagent.supervisor.policy import RestartPolicy
from tests.integration.supervisor.test_agent_early_respawn import _agent

N = 12  # more than one per turn of the loop: the launcher's pool takes the rest


@pytest.fixture
def held(monkeypatch):
    saved, was = structlog.get_config(), log._configured
    monkeypatch.setattr(log, "HOLD_MAX", 600.0)  # only the supervisor releases
    log.configure(fmt="json", hold=True)
    yield
    log.release()
    structlog.configure(**saved)
    log._configured = was


def test_the_supervisor_releases_held_lines_after_its_initial_burst(tmp_path, held, monkeypatch, capsys):
    # "gate" turns healthy only once the lines were released: a release at the end of the
    # initial start (after every component is ready) would fail the start
    marker = tmp_path / "released"
    specs = [ComponentSpec(name=f"c{i:02d}", binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0)
             for i in range(N - 1)]
    specs.append(ComponentSpec(name="gate", binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0,
                               health=CommandCheck(argv=("test", "-e", str(marker))), startup_timeout=10.0))
    seen_at_release: list[tuple[int, int]] = []
    real_release = log.release
    mgrs: list[Manager] = []
    real_init = Manager.__init__

    def init(self: Manager, **kw: Any) -> None:
        real_init(self, **kw)
        mgrs.append(self)

    def release() -> None:
        if log.holding() and mgrs:
            seen_at_release.append((len(mgrs[0].children), mgrs[0].launcher.inflight))
            marker.touch()
        real_release()

    monkeypatch.setattr(Manager, "__init__", init)
    monkeypatch.setattr(log, "release", release)

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        seen["holding"] = log.holding()

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0), body, specs=specs)
    assert rc == 0
    assert seen["holding"] is False
    assert seen_at_release == [(N, 0)], "released once, with every child of the burst spawned and none in the pool"
    events = [json.loads(ln)["event"] for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    assert events[0] == "agent_starting"
    assert events.count("component_started") == N
    assert events.index("agent_ready") > max(i for i, e in enumerate(events) if e == "component_started")
