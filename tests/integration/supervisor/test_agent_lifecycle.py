"""A real agent process over real children: restart, backoff, stop/kill, order, start-up failure."""

from __future__ import annotations

import os
import signal
import time

from tests.integration.supervisor.conftest import alive, fake, wait_for


def test_crash_restarts_at_once_after_a_healthy_run(agent):
    agent.write([fake("a"), fake("b")])
    agent.start("--min-uptime", "0.3")
    before = agent.pids()
    time.sleep(0.4)
    os.kill(before["a"], signal.SIGKILL)
    new = wait_for(lambda: (p := agent.pidfile("a")) and p != before["a"] and alive(p) and p, 5, what="a respawned")
    c = agent.comp("a")
    assert c["pid"] == new and c["restarts"] == 1 and c["state"] == "running"
    assert c["last_exit"]["signal"] == signal.SIGKILL and "at" in c["last_exit"]
    assert agent.pids()["b"] == before["b"]
    exited = agent.log_events("component_exited")
    assert exited[0]["component"] == "a" and exited[0]["signal"] == 9
    assert not agent.log_events("component_backoff")


def test_crash_loop_backs_off_doubling_to_the_cap_without_delaying_others(agent):
    agent.write([fake("loop", "exit", "1", "--events", str(agent.events)),
                 fake("steady", "sleep")])
    agent.start("--min-uptime", "0.5", "--backoff-initial", "0.2", "--backoff-max", "0.8")
    wait_for(lambda: len([e for e in agent.fake_events() if e[1] == "start"]) >= 5, 15, what="5 starts")
    # the loop shows as backoff in status while it waits
    wait_for(lambda: agent.comp("loop")["state"] == "backoff", 5, what="backoff state")
    delays = [e["restart_in_s"] for e in agent.log_events("component_backoff")][:4]
    assert delays == [0.2, 0.4, 0.8, 0.8]
    events = [(what, ns) for name, what, ns, _ in agent.fake_events() if name == "loop" and what in ("start", "exit")]
    # from one child's last breath to the next child's first: exit noticed + the backoff delay +
    # the next interpreter's start-up (timed from the child's side, so the lower bound holds
    # however slowly an interpreter starts on a loaded machine)
    gaps = [(b[1] - a[1]) / 1e9 for a, b in zip(events, events[1:]) if a[0] == "exit" and b[0] == "start"]
    assert len(gaps) >= 4, events
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8]):
        assert delay <= gap < delay + 1.5, (gaps, delay)
    # the crash loop never delays the steady one: killed after min_uptime, it is back at once
    time.sleep(0.5)
    steady = agent.pids()["steady"]
    t0 = time.monotonic()
    os.kill(steady, signal.SIGKILL)
    wait_for(lambda: (p := agent.pidfile("steady")) and p != steady and alive(p), 5, interval=0.005, what="steady back")
    assert time.monotonic() - t0 < 0.5
    assert agent.comp("loop")["restarts"] >= 4


def test_term_ignoring_child_is_killed_after_its_stop_timeout(agent):
    agent.write([fake("stubborn", "ignore-term", "--events", str(agent.events), stop_timeout=1.0)])
    agent.start()
    pid = agent.pids()["stubborn"]
    wait_for(lambda: any(e[1] == "start" for e in agent.fake_events()), 5, what="child up")
    t0 = time.monotonic()
    assert agent.stop() == 0
    took = time.monotonic() - t0
    assert not alive(pid)
    assert took >= 1.0, took  # waited its stop_timeout before the KILL
    assert took < 4.0, took
    assert [e[1] for e in agent.fake_events()] == ["start", "term"]  # it got TERM, ignored it, then KILL
    assert agent.log_events("stop_timed_out")[0]["component"] == "stubborn"
    stopped = agent.log_events("component_stopped")[0]
    assert stopped["signal"] == signal.SIGKILL


def test_shutdown_stops_in_reverse_dependency_order_and_removes_pidfiles(agent):
    ev = str(agent.events)
    agent.write([fake("db", "sleep", "--events", ev), fake("api", "sleep", "--events", ev, after=["db"]),
                 fake("ctl", "sleep", "--events", ev, after=["api"]), fake("side", "sleep", "--events", ev)])
    agent.start()
    starts = [e["component"] for e in agent.log_events("component_started")]
    assert starts.index("db") < starts.index("api") < starts.index("ctl")
    wait_for(lambda: len(agent.fake_events()) == 4, 5, what="4 children up")
    pids = agent.pids()
    assert agent.stop() == 0
    terms = [n for n, what, _, _ in sorted(agent.fake_events(), key=lambda e: e[2]) if what == "term"]
    assert terms.index("ctl") < terms.index("api") < terms.index("db")
    assert sorted(terms) == ["api", "ctl", "db", "side"]
    assert not any(alive(p) for p in pids.values())
    left = sorted(p.name for p in agent.run_dir.iterdir())
    assert left == ["kagent.lock"]


def test_initial_start_failure_stops_what_started_and_exits_5_with_the_last_lines(agent, free_port_):
    agent.write([fake("base", "sleep"),
                 fake("bad", "exit", "3", "--after", "0.2", "--print", "cannot bind 0.0.0.0:2379",
                      after=["base"], health={"tcp": ["127.0.0.1", free_port_]})])
    proc = agent.start(wait_ready=False)
    assert proc.wait(timeout=20) == 5
    err = agent.log_text()
    line = next(ln for ln in err.splitlines() if ln.startswith("error: "))
    assert line.startswith("error: component bad: exited with code 3 during start-up; last output:")
    assert "cannot bind 0.0.0.0:2379" in err and "exiting with 3" in err
    started = {e["component"]: e["pid"] for e in agent.log_events("component_started")}
    assert not alive(started["base"])
    assert not (agent.run_dir / "base.pid").exists()


def test_health_gate_timeout_at_start_is_exit_5(agent, free_port_):
    agent.write([fake("never", "sleep", health={"tcp": ["127.0.0.1", free_port_]}, startup_timeout=0.5),
                 fake("after-never", "sleep", after=["never"])])
    proc = agent.start(wait_ready=False)
    assert proc.wait(timeout=20) == 5
    assert "error: component never: not healthy after 0.5s" in agent.log_text()
    assert not agent.log_events("component_started")[1:]  # the dependent never started


def test_dependent_waits_for_health_of_its_dependency(agent, free_port_):
    ev = str(agent.events)
    agent.write([fake("db", "sleep", "--events", ev, "--health-port", str(free_port_), "--health-delay", "0.5",
                      health={"http": f"http://127.0.0.1:{free_port_}/healthz"}),
                 fake("api", "sleep", "--events", ev, after=["db"])])
    agent.start()
    healthy = agent.log_events("component_healthy")[0]
    api_started = [e for e in agent.log_events("component_started") if e["component"] == "api"][0]
    assert healthy["component"] == "db" and healthy["timestamp"] <= api_started["timestamp"]
    wait_for(lambda: len(agent.fake_events()) == 2, 5, what="both up")
    starts = {n: ns for n, what, ns, _ in agent.fake_events() if what == "start"}
    assert (starts["api"] - starts["db"]) / 1e9 >= 0.5
    assert agent.comp("db")["health"] == "healthy"


def test_second_agent_on_the_same_run_dir_exits_4(agent, procs):
    agent.write([fake("a")])
    agent.start()
    import subprocess
    import sys

    from tests.integration.supervisor.conftest import ENTRY

    r = subprocess.run([sys.executable, str(ENTRY), "--run-dir", str(agent.run_dir), "--specs", str(agent.spec_file)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 4
    assert "another kagent is already running with this run dir" in r.stderr
    assert agent.proc.poll() is None


def test_output_flood_and_huge_lines_do_not_block_the_agent(agent):
    agent.write([fake("flood", "flood"), fake("big", "bigline", "1000000"), fake("steady", "sleep")])
    agent.start("--min-uptime", "0.2")
    wait_for(lambda: "after-big-line" in agent.log_text(), 10, what="line after the big one")
    big = [e for e in agent.log_events("child_output") if e["component"] == "big"]
    assert big[0]["line"].startswith("yyyy") and big[0]["line"].endswith("[line cut: 934464 more bytes]")
    time.sleep(0.3)
    steady = agent.pids()["steady"]
    os.kill(steady, signal.SIGKILL)
    wait_for(lambda: (p := agent.pidfile("steady")) and p != steady and alive(p), 5, what="steady back during flood")
    assert agent.status()["agent"]["pid"] == agent.proc.pid
    wait_for(lambda: agent.log_events("child_output_dropped"), 10, what="flood throttled in the log")
    assert agent.log_events("child_output_dropped")[0]["component"] == "flood"
    rss_kb = int(next(ln.split()[1] for ln in open(f"/proc/{agent.proc.pid}/status") if ln.startswith("VmRSS")))
    assert rss_kb < 200_000
    assert agent.stop() == 0


def test_status_answers_while_starting_and_while_stopping(agent, free_port_):
    agent.write([fake("slow", "ignore-term", "--health-port", str(free_port_), "--health-delay", "1.5",
                      health={"http": f"http://127.0.0.1:{free_port_}/healthz"}, stop_timeout=1.5)])
    agent.start(wait_ready=False)
    doc = wait_for(lambda: (agent.run_dir / "status.sock").exists() and agent.status(), 10, what="socket")
    # (the row appears once the specs are loaded, which the socket does not wait for)
    wait_for(lambda: agent.comp("slow").get("state") == "starting", 5, what="starting")
    c = agent.comp("slow")
    assert c["health"] == "unknown" and c["pid"] and doc["agent"]["role"] == "controller"
    wait_for(lambda: agent.comp("slow").get("state") == "running", 10, what="running")
    agent.signal(signal.SIGTERM)
    wait_for(lambda: agent.comp("slow").get("state") == "stopping", 5, what="stopping")
    assert agent.proc.wait(timeout=10) == 0


def test_files_and_dirs_are_written_before_start_and_logs_go_to_log_dir(agent, tmp_path):
    conf = tmp_path / "etc" / "a.conf"
    agent.write([fake("a", "sleep", "--print", "hello file", files=[{"path": str(conf), "data": "x=1\n"}])])
    agent.start("--log-dir", str(tmp_path / "logs"))
    assert conf.read_text() == "x=1\n"
    wait_for(lambda: "stdout: hello file" in (tmp_path / "logs" / "a.log").read_text(), 5, what="log file line")
    env = open(f"/proc/{agent.pids()['a']}/environ", "rb").read().split(b"\0")
    assert f"KAGENT_MANAGED={agent.instance}".encode() in env and b"KAGENT_COMPONENT=a" in env
    pid = agent.pids()["a"]
    assert os.getpgid(pid) == pid  # own process group
