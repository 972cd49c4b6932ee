"""kagent.join.leave.removed_watch on a bad day: this member removed by another controller
while the state file cannot be written (a full disk). etcd is retired all the same (it would
otherwise restart forever, exiting each time), and the watch goes on."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kagent import log
from kagent.join import controller as cj
from kagent.join import leave
from kagent.paths import Paths


class _Manager:
    """The manager as removed_watch sees it: one exited etcd whose last output says removed."""

    def __init__(self) -> None:
        etcd = SimpleNamespace(pid=None, last_exit=object(), gen=1, stop_wanted=False)
        self.m = SimpleNamespace(units={"etcd": etcd})
        self.stop_requested = False
        self.log = log.get(component="test")
        self.submitted: list[Any] = []
        self.waits = 0

    async def wait_until(self, pred: Any) -> bool:
        self.waits += 1
        if pred(self.m):
            return True
        await asyncio.sleep(3600)  # nothing else happens in this test
        return False

    async def output_tail(self, name: str) -> list[str]:
        return ['{"level":"warn","msg":"' + leave.REMOVED_LINE + '"}']

    async def submit(self, job: Any) -> tuple[int, Any]:
        self.submitted.append(job)
        return 200, {}


def test_a_removal_seen_while_the_state_cannot_be_saved_still_retires_etcd(tmp_path: Path, monkeypatch) -> None:
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    paths.data_dir.mkdir(parents=True)
    cj.save_state(paths, cj.MemberState(name="node-a-1", state="joined"))

    def full(*_a: Any, **_kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cj, "save_state", full)
    mgr = _Manager()

    async def main() -> None:
        task = asyncio.ensure_future(leave.removed_watch(paths)(mgr))  # type: ignore[arg-type]
        for _ in range(100):
            if mgr.waits >= 2 or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception() if task.done() else None  # watching on
        task.cancel()

    asyncio.run(main())
    assert len(mgr.submitted) == 1  # etcd retired although "left" could not be written
    assert cj.load_state(paths).state == "joined"
