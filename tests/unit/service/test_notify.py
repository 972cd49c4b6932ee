"""kagent/service/notify.py: the sd_notify address forms, the watchdog rule, the STATUS summary,
and real datagrams on a socket this test binds (a path and an abstract name)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from kagent.service import notify
from kagent.service.notify import Readiness, socket_address, summarize, watchdog_interval


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@kagent-test") == "\0kagent-test"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None
    assert socket_address("") is None


def test_watchdog_only_when_asked_for_this_pid() -> None:
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "-5"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 10) is None


def test_summary_names_what_is_not_up() -> None:
    comps = [
        {"name": "etcd", "state": "running", "health": "healthy", "restarts": 0},
        {"name": "kube-apiserver", "state": "running", "health": "unhealthy", "restarts": 0},
        {"name": "kube-scheduler", "state": "backoff", "health": "unknown", "restarts": 3},
        {"name": "control-api", "state": "running", "health": "unknown", "restarts": 0},  # no probe: up
    ]
    assert summarize("running", comps) == (
        "running: 2/4 components up; kube-apiserver unhealthy; kube-scheduler backoff (restarts 3)")
    assert summarize("starting", []) == "starting: 0/0 components up"


def _bound(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_from_env_takes_the_variables_out_and_sends_on_an_abstract_socket() -> None:
    name = f"kagent-notify-test-{os.getpid()}"
    rx = _bound("\0" + name)
    env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid()), "PATH": "/bin"}
    r = Readiness.from_env(env)
    try:
        assert env == {"PATH": "/bin"}  # nothing a child could inherit
        assert r.enabled and r.watchdog_s == 0.5
        comps = [{"name": "etcd", "state": "running", "health": "healthy"}]
        r.status("starting", comps)
        r.status("starting", comps)  # unchanged summary: not sent again
        r.ready("running", comps)
        r.reloading()
        r.ready("running", comps)
        r.stopping()
        got = [rx.recv(4096).decode() for _ in range(5)]
    finally:
        r.close()
        rx.close()
    assert got[0] == "STATUS=starting: 1/1 components up"
    assert got[1] == "READY=1\nSTATUS=running: 1/1 components up"
    lines = got[2].split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    assert got[3].startswith("READY=1\n")
    assert got[4] == "STOPPING=1\nSTATUS=stopping"


def test_without_notify_socket_nothing_is_sent_or_scheduled() -> None:
    env = {"WATCHDOG_USEC": "1000"}
    r = Readiness.from_env(env)
    assert not r.enabled and r.watchdog_s is None and env == {}

    async def go() -> int:
        r.start_watchdog()
        r.ready("running", [])
        r.stopping()
        return len(asyncio.all_tasks())

    assert asyncio.run(go()) == 1  # only the test's own task: no timer exists


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    rx = _bound(path)
    rx.setblocking(False)
    r = Readiness.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})  # 40 ms: ping every 20 ms
    assert r.watchdog_s == 0.02
    pings: list[bytes] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(rx.fileno(), lambda: pings.append(rx.recv(64)))  # read as systemd does
        r.start_watchdog()
        await asyncio.sleep(0.25)
        r.close()
        loop.remove_reader(rx.fileno())

    try:
        asyncio.run(go())
    finally:
        rx.close()
    assert set(pings) == {b"WATCHDOG=1"}
    assert 4 <= len(pings) <= 14


def test_a_manager_that_stops_reading_does_not_block_the_agent(tmp_path: Path) -> None:
    path = str(tmp_path / "full.sock")
    rx = _bound(path)  # never read: its queue fills after net.unix.max_dgram_qlen (10) datagrams
    n = notify.Notifier(path)
    n.sock.settimeout(0.05)
    try:
        qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
        results = [n.send("WATCHDOG=1") for _ in range(qlen + 10)]
    finally:
        n.close()
        rx.close()
    assert results[0] is True
    assert False in results and n.last_error


def test_a_vanished_manager_socket_does_not_raise(tmp_path: Path) -> None:
    n = notify.Notifier(str(tmp_path / "gone.sock"))
    assert n.send("READY=1") is False
    assert n.last_error
    n.close()
