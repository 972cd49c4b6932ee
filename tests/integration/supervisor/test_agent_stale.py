"""Stale pidfiles: our leftover children are stopped, unrelated processes never signalled."""

from __future__ import annotations

import signal

from tests.integration.supervisor.conftest import alive, fake, marked_pids, wait_for


def test_pidfile_of_an_unrelated_sleep_is_never_signalled(agent, procs):
    sleeper = procs.popen(["sleep", "60"])
    agent.run_dir.mkdir(parents=True)
    (agent.run_dir / "a.pid").write_text(f"{sleeper.pid}\n")
    agent.write([fake("a")])
    agent.start()
    ignored = agent.log_events("stale_pidfile_ignored")
    assert ignored and ignored[0]["pid"] == sleeper.pid
    assert sleeper.poll() is None and alive(sleeper.pid)
    assert agent.pidfile("a") != sleeper.pid
    assert agent.stop() == 0
    assert sleeper.poll() is None


def test_marked_process_running_another_binary_is_not_ours(agent, procs):
    # carries our marker and the component name, but runs `sleep`, not the spec's binary
    agent.run_dir.mkdir(parents=True)
    env = {"KAGENT_MANAGED": agent.instance, "KAGENT_COMPONENT": "a", "PATH": "/usr/bin:/bin"}
    impostor = procs.popen(["sleep", "60"], env=env)
    (agent.run_dir / "a.pid").write_text(f"{impostor.pid}\n")
    agent.write([fake("a")])
    agent.start()
    assert agent.log_events("stale_pidfile_ignored")[0]["pid"] == impostor.pid
    assert impostor.poll() is None


def test_agent_sigkilled_then_restarted_leaves_exactly_one_generation(agent):
    agent.write([fake("a"), fake("b", after=["a"]),
                 fake("stubborn", "ignore-term", "--events", str(agent.events), stop_timeout=0.5)])
    agent.start()
    wait_for(lambda: agent.fake_events(), 5, what="stubborn ignores TERM from now on")
    first = agent.pids()
    agent.signal(signal.SIGKILL)
    agent.proc.wait(timeout=5)
    assert all(alive(p) for p in first.values())  # children outlive a SIGKILLed agent (no pdeathsig)
    agent.start()
    stopped = {e["component"]: e for e in agent.log_events("stale_child_stopped")}
    assert set(stopped) == {"a", "b", "stubborn"}
    assert stopped["stubborn"]["how"] == "killed" and stopped["a"]["how"] == "terminated"
    assert not any(alive(p) for p in first.values())
    second = agent.pids()
    assert sorted(marked_pids(agent.instance)) == sorted(second.values())
    assert sorted(marked_pids(agent.instance).values()) == ["a", "b", "stubborn"]


def test_garbage_pidfile_is_ignored(agent):
    agent.run_dir.mkdir(parents=True)
    (agent.run_dir / "a.pid").write_text("rubbish\n")
    agent.write([fake("a")])
    agent.start()
    assert alive(agent.pids()["a"])
