"""SIGHUP and ``kagent reload`` against a real agent: only changed specs restart."""

from __future__ import annotations

import signal

from tests.conftest import run_kagent
from tests.integration.supervisor.conftest import alive, fake, wait_for


def test_hup_with_one_changed_spec_restarts_exactly_that_one(agent):
    specs = [fake("a"), fake("b", "sleep", "--print", "v1"), fake("c", after=["b"])]
    agent.write(specs)
    agent.start()
    before = agent.pids()
    specs[1] = fake("b", "sleep", "--print", "v2")
    agent.write(specs)
    agent.signal(signal.SIGHUP)
    wait_for(lambda: agent.log_events("reload_done"), 10, what="reload_done")
    after = agent.pids()
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"] and alive(after["b"]) and not alive(before["b"])
    done = agent.log_events("reload_done")[0]
    assert done["restarted"] == ["b"] and done["started"] == [] and done["stopped"] == []
    assert agent.comp("b")["restarts"] == 1 and agent.comp("a")["restarts"] == 0


def test_hup_with_a_broken_config_changes_nothing(agent):
    agent.write([fake("a"), fake("b")])
    agent.start()
    before = agent.pids()
    agent.spec_file.write_text("{ not json")
    agent.signal(signal.SIGHUP)
    rejected = wait_for(lambda: agent.log_events("reload_rejected"), 10, what="reload_rejected")
    assert "specs.json" in rejected[0]["reason"]
    assert agent.pids() == before and all(alive(p) for p in before.values())
    assert agent.proc.poll() is None
    # and a dependency on an unknown component is rejected the same way
    agent.write([fake("a"), fake("b", after=["nope"])])
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("error: config: new config rejected, nothing was changed:")
    assert "'nope' is not a component of this node" in r.stderr
    assert agent.pids() == before


def test_kagent_reload_adds_removes_and_reports_the_plan(agent):
    agent.write([fake("a"), fake("b"), fake("c", after=["b"])])
    agent.start()
    before = agent.pids()
    agent.write([fake("a"), fake("b", "sleep", "3600"), fake("d")])
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["restarted: b", "started: d", "stopped: c", "unchanged: a"]
    after = agent.pids()
    assert list(after) == ["a", "b", "d"]
    assert after["a"] == before["a"] and not alive(before["c"]) and not alive(before["b"])
    assert alive(after["d"]) and not (agent.run_dir / "c.pid").exists()
    # a second reload with the same file is a no-op
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.stdout.splitlines() == ["nothing changed", "unchanged: a, b, d"]
    assert agent.pids() == after


def test_signal_on_change_rewrites_files_and_keeps_the_pid(agent, tmp_path):
    conf = tmp_path / "c.conf"
    spec = fake("c", "sleep", "--events", str(agent.events), on_change="signal",
                files=[{"path": str(conf), "data": "v1"}])
    agent.write([spec])
    agent.start()
    wait_for(lambda: agent.fake_events(), 5, what="child up")
    pid = agent.pids()["c"]
    spec["files"] = [{"path": str(conf), "data": "v2"}]
    agent.write([spec])
    r = run_kagent("--run-dir", str(agent.run_dir), "reload")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "signalled: c"
    assert conf.read_text() == "v2"
    wait_for(lambda: any(e[1] == "hup" for e in agent.fake_events()), 5, what="hup received")
    assert agent.pids()["c"] == pid


def test_sigterm_during_a_reload_that_waits_for_health_stops_promptly(agent, tmp_path):
    import subprocess
    import time

    from tests.conftest import kagent_cmd, kagent_env

    agent.write([fake("a")])
    agent.start()
    agent.write([fake("a"), fake("unready", health={"unix": str(tmp_path / "never.sock")}, startup_timeout=60)])
    reload_cli = subprocess.Popen(kagent_cmd("--run-dir", str(agent.run_dir), "reload"), env=kagent_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: agent.comp("unready").get("state") == "starting", 10, what="unready starting")
        t0 = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        out, _ = reload_cli.communicate(timeout=10)
        assert "started: unready" in out
    finally:
        if reload_cli.poll() is None:
            reload_cli.kill()
            reload_cli.wait()
