"""``kagent status`` and ``kagent reload`` against a status socket that answers badly (reset,
closed, not HTTP, not JSON, HTTP 500, no answer, JSON of the wrong shape): each is a clear
error with exit 4 naming the socket, never "internal error", never exit 0."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kagent.cli.status import plan_shape_error, status_shape_error
from tests.conftest import run_kagent

GOOD_STATUS = {"agent": {"pid": 1, "role": "controller", "version": "0.1.0", "uptime_s": 1.5},
               "components": [{"name": "etcd", "state": "running", "pid": 7, "restarts": 0, "health": "healthy",
                               "uptime_s": 1.0, "last_exit": None}]}


def _http(status: int, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def _reset(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _silent(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.recv(1)  # no answer, until the client gives up and hangs up (after its --timeout)


# name -> what the fake agent does with one connection
BEHAVIOURS: dict[str, Callable[[socket.socket], None]] = {
    "reset": _reset,
    "closed": lambda c: c.recv(65536) and None,
    "not-http": lambda c: (c.recv(65536), c.sendall(b"hello, I am not an HTTP server\n")) and None,
    "invalid-json": lambda c: (c.recv(65536), c.sendall(_http(200, b"{not json"))) and None,
    "http-500": lambda c: (c.recv(65536), c.sendall(_http(500, b'{"error": "boom"}'))) and None,
    "a-list": lambda c: (c.recv(65536), c.sendall(_http(200, b"[1, 2, 3]"))) and None,
    "wrong-fields": lambda c: (c.recv(65536), c.sendall(_http(200, b'{"agent": {"pid": "x"}, "components": []}'))) and None,
    "truncated": lambda c: (c.recv(65536), c.sendall(_http(200, b'{"agent": 1}')[:-5])) and None,
    "silent": _silent,
}

EXPECTED = {
    "reset": "the agent closed the connection without answering",  # a unix socket's reset reads as EOF
    "closed": "the agent closed the connection without answering",
    "not-http": "the agent answered something that is not HTTP",
    "invalid-json": "the agent answered HTTP 200 with a body that is not JSON",
    "http-500": "the agent answered HTTP 500: boom",
    "a-list": "the agent's answer is not what kagent expects: expected a JSON object, got list",
    "wrong-fields": "the agent's answer is not what kagent expects: ",
    "truncated": "the agent closed the connection in the middle of its answer",
    "silent": "the agent did not answer within 0.5 s",
}


class FakeAgent:
    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kas", dir="/tmp"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.dir / "status.sock"))
        self.sock.listen(4)
        self.behaviour = behaviour
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                self.behaviour(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept: the thread ends
        except OSError:
            pass
        self.thread.join(10)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake_agent() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeAgent]]:
    made: list[FakeAgent] = []

    def make(behaviour: Callable[[socket.socket], None]) -> FakeAgent:
        made.append(FakeAgent(behaviour))
        return made[-1]

    yield make
    for f in made:
        f.close()


# an object with unknown fields is a valid reload plan (its own fields: test_plan_shape)
CASES = [(cmd, name) for cmd in ("status", "reload") for name in BEHAVIOURS if (cmd, name) != ("reload", "wrong-fields")]


@pytest.mark.parametrize("cmd, name", CASES)
def test_a_bad_answer_is_exit_4_naming_the_socket(fake_agent, cmd: str, name: str) -> None:
    agent = fake_agent(BEHAVIOURS[name])
    r = run_kagent(cmd, "--run-dir", str(agent.dir), "--timeout", "0.5")
    first = r.stderr.splitlines()[0] if r.stderr else ""
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert first.startswith(f"error: {agent.dir / 'status.sock'}: {EXPECTED[name]}"), r.stderr
    assert r.stderr.splitlines()[1].startswith("hint: ") and "bug" not in r.stderr
    assert r.stdout == ""


def test_a_good_answer_still_prints(fake_agent) -> None:
    import json

    agent = fake_agent(lambda c: (c.recv(65536), c.sendall(_http(200, json.dumps(GOOD_STATUS).encode()))) and None)
    r = run_kagent("status", "--run-dir", str(agent.dir), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == GOOD_STATUS


@pytest.mark.parametrize("doc, error", [
    (GOOD_STATUS, None),
    ([], "expected a JSON object, got list"),
    ({"agent": {}, "components": []}, "agent.version is missing or of the wrong type"),
    ({**GOOD_STATUS, "components": {}}, "'components' is missing or not a list"),
    ({**GOOD_STATUS, "components": [{**GOOD_STATUS["components"][0], "restarts": "0"}]},
     "components[0].restarts is missing or of the wrong type"),
    ({**GOOD_STATUS, "components": [{**GOOD_STATUS["components"][0], "last_exit": {"at": "x"}}]},
     "components[0].last_exit has neither a signal nor a code"),
    ({**GOOD_STATUS, "agent": {**GOOD_STATUS["agent"], "pid": True}}, "agent.pid is missing or of the wrong type"),
])
def test_status_shape(doc: object, error: str | None) -> None:
    assert status_shape_error(doc) == error


@pytest.mark.parametrize("plan, error", [
    ({"restarted": ["etcd"], "unchanged": []}, None),
    ("ok", "expected a JSON object, got str"),
    ({"restarted": "etcd"}, "'restarted' is not a list of component names"),
    ({"started": [1]}, "'started' is not a list of component names"),
    ({"error": 3}, "'error' is not a string"),
    ({"backup": ["stopped"]}, "'backup' is not a string"),
    ({"backup": "stopped", "unchanged": ["etcd"]}, None),
])
def test_plan_shape(plan: object, error: str | None) -> None:
    assert plan_shape_error(plan) == error
