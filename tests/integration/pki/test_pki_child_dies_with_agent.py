"""The PKI child dies with its agent: an agent SIGKILLed while its ``kagent pki-apply`` child
runs (here stopped with SIGSTOP, as a child stuck behind a slow disk would be) does not leave
that child holding the instance lock it inherited: it is SIGKILLed by the kernel
(PR_SET_PDEATHSIG), and a new agent on the same data dir takes the lock and comes up. (A child
whose agent dies before that prctl: tests/unit/pki/test_pki_child.py.)"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.integration.conftest import KUBE_COMPONENTS, base_config
from tests.integration.supervisor.conftest import alive

pytestmark = pytest.mark.slow


def _pki_child(agent_pid: int, timeout: float = 30) -> int:
    """The pid of the agent's running ``pki-apply`` child (polled: it lives a second or two)."""
    deadline = time.monotonic() + timeout
    agent = psutil.Process(agent_pid)
    while time.monotonic() < deadline:
        for c in agent.children():
            try:
                if "pki-apply" in c.cmdline():
                    return c.pid
            except psutil.Error:
                continue
        time.sleep(0.002)
    raise AssertionError("no pki-apply child seen")


def test_an_agent_killed_while_its_pki_child_runs_leaves_no_child_holding_the_lock(node_factory):
    n = node_factory()
    # RSA keys: the first PKI run takes about a second, time enough to catch its child at work
    n.write_config(base_config(n, pki={"keyAlgorithm": "rsa-2048"}))
    agent = n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    child = _pki_child(agent.pid)
    try:
        # once it has staged its first file it is past its start (and its prctl): stop it there
        deadline = time.monotonic() + 30
        while '"staged": true' not in n.log_text():
            assert time.monotonic() < deadline and alive(child), n.log_text()[-2000:]
            time.sleep(0.002)
        os.kill(child, signal.SIGSTOP)
        # (a child in an fsync is in disk sleep: the stop takes effect when the write is done)
        deadline = time.monotonic() + 10
        while psutil.Process(child).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert psutil.Process(child).status() == psutil.STATUS_STOPPED
        assert '"pki_applied"' not in n.log_text(), "the PKI child finished before it could be stopped"
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the stopped PKI child outlived its agent (and holds the instance lock)"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
    # a new agent takes the lock at once and finishes the PKI the dead one had not committed
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd", "control-api"], timeout=90)
    assert not list((n.data / "pki").rglob(".*.tmp")), "the dead child's staged files were not cleaned up"
    assert n.stop() == 0
