"""``kagent status`` against a real agent and without one."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import yaml

from tests.conftest import run_kagent
from tests.integration.supervisor.conftest import fake, wait_for


def test_status_json_has_exactly_the_documented_shape(agent):
    agent.write([fake("etcd"), fake("api", after=["etcd"])])
    agent.start("--min-uptime", "0.2")
    time.sleep(0.3)
    os.kill(agent.pids()["api"], signal.SIGKILL)
    wait_for(lambda: agent.comp("api")["restarts"] == 1 and agent.comp("api")["pid"], 5, what="api back")
    r = run_kagent("--run-dir", str(agent.run_dir), "status", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"agent", "components"}
    assert set(doc["agent"]) == {"pid", "role", "version", "uptime_s"}
    assert doc["agent"]["pid"] == agent.proc.pid and doc["agent"]["role"] == "controller"
    assert [c["name"] for c in doc["components"]] == ["etcd", "api"]
    for c in doc["components"]:
        assert set(c) == {"name", "state", "pid", "restarts", "health", "uptime_s", "last_exit"}
        assert c["state"] == "running" and c["health"] == "unknown"
    api = doc["components"][1]
    assert api["restarts"] == 1 and set(api["last_exit"]) == {"signal", "at"} and api["last_exit"]["signal"] == 9
    assert doc["components"][0]["last_exit"] is None
    assert stat.S_IMODE((agent.run_dir / "status.sock").stat().st_mode) == 0o600

    y = run_kagent("--run-dir", str(agent.run_dir), "status", "-o", "yaml")
    assert yaml.safe_load(y.stdout)["components"][1]["name"] == "api"
    t = run_kagent("--run-dir", str(agent.run_dir), "status")
    lines = t.stdout.splitlines()
    assert lines[0].startswith(f"kagent {doc['agent']['version']}  role controller  pid {agent.proc.pid}")
    assert lines[1].split() == ["COMPONENT", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH", "LAST", "EXIT"]
    assert lines[3].split()[:4] == ["api", "running", str(agent.pids()["api"]), "1"]
    assert lines[3].endswith("signal 9")


def test_status_and_reload_without_an_agent_exit_4(tmp_path):
    for cmd in ("status", "reload"):
        r = run_kagent("--run-dir", str(tmp_path / "run"), cmd)
        assert r.returncode == 4
        assert r.stderr.splitlines()[0] == f"error: {tmp_path / 'run' / 'status.sock'}: no kagent is running with this run dir"
        assert r.stderr.splitlines()[1].startswith("hint: ")
