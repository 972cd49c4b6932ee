"""Test harness for running component specs in tests (not kagent code): materialize a spec's
dirs and files as the supervisor would, start its argv, probe its health check, and a
stand-in container runtime socket."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from kagent.components.spec import ComponentSpec, HttpCheck, UnixSocketCheck


def materialize(spec: ComponentSpec) -> None:
    """What the supervisor does before a spawn: dirs, then files."""
    for d, mode in spec.dirs:
        d.mkdir(parents=True, exist_ok=True, mode=mode)
    for f in spec.files:
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_bytes(f.data)
        f.path.chmod(f.mode)


def probe(check) -> int | bool:
    if isinstance(check, UnixSocketCheck):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(check.path))
            return True
        except OSError:
            return False
        finally:
            s.close()
    assert isinstance(check, HttpCheck)
    ctx = None
    if check.url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=str(check.ca_file)) if check.ca_file else ssl._create_unverified_context()
        if check.cert_file:
            ctx.load_cert_chain(str(check.cert_file), str(check.key_file))
    try:
        with urllib.request.urlopen(check.url, context=ctx, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ssl.SSLError):
        return False


def wait_healthy(spec: ComponentSpec, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{spec.name} exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        if probe(spec.health) in (True, 200):
            return
        time.sleep(0.1)
    raise AssertionError(f"{spec.name} not healthy within {timeout}s")


def start(procs, spec: ComponentSpec) -> subprocess.Popen:
    materialize(spec)
    p = procs.popen(list(spec.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_healthy(spec, p)
    return p


@contextlib.contextmanager
def runtime_socket(path: Path):
    """A stand-in for containerd: the kubelet double only needs its socket to answer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(8)

    def accept() -> None:
        while True:
            try:
                srv.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        srv.close()


def run_once(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=15)
