"""The status socket: a tiny HTTP/1.1 server on ``<run>/status.sock`` (mode 0600) for the
agent, a client for ``kagent status`` / ``kagent reload``, and the text rendering.

Routes: ``GET /status`` (DESIGN §3 JSON), ``GET /components`` (its ``components`` list),
``POST /reload`` (runs a reload and answers with its plan). One request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from kagent.errors import PreconditionError

if TYPE_CHECKING:
    import http.client

Handler = Callable[[str, str], Awaitable[tuple[int, Any]]]  # (method, path) -> (status, json body)
MAX_HEADER = 16 * 1024


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Bind ``path`` with mode 0600 from the start (umask around bind), replacing a stale one."""
    path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(lambda r, w: _handle(r, w, handler), path=str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


async def _handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, handler: Handler) -> None:
    try:
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await r.readexactly(min(length, MAX_HEADER))
        status, body = await handler(method.upper(), target.split("?")[0])
        payload = (json.dumps(body, indent=None) + "\n").encode()
        from http import HTTPStatus  # here: not on the agent's way to its first spawn

        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        w.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await w.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
        pass
    finally:
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()


# ---- client (sync: used by the CLI) ---------------------------------------------------------

def _connection(path: Path, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection over the unix socket (http.client is imported here, by the CLI: the
    agent serves without it, and its start-up does not pay for it)."""
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            s.connect(str(path))
            self.sock = s

    return UnixHTTPConnection("localhost", timeout=timeout)


MAX_RESPONSE = 4 * 1024 * 1024  # a status document of thousands of components is far below this


def request(sock: Path, method: str, target: str, *, timeout: float = 10.0) -> tuple[int, Any]:
    """One request to the agent: (HTTP status, decoded JSON body). Every way the answer can
    fail (no agent, a reset or closed connection, no answer within ``timeout``, a reply that
    is not HTTP, a body that is not JSON or is too large) is a PreconditionError (exit 4)
    naming the socket. The body's shape is the caller's to check."""
    import http.client

    conn = _connection(sock, timeout)
    answer = "check the agent's log (or restart it); is the process on this socket a kagent?"
    try:
        conn.request(method, target, body=b"" if method == "POST" else None)
        resp = conn.getresponse()
        raw = resp.read(MAX_RESPONSE + 1)
    except (FileNotFoundError, ConnectionRefusedError):
        raise PreconditionError(str(sock), "no kagent is running with this run dir",
                                hint="start it (kagent controller or kagent worker), or pass the agent's --run-dir") from None
    except PermissionError:
        raise PreconditionError(str(sock), "permission denied", hint="run as the agent's user (root)") from None
    except TimeoutError:
        raise PreconditionError(str(sock), f"the agent did not answer within {timeout:g} s",
                                hint="it may be busy or stuck: retry with a longer --timeout, or check its log") from None
    except http.client.HTTPException as err:
        if isinstance(err, ConnectionError):
            what = "closed the connection without answering"
        elif isinstance(err, http.client.IncompleteRead):
            what = "closed the connection in the middle of its answer"
        else:
            what = f"answered something that is not HTTP ({type(err).__name__})"
        raise PreconditionError(str(sock), f"the agent {what}", hint=answer) from None
    except OSError as err:  # reset, broken pipe, ...
        raise PreconditionError(str(sock), f"the connection to the agent failed: {err.strerror or err}", hint=answer) from None
    finally:
        conn.close()
    length = resp.getheader("Content-Length") or ""
    if length.isdigit() and len(raw) < int(length):
        raise PreconditionError(str(sock), "the agent closed the connection in the middle of its answer", hint=answer)
    if len(raw) > MAX_RESPONSE:
        raise PreconditionError(str(sock), f"the agent's answer is larger than {MAX_RESPONSE // (1024 * 1024)} MiB", hint=answer)
    try:
        return resp.status, json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise PreconditionError(str(sock), f"the agent answered HTTP {resp.status} with a body that is not JSON: "
                                           f"{raw[:60]!r}", hint=answer) from None


# ---- rendering (pure) ---------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render_text(doc: Mapping[str, Any]) -> str:
    agent = doc["agent"]
    out = [f"kagent {agent['version']}  role {agent['role']}  pid {agent['pid']}  up {_duration(agent['uptime_s'])}"]
    rows = [("COMPONENT", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH", "LAST EXIT")]
    for c in doc["components"]:
        last = c.get("last_exit")
        if last is None:
            last_s = "-"
        elif last.get("signal") is not None:
            last_s = f"signal {last['signal']}"
        else:
            last_s = f"code {last['code']}"
        rows.append((c["name"], c["state"], str(c["pid"] or "-"), str(c["restarts"]), _duration(c["uptime_s"]),
                     c["health"], last_s))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out += ["  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows]
    if doc.get("backup"):
        out.append(render_backup(doc["backup"]))
    return "\n".join(out)


def render_backup(b: Mapping[str, Any]) -> str:
    """One line: the schedule and the last scheduled backup (a failure with its reason)."""
    line = f"backup every {b['every']} to {b['directory']} (keep {b['retention']})"
    last = b.get("last")
    if last is None:
        return line + f"; none taken yet, next at {b.get('next_at') or '-'}"
    if last.get("ok"):
        return line + f"; last ok at {last['at']}: {last['path']}"
    return line + f"; LAST FAILED at {last['at']}: {last['error']}"


def render_plan(plan: Mapping[str, Any]) -> str:
    """``kagent reload`` output: one line per action that did something."""
    lines = []
    for key in ("restarted", "signalled", "started", "stopped"):
        names = plan.get(key) or []
        if names:
            lines.append(f"{key}: {', '.join(names)}")
    if plan.get("backup"):  # what the reload changed for scheduled backups (no component)
        lines.append(f"backup: {plan['backup']}")
    if not lines:
        lines.append("nothing changed")
    unchanged = plan.get("unchanged") or []
    if unchanged:
        lines.append(f"unchanged: {', '.join(unchanged)}")
    rewritten = plan.get("rewritten") or []
    if rewritten:
        lines.append(f"rewritten: {', '.join(rewritten)}")
    return "\n".join(lines)
