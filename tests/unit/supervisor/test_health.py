"""Health probes against real listeners."""

import asyncio
import http.server
import socket
import sys
import threading

from kagent.components.spec import CommandCheck, HttpCheck, TcpCheck, UnixSocketCheck
from kagent.supervisor.health import probe
from tests.conftest import free_port


def run(check):
    return asyncio.run(probe(check))


class _H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_http_check_reads_the_status_code():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        assert run(HttpCheck(url=f"http://127.0.0.1:{port}/healthz")).ok
        r = run(HttpCheck(url=f"http://127.0.0.1:{port}/readyz"))
        assert not r.ok and r.detail == "503"
    finally:
        srv.shutdown()
        srv.server_close()


def test_tcp_and_unix_checks(tmp_path):
    port = free_port()
    assert not run(TcpCheck(host="127.0.0.1", port=port)).ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert run(TcpCheck(host="127.0.0.1", port=port)).ok
    path = tmp_path / "s.sock"
    assert not run(UnixSocketCheck(path=path)).ok
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()
        assert run(UnixSocketCheck(path=path)).ok


def test_command_check_exit_code_and_timeout():
    assert run(CommandCheck(argv=("/bin/true",))).ok
    r = run(CommandCheck(argv=("/bin/false",)))
    assert not r.ok and r.detail == "exit 1"
    r = run(CommandCheck(argv=(sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.3))
    assert not r.ok and "timed out" in r.detail
    assert not run(CommandCheck(argv=("/nonexistent/probe",))).ok


def test_http_timeout_on_a_silent_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run(HttpCheck(url=f"http://127.0.0.1:{s.getsockname()[1]}/", timeout=0.3))
    assert not r.ok and r.detail == "timed out after 0.3s"
