"""Readiness over sd_notify with a real etcd-only controller: the test plays systemd, binding a
datagram socket with SO_PASSCRED (the kernel stamps each message with its sender's pid) and
passing it as ``$NOTIFY_SOCKET``. Every message comes from the agent itself (etcd, which sends
its own READY=1 when it sees the variable, never gets it), in the order start -> READY=1 ->
RELOADING=1 -> READY=1 -> STOPPING=1."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.fixtures.notify import FakeSystemd
from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


def test_notify_sequence_from_a_real_controller(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    systemd = FakeSystemd(n.root / "notify.sock")
    try:
        proc = n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS,
                       env={"NOTIFY_SOCKET": str(n.root / "notify.sock")})
        ready = systemd.wait_for("READY=1", 0)
        comps = n.wait_healthy(["etcd"])  # READY=1 means healthy: status agrees at once
        # what came before READY=1: STATUS lines of the start, the last one short of all up
        before = [lines for _, lines in systemd.messages[:ready]]
        assert before and all(ln[0].startswith("STATUS=starting: ") for ln in before), before
        n_comps = len(comps)
        assert f"STATUS=running: {n_comps}/{n_comps} components up" in systemd.messages[ready][1]

        # the child never saw the socket (nor the watchdog variables)
        environ = Path(f"/proc/{comps['etcd']['pid']}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.split(b"=")[0] in (b"NOTIFY_SOCKET", b"WATCHDOG_USEC", b"WATCHDOG_PID")]

        # a reload that restarts etcd: RELOADING=1, then READY=1 once it is healthy again
        cfg = base_config(n)
        cfg["spec"]["storage"]["etcd"]["extraArgs"] = {"heartbeat-interval": "150", "election-timeout": "1500"}
        n.write_config(cfg)
        os.kill(proc.pid, signal.SIGHUP)
        reloading = systemd.wait_for("RELOADING=1", ready + 1)
        again = systemd.wait_for("READY=1", reloading + 1, timeout=90)
        assert f"STATUS=running: {n_comps}/{n_comps} components up" in systemd.messages[again][1]
        between = [lines[0] for _, lines in systemd.messages[reloading + 1:again]]
        assert any("; etcd st" in ln for ln in between), between  # etcd was restarted (stopping/starting)

        assert n.stop() == 0
        stopping = systemd.wait_for("STOPPING=1", again + 1)
        systemd.drain(0.2)
        assert all("READY=1" not in lines for _, lines in systemd.messages[stopping:])
        # exactly two READY=1 (start, reload), and every message is the agent's own
        assert sum("READY=1" in lines for _, lines in systemd.messages) == 2
        assert {pid for pid, _ in systemd.messages} == {proc.pid}
        assert not [lines for _, lines in systemd.messages if "WATCHDOG=1" in lines]  # not asked for
    finally:
        systemd.close()
