"""The restart path in-process over real children. The respawn started in the pidfd
callback, before the reap and the transition (``Manager._respawn_early``): the replacement
is the one the machine's ``Spawn`` gets, and one the machine did not ask for is killed and
reaped. A component's output pipes (``process.Output``), kept from one child to the next:
the same pipes, lines not joined across children, given back when the component is done."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kagent.components.spec import ComponentSpec
from kagent.paths import Paths
from kagent.supervisor import machine as sm
from kagent.supervisor import process
from kagent.supervisor.manager import Hooks, Manager, run_agent
from kagent.supervisor.policy import RestartPolicy
from tests.conftest import open_fds
from tests.integration.supervisor.test_agent_scale import _children_of_us

SPECS = [ComponentSpec(name=n, binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0) for n in ("a", "b")]


async def _until(cond: Any, what: str, timeout: float = 10.0) -> Any:
    for _ in range(int(timeout / 0.01)):
        v = cond()
        if v:
            return v
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _agent(tmp_path: Path, policy: RestartPolicy, body: Any, specs: list[ComponentSpec] = SPECS,
           log_dir: Path | None = None) -> tuple[int, dict[str, Any]]:
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    fds_before = open_fds()
    seen: dict[str, Any] = {"paths": paths}
    hooks = Hooks()

    async def grab(mgr: Manager) -> None:
        seen["mgr"] = mgr
        await asyncio.Event().wait()

    hooks.tasks.append(("grab", grab))

    async def main() -> int:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run_agent(paths=paths, role="worker", load_specs=lambda: specs,
                                               on_ready=ready.set, policy=policy, hooks=hooks, log_dir=log_dir))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await _until(lambda: "mgr" in seen, "the manager")
            await body(seen["mgr"], paths, seen)
        finally:
            if not task.done():  # (its SIGTERM handler is ours only while it runs)
                os.kill(os.getpid(), signal.SIGTERM)
        return await task

    rc = asyncio.run(main())
    assert _children_of_us() == [], "every child reaped: no zombie, none left running"
    assert open_fds() == fds_before, "no fd left open"
    return rc, seen


def test_a_long_run_is_replaced_by_exactly_one_child_which_the_machine_knows(tmp_path):
    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        old = mgr.m.unit("a").pid
        b = mgr.m.unit("b").pid
        os.kill(old, signal.SIGKILL)
        new = await _until(lambda: (u := mgr.m.unit("a")).pid not in (None, old) and u.pid, "a respawned")
        await _until(lambda: paths.pidfile("a").read_text().strip() == str(new), "its pidfile")
        live = sorted(pid for pid, st in _children_of_us() if st != "Z")
        seen.update(live=live, new=new, b=b, unit=mgr.m.unit("a"), early=dict(mgr._early))

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0), body)
    assert rc == 0
    assert seen["live"] == sorted([seen["new"], seen["b"]]), "one replacement, nothing else started"
    u = seen["unit"]
    assert (u.restarts, u.spawns, u.phase) == (1, 2, sm.Phase.RUNNING)
    assert seen["early"] == {}, "the replacement was claimed"


def test_a_replacement_the_machine_did_not_ask_for_is_killed_and_reaped(tmp_path, monkeypatch):
    # a wrong answer from the predicate (what a bug in it would do): the transition backs the
    # short run off, so the replacement started early must go, and nothing else changes
    monkeypatch.setattr(sm, "respawns_at_once", lambda m, name, gen, pid, now: m.units[name].spec)

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        old = mgr.m.unit("a").pid
        b = mgr.m.unit("b").pid
        os.kill(old, signal.SIGKILL)
        await _until(lambda: mgr.m.unit("a").phase is sm.Phase.BACKOFF, "a backing off")
        await _until(lambda: sorted(p for p, st in _children_of_us() if st != "Z") == [b], "the replacement gone")
        await _until(lambda: not [p for p, st in _children_of_us() if st == "Z"], "it reaped")
        seen.update(unit=mgr.m.unit("a"), early=dict(mgr._early), b_after=mgr.m.unit("b").pid, b=b)

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=60.0, backoff_initial=30.0), body)
    assert rc == 0
    assert (seen["unit"].restarts, seen["unit"].pid) == (0, None)
    assert seen["early"] == {}
    assert seen["b_after"] == seen["b"], "the other component was not touched"


def _pipes(pid: int) -> tuple[str, str]:
    return os.readlink(f"/proc/{pid}/fd/1"), os.readlink(f"/proc/{pid}/fd/2")


@pytest.mark.parametrize("handoff", [False, True], ids=["in-the-loop", "hand-off"])
def test_a_component_keeps_its_pipes_from_child_to_child_and_lines_stay_apart(tmp_path, monkeypatch, handoff):
    # each child prints its pid without a newline at once, then sleeps: a cut-off last
    # line, then the next child's first, in the same pipes; also when the respawns go
    # through the hand-off thread (an agent with many components), which must keep no copy
    # of the pipes (else they would not close below)
    if handoff:
        monkeypatch.setattr(process, "HANDOFF_AT", 1)
    script = 'printf "gen-%s" $$; printf "err-%s" $$ >&2; exec sleep 3600'
    specs = [ComponentSpec(name="a", binary=Path("/bin/sh"), args=("-c", script), stop_timeout=2.0)]

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        pids = [mgr.m.unit("a").pid]
        pipes = []
        for _ in range(2):
            pid = pids[-1]
            await _until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"), "printed, slept")
            pipes.append(_pipes(pid))
            os.kill(pid, signal.SIGKILL)
            pids.append(await _until(lambda: (p := mgr.m.unit("a").pid) not in (None, pid) and p, "a respawned"))
        await _until(lambda: len(mgr._last_child["a"].tail) >= 4, "the lines of two exited children")
        fds = len(os.listdir("/proc/self/fd"))
        await mgr.retire({"a": "stopped"})
        # the component done: the agent's two write ends, two read ends and its pidfd go
        await _until(lambda: fds - len(os.listdir("/proc/self/fd")) >= 5, "its pipes closed")
        seen.update(pids=pids, pipes=pipes, tail=list(mgr._last_child["a"].tail),
                    handoff=mgr.launcher._handoff is not None)

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0), body, specs)
    assert rc == 0
    first, second, _ = seen["pids"]
    assert seen["pipes"][0] == seen["pipes"][1], "the replacement writes to the same pipes"
    assert seen["handoff"] == handoff
    assert sorted(seen["tail"][:4]) == sorted([f"gen-{first}", f"err-{first}", f"gen-{second}", f"err-{second}"])


def _marked(instance: str) -> list[int]:
    from tests.integration.supervisor.conftest import marked_pids

    return sorted(marked_pids(instance))


def test_a_replacement_that_cannot_be_watched_is_killed_and_the_spawn_fails(tmp_path):
    # no fd left for the replacement's pidfd (EMFILE): it must not run on unsupervised
    held: list[int] = []

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        old, b = mgr.m.unit("a").pid, mgr.m.unit("b").pid
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            os.kill(old, signal.SIGKILL)
            await _until(lambda: mgr.m.unit("a").phase is sm.Phase.BACKOFF, "a backing off")
        finally:
            for fd in held:
                os.close(fd)
        # (the fds first: scanning /proc needs some.) The replacement nobody could watch got
        # its SIGKILL; it is gone well within the backoff (a loaded machine may take a moment
        # to run its exit), so only b carries the marker until a is started again.
        seen["b"] = b
        seen["live"] = await _until(lambda: (live := _marked(mgr.instance)) == [b] and live,
                                    "only b left: the replacement was killed", timeout=1.5)
        new = await _until(lambda: (p := mgr.m.unit("a").pid) not in (None, old) and p, "a back after its backoff")
        seen["after"] = (new, _marked(mgr.instance))

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0, backoff_initial=2.0), body)
    assert rc == 0
    assert seen["live"] == [seen["b"]], "the replacement nobody could watch was killed"
    new, live = seen["after"]
    assert live == sorted([new, seen["b"]])


def test_a_dependency_and_its_dependent_killed_together_come_back_with_nothing_dropped(tmp_path, capfd):
    # whichever exit the kernel reports first: the dependent's replacement is started early
    # only when the machine will keep it (a dependency whose exit came first is down for it)
    specs = [ComponentSpec(name="dep", binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0),
             ComponentSpec(name="comp", binary=Path("/bin/sleep"), args=("3600",), after=("dep",), stop_timeout=2.0)]

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        rounds = []
        for order in (("dep", "comp"), ("comp", "dep")) * 3:
            old = {n: mgr.m.unit(n).pid for n in order}
            for n in order:
                os.kill(old[n], signal.SIGKILL)
            await _until(lambda: all(mgr.m.unit(n).pid not in (None, old[n]) for n in order)
                         and mgr.m.all_running(), "both back")
            rounds.append({n: mgr.m.unit(n) for n in order})
            await asyncio.sleep(0.05)
        seen["rounds"] = rounds
        seen["live"] = _marked(mgr.instance)

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0), body, specs)
    assert rc == 0
    assert "early_respawn_dropped" not in capfd.readouterr().err
    assert len(seen["live"]) == 2, "one child each"
    assert all(r[n].spawns == i + 2 for i, r in enumerate(seen["rounds"]) for n in ("dep", "comp")), \
        "one spawn per kill: none started and dropped"


def test_a_component_retired_while_it_backs_off_gives_its_pipes_back(tmp_path):
    specs = [ComponentSpec(name="loop", binary=Path("/bin/sh"), args=("-c", "sleep 0.3; exit 1"), stop_timeout=2.0),
             ComponentSpec(name="b", binary=Path("/bin/sleep"), args=("3600",), stop_timeout=2.0)]

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        await _until(lambda: mgr.m.unit("loop").phase is sm.Phase.BACKOFF, "loop backing off")
        fds = len(os.listdir("/proc/self/fd"))
        await mgr.retire({"loop": "stopped"})
        await _until(lambda: fds - len(os.listdir("/proc/self/fd")) >= 4, "its two pipes closed")

    rc, _ = _agent(tmp_path, RestartPolicy(min_uptime=60.0, backoff_initial=30.0), body, specs)
    assert rc == 0


def test_a_component_log_file_that_fails_is_reported_once_and_its_lines_still_logged(tmp_path, capfd):
    # the handle fails under the component's output (a full disk; here: closed under it)
    script = 'sleep 0.3; echo one; echo two; exec sleep 3600'
    specs = [ComponentSpec(name="a", binary=Path("/bin/sh"), args=("-c", script), stop_timeout=2.0)]

    async def body(mgr: Manager, paths: Paths, seen: dict[str, Any]) -> None:
        mgr._log_files["a"].close()
        await _until(lambda: len(mgr._last_child["a"].tail) >= 2, "its two lines")
        seen["pid"] = mgr.m.unit("a").pid

    rc, seen = _agent(tmp_path, RestartPolicy(min_uptime=0.0), body, specs, log_dir=tmp_path / "logs")
    assert rc == 0
    err = capfd.readouterr().err
    assert err.count('"component_log_file_failed"') == 1
    assert '"line": "one"' in err and '"line": "two"' in err
