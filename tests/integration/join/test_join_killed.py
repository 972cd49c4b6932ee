"""A joining controller SIGKILLed in the middle of its join, end to end with real etcd: after
it was added as an etcd learner and its etcd started, before its promotion. Controller 1's
control API is held with SIGSTOP from the moment the joiner's state says ``pending`` (the
learner was added) so the promotion cannot happen first; the joiner's agent and children are
then SIGKILLed. The cluster stays writable with the stale learner in it; the next join
attempt with the same token replaces that learner, is promoted, and the cluster has exactly
the two voting members."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.fixtures.controllers import Host, configure, voting, wait_until, write_token

pytestmark = pytest.mark.slow
HEALTHY = ["etcd", "control-api"]


def _state(h: Host) -> str | None:
    try:
        return str(json.loads((h.node.data / "etcd-member.json").read_text())["state"])
    except (OSError, ValueError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_a_joiner_killed_between_learner_and_promotion_joins_on_its_next_attempt(node_factory, tmp_path: Path):
    c1, c2 = (Host(node_factory(), f"127.0.0.{i + 1}") for i in range(2))
    for h in (c1, c2):
        configure(h.node, h.address)
    c1.start("--init")
    c1.node.wait_healthy(HEALTHY, timeout=60)
    name1 = c1.member_name()
    token = tmp_path / "controller.token"
    write_token(c1, "controller", token)
    api_pid = c1.node.components()["control-api"]["pid"]

    c2.start("--token-file", str(token))
    held = False
    try:
        wait_until(lambda: _state(c2) == "pending", 60, "the joiner added as a learner", interval=0.01)
        os.kill(api_pid, signal.SIGSTOP)  # no promotion through controller 1's API from now on
        held = True
        wait_until(lambda: (c2.node.run / "etcd.pid").exists(), 30, "the joiner's etcd started")
        time.sleep(1)  # the learner's etcd connects to the cluster
        assert _state(c2) == "pending"
        name2 = c2.member_name()
        killed = c2.pids()  # the agent, etcd (and the control API once etcd answered)
        assert c2.node.proc is not None and c2.node.proc.pid in killed and len(killed) >= 2, killed
        c2.kill_hard()
    finally:
        if held:
            os.kill(api_pid, signal.SIGCONT)
    wait_until(lambda: not [p for p in killed if _alive(p)], 10, "the joiner's processes gone")

    # the killed joiner is a learner: the cluster is as writable as before
    members = {m["name"] or "(not started)": m for m in c1.members()}
    learners = [m for m in c1.members() if m["isLearner"]]
    assert len(learners) == 1 and name1 in members and not members[name1]["isLearner"], members
    wait_until(lambda: c1.etcdctl("put", "/mid-join", "still-writable").returncode == 0, 15, "a write with the stale learner")

    # the next attempt (same data dir, same token) replaces the learner and is promoted
    c2.start("--token-file", str(token))
    c2.node.wait_healthy(HEALTHY, timeout=90)
    wait_until(lambda: voting(c1) == sorted([name1, name2]), 60, f"{name2} promoted on its second attempt")
    wait_until(lambda: _state(c2) == "joined", 30, "the joiner's state joined")
    members2 = c1.members()
    assert sorted(m["name"] for m in members2) == sorted([name1, name2]) and not any(m["isLearner"] for m in members2)
    r = c2.etcdctl("get", "/mid-join", "--print-value-only", "--consistency=l")
    assert r.returncode == 0 and r.stdout.strip() == "still-writable", r.stderr
    assert c1.node.components()["control-api"]["state"] == "running"
