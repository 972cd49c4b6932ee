"""The bad day of the supervisor: every failure of a reload or a renewal is survived (the agent
and every child keep their PIDs), renewal and reload take turns, a reload tells the truth,
stale children of removed components are stopped, a pidfile that cannot be written leaves
no unsupervised child."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from kagent.components.spec import ComponentSpec, TcpCheck
from kagent.paths import Paths
from kagent.supervisor import machine as sm
from kagent.supervisor.manager import _Cmd, Hooks, Manager, run_agent
from kagent.supervisor.reload import Loaded
from tests.conftest import free_port, run_kagent
from tests.integration.supervisor.conftest import alive, fake, marked_pids, wait_for


def test_a_reload_failing_outside_kagent_errors_is_rejected_and_changes_nothing(agent):
    agent.write([fake("a"), fake("b")])
    agent.start()
    before = agent.pids()
    agent.spec_file.write_text('{"raise": "enospc"}')
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 3, r.stderr
    assert "No space left on device" in r.stderr and "nothing was changed" in r.stderr
    assert agent.proc.poll() is None and agent.pids() == before and all(alive(p) for p in before.values())
    agent.signal(signal.SIGHUP)  # the same through SIGHUP
    wait_for(lambda: len(agent.log_events("reload_rejected")) >= 2, 10, what="second reload_rejected")
    assert agent.proc.poll() is None and agent.pids() == before


def test_a_restarted_component_that_never_gets_healthy_makes_kagent_reload_exit_5(agent):
    port = free_port()  # nothing listens there
    agent.write([fake("a"), fake("b", "sleep", "--print", "v1")])
    agent.start()
    a_pid = agent.pids()["a"]
    agent.write([fake("a"), fake("b", "sleep", "--print", "v2", health={"tcp": ["127.0.0.1", port]},
                                 startup_timeout=1.0)])
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "restarted: b" in r.stdout
    assert r.stderr.startswith("error: reload: not healthy within the startup timeout after the reload: b")
    assert agent.pids()["a"] == a_pid and agent.proc.poll() is None
    # and one whose new spec crash-loops
    agent.write([fake("a"), fake("b", "exit", "1")])
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 5 and "after the reload: b" in r.stderr, r.stderr


def test_at_start_a_stale_child_of_a_removed_component_is_stopped(agent):
    agent.write([fake("a"), fake("containerd")])
    agent.start()
    old = agent.pids()
    os.kill(agent.proc.pid, signal.SIGKILL)  # the agent dies; its children live on
    agent.proc.wait(10)
    assert all(alive(p) for p in old.values())
    agent.write([fake("a")])  # e.g. --enable-worker dropped while the agent was down
    agent.start()
    wait_for(lambda: not alive(old["containerd"]), 10, what="the removed component's stale child to stop")
    assert not alive(old["a"]) and alive(agent.pids()["a"])
    stopped = {e["component"]: e for e in agent.log_events("stale_child_stopped")}
    assert set(stopped) == {"a", "containerd"} and stopped["containerd"]["configured"] is False
    assert not (agent.run_dir / "containerd.pid").exists()
    assert set(marked_pids(agent.instance).values()) == {"a"}


def test_a_pidfile_that_cannot_be_written_leaves_no_unsupervised_child(agent):
    agent.write([fake("a", "sleep", "--events", str(agent.events)), fake("b")])
    agent.start(*("--min-uptime", "0.1", "--backoff-initial", "0.2", "--backoff-max", "0.2"))
    first = agent.pids()["a"]
    pidfile = agent.run_dir / "a.pid"
    pidfile.unlink()
    pidfile.mkdir()  # the next pidfile write fails (os.replace onto a directory)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: agent.log_events("component_spawn_failed"), 10, what="component_spawn_failed")
    spawned = {int(e[3]) for e in agent.fake_events() if e[0] == "a" and e[1] == "start"}
    time.sleep(0.3)
    # every child spawned for a is gone again: none runs unwatched
    assert not any(alive(p) for p in spawned - {first}) and not alive(first)
    assert "cannot write" in agent.log_events("component_spawn_failed")[0]["reason"]
    pidfile.rmdir()
    pid = wait_for(lambda: agent.comp("a").get("pid"), 10, what="a back after the pidfile is writable")
    assert alive(pid) and agent.pidfile("a") == pid and agent.proc.poll() is None


def test_renewal_failures_are_survived_and_renewal_and_reload_take_turns(tmp_path):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    cert = tmp_path / "pki" / "etcd.crt"
    specs = [ComponentSpec(name="etcd", binary=Path("/bin/sleep"), args=("60",), reads=(cert,)),
             ComponentSpec(name="kubelet", binary=Path("/bin/sleep"), args=("60",))]
    inside: list[str] = []
    overlaps: list[str] = []
    calls: list[int] = []

    def enter(what: str) -> None:
        if inside:
            overlaps.append(f"{what} while {inside[0]}")
        inside.append(what)
        time.sleep(0.05)
        inside.remove(what)

    def renew() -> list[Path]:
        calls.append(1)
        enter("renew")
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        if len(calls) == 2:
            raise RuntimeError("a bug in the renewal")
        return [cert] if len(calls) == 3 else []

    def load() -> list[ComponentSpec]:
        enter("reload")
        return specs

    async def main() -> tuple[int, dict[str, int], dict[str, int]]:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run_agent(paths=paths, role="controller", load_specs=load, renew=renew,
                                               renew_interval=0.02, on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        first = {s.name: int(paths.pidfile(s.name).read_text()) for s in specs}
        now: dict[str, int] = {}
        for _ in range(500):
            os.kill(os.getpid(), signal.SIGHUP)  # reloads keep coming while renewals run
            await asyncio.sleep(0.01)
            now = {s.name: int(t) for s in specs if (t := _read(paths.pidfile(s.name)))}
            if len(calls) >= 5 and len(now) == 2 and now["etcd"] != first["etcd"]:
                break
        os.kill(os.getpid(), signal.SIGTERM)
        return await task, first, now

    rc, first, now = asyncio.run(main())
    assert rc == 0
    assert len(calls) >= 5, "renewal went on after an OSError and a RuntimeError"
    assert now["etcd"] != first["etcd"] and now["kubelet"] == first["kubelet"]
    assert not overlaps, overlaps


def test_a_reload_that_rewrote_a_certificate_restarts_exactly_its_readers(tmp_path):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    cert = tmp_path / "pki" / "server.crt"
    specs = [ComponentSpec(name="etcd", binary=Path("/bin/sleep"), args=("60",)),
             ComponentSpec(name="kube-apiserver", binary=Path("/bin/sleep"), args=("60",), reads=(cert,)),
             ComponentSpec(name="kubelet", binary=Path("/bin/sleep"), args=("60",))]
    loads: list[int] = []

    def load() -> Loaded:  # the second load is a reload whose PKI step added a SAN to server.crt
        loads.append(1)
        return Loaded(specs=specs, rewritten=[cert] if len(loads) == 2 else [])

    async def main() -> tuple[dict[str, object], dict[str, int], dict[str, int]]:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run_agent(paths=paths, role="controller", load_specs=load, on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        first = {s.name: int(paths.pidfile(s.name).read_text()) for s in specs}
        from kagent.supervisor import status

        code, plan = await asyncio.to_thread(status.request, paths.status_sock, "POST", "/reload")
        assert code == 200
        after = {s.name: int(paths.pidfile(s.name).read_text()) for s in specs}
        os.kill(os.getpid(), signal.SIGTERM)
        assert await task == 0
        return plan, first, after

    plan, first, after = asyncio.run(main())
    assert plan["restarted"] == ["kube-apiserver"] and plan["rewritten"] == [str(cert)]
    assert sorted(plan["unchanged"]) == ["etcd", "kubelet"] and plan["failing"] == []
    assert after["etcd"] == first["etcd"] and after["kubelet"] == first["kubelet"]
    assert after["kube-apiserver"] != first["kube-apiserver"]


def test_hooks_extra_task_and_status_fields(tmp_path):
    """The documented hook points: ready, reload started/done, stopping, an extra task, an
    extra status field; a hook that raises changes nothing."""
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    specs = [ComponentSpec(name="a", binary=Path("/bin/sleep"), args=("60",))]
    seen: list[str] = []
    ticks: list[int] = []

    async def extra(mgr: Manager) -> None:
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    def boom() -> None:
        raise RuntimeError("a broken hook")

    hooks = Hooks(on_ready=[lambda: seen.append("ready"), boom], on_reload_started=[lambda: seen.append("reload")],
                  on_reload_done=[lambda plan: seen.append(f"done:{plan['rejected']}")],
                  on_stopping=[lambda: seen.append("stopping")], tasks=[("extra", extra)],
                  status=[lambda: {"backup": {"last": None}}])

    async def main() -> dict[str, object]:
        ready = asyncio.Event()
        hooks.on_ready.append(ready.set)
        task = asyncio.ensure_future(run_agent(paths=paths, role="worker", load_specs=lambda: specs, hooks=hooks))
        await asyncio.wait_for(ready.wait(), 10)
        from kagent.supervisor import status

        await asyncio.to_thread(status.request, paths.status_sock, "POST", "/reload")
        _, doc = await asyncio.to_thread(status.request, paths.status_sock, "GET", "/status")
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await task == 0
        return doc

    doc = asyncio.run(main())
    assert seen == ["ready", "reload", "done:False", "stopping"]
    assert doc["backup"] == {"last": None} and doc["components"][0]["name"] == "a"
    assert len(ticks) > 2


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip() or None
    except FileNotFoundError:
        return None
