"""Edge. Run one health check: HTTP(S) GET (with a client certificate), TCP connect, unix
socket connect, or a command. Every probe has a timeout and returns a result, never raises."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

from kagent.components.spec import CommandCheck, HealthCheck, HttpCheck, TcpCheck, UnixSocketCheck


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str  # "200", "connection refused", "exit 1", "timed out after 2.0s"


async def probe(check: HealthCheck) -> ProbeResult:
    try:
        return await asyncio.wait_for(_probe(check), check.timeout)
    except TimeoutError:
        return ProbeResult(False, f"timed out after {check.timeout}s")
    except (OSError, ssl.SSLError, ValueError) as err:
        return ProbeResult(False, getattr(err, "strerror", None) or str(err) or type(err).__name__)


async def _probe(check: HealthCheck) -> ProbeResult:
    if isinstance(check, HttpCheck):
        return await _http(check)
    if isinstance(check, TcpCheck):
        _, w = await asyncio.open_connection(check.host, check.port)
        await _close(w)
        return ProbeResult(True, "connected")
    if isinstance(check, UnixSocketCheck):
        _, w = await asyncio.open_unix_connection(str(check.path))
        await _close(w)
        return ProbeResult(True, "connected")
    if isinstance(check, CommandCheck):
        return await _command(check)
    raise ValueError(f"unknown health check {check!r}")


async def _close(w: asyncio.StreamWriter) -> None:
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass


def _tls_context(check: HttpCheck) -> ssl.SSLContext:
    """Verified against ``ca_file`` when given. Without one the server is not verified: that is
    how kube-scheduler and kube-controller-manager are probed, since they serve a self-signed
    certificate of their own on localhost (HttpCheck's contract)."""
    if check.ca_file:
        ctx = ssl.create_default_context(cafile=str(check.ca_file))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if check.cert_file:
        ctx.load_cert_chain(str(check.cert_file), str(check.key_file) if check.key_file else None)
    return ctx


async def _http(check: HttpCheck) -> ProbeResult:
    url = urlsplit(check.url)
    tls = url.scheme == "https"
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if tls else 80)
    r, w = await asyncio.open_connection(host, port, ssl=_tls_context(check) if tls else None,
                                         server_hostname=host if tls else None)
    try:
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        w.write(f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
        await w.drain()
        status_line = await r.readline()
    finally:
        await _close(w)
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return ProbeResult(False, f"not an HTTP answer: {status_line[:60]!r}")
    code = int(parts[1])
    return ProbeResult(code == check.expect_status, str(code))


async def _command(check: CommandCheck) -> ProbeResult:
    from kagent.supervisor.process import wait_fd_readable

    env = {**os.environ, **dict(check.env)}
    p = subprocess.Popen(check.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                         stderr=subprocess.DEVNULL, process_group=0)
    pidfd = os.pidfd_open(p.pid)
    try:
        if not await wait_fd_readable(pidfd, check.timeout):
            os.killpg(p.pid, 9)
            await wait_fd_readable(pidfd, 5.0)
            p.wait()
            return ProbeResult(False, f"timed out after {check.timeout}s")
    except asyncio.CancelledError:
        os.killpg(p.pid, 9)
        p.wait()
        raise
    finally:
        os.close(pidfd)
    rc = p.wait()
    return ProbeResult(rc == 0, f"exit {rc}")
