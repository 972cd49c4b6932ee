"""Edge. The sd_notify protocol (systemd ``Type=notify``): a few newline-separated
``KEY=VALUE`` assignments in one datagram to the unix socket named by ``$NOTIFY_SOCKET``
(a path, or ``@name`` for the abstract namespace). No dependency: it is one ``sendto``.

What the agent says and when (DESIGN §8):

- ``STATUS=<one line>`` whenever the summary of the components changes;
- ``READY=1`` once every component is healthy after the initial start;
- ``RELOADING=1`` (with ``MONOTONIC_USEC``) when a reload starts, ``READY=1`` when it ends;
- ``STOPPING=1`` when the shutdown starts;
- ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC``, only when systemd set it for this pid:
  without a watchdog nothing here ever wakes up.

``Readiness.from_env`` takes the three variables out of the agent's environment (as
``sd_notify(unset_environment=1)`` does), so no child, nor any tool the agent runs, can talk
on the agent's socket; ``supervisor.process.build_env`` strips them too.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"
NOTIFY_ENV = (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID)
SEND_TIMEOUT = 1.0


def socket_address(value: str) -> str | None:
    """Pure. ``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address: ``@name`` is the abstract name
    ``\\0name``; an absolute path is used as is; anything else (vsock, relative) is None."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Pure. Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when
    no watchdog is asked for this process (unset, not a positive integer, or
    ``$WATCHDOG_PID`` names another process)."""
    raw = env.get(WATCHDOG_USEC, "")
    if not raw.isdigit() or int(raw) <= 0:
        return None
    owner = env.get(WATCHDOG_PID)
    if owner is not None and owner.strip() != str(pid):
        return None
    return int(raw) / 1_000_000 / 2


def summarize(phase: str, components: Sequence[Mapping[str, Any]]) -> str:
    """Pure. One line for ``STATUS=``: ``running: 3/3 components up`` or
    ``starting: 1/3 components up; kube-apiserver starting; kube-scheduler backoff``.
    A component is up when it runs and is not unhealthy (one without a probe is up)."""
    up = [c for c in components if c.get("state") == "running" and c.get("health") != "unhealthy"]
    line = f"{phase}: {len(up)}/{len(components)} components up"
    down = []
    for c in components:
        if c in up:
            continue
        what = "unhealthy" if c.get("state") == "running" else str(c.get("state"))
        restarts = int(c.get("restarts") or 0)
        down.append(f"{c.get('name')} {what}" + (f" (restarts {restarts})" if restarts else ""))
    return "; ".join([line, *down])


class Notifier:
    """One datagram socket to the service manager. ``send`` never raises: a manager that went
    away must not take the agent down; the first failure is kept in ``last_error``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # a manager that stops reading fills its queue (net.unix.max_dgram_qlen): give up on a
        # message after a second rather than blocking the agent's event loop for good
        self.sock.settimeout(SEND_TIMEOUT)
        self.last_error: str | None = None
        self.sent: int = 0

    def send(self, *assignments: str) -> bool:
        payload = "\n".join(assignments).encode()
        try:
            self.sock.sendto(payload, self.address)
        except OSError as err:
            self.last_error = f"{err.strerror or err}"
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self.sock.close()


class Readiness:
    """The agent's side of readiness: what the supervisor calls at its few hook points. Built
    with ``from_env``; without ``$NOTIFY_SOCKET`` every call is a no-op."""

    def __init__(self, notifier: Notifier | None, watchdog_s: float | None = None) -> None:
        self.notifier = notifier
        self.watchdog_s = watchdog_s if notifier is not None else None
        self._last_status: str | None = None
        self._ready_sent = False
        self._watchdog: asyncio.Task[None] | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Readiness:
        """Read and remove ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` from ``environ``
        (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        values = {k: env.pop(k) for k in NOTIFY_ENV if k in env}
        address = socket_address(values.get(NOTIFY_SOCKET, ""))
        if address is None:
            return cls(None)
        return cls(Notifier(address), watchdog_interval(values, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.notifier is not None

    def _send(self, *assignments: str) -> None:
        if self.notifier is None:
            return
        if not self.notifier.send(*assignments) and not self._warned:
            self._warned = True
            from kagent import log

            log.get().warning("sd_notify_failed", path=os.environ.get(NOTIFY_SOCKET, self.notifier.address),
                              reason=self.notifier.last_error)

    def status(self, phase: str, components: Sequence[Mapping[str, Any]]) -> None:
        """``STATUS=`` when the one-line summary differs from the last one sent."""
        if self.notifier is None:
            return
        line = summarize(phase, components)
        if line != self._last_status:
            self._last_status = line
            self._send(f"STATUS={line}")

    def ready(self, phase: str, components: Sequence[Mapping[str, Any]]) -> None:
        """``READY=1`` with the current summary (after the start, and after each reload)."""
        if self.notifier is None:
            return
        self._last_status = summarize(phase, components)
        self._ready_sent = True
        self._send("READY=1", f"STATUS={self._last_status}")

    def reloading(self) -> None:
        self._send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                   "STATUS=reloading")
        self._last_status = "reloading"

    def stopping(self) -> None:
        self._send("STOPPING=1", "STATUS=stopping")
        self._last_status = "stopping"

    def start_watchdog(self) -> None:
        """Ping every half interval from the event loop (a stuck loop stops the pings, so
        systemd's watchdog sees a hung agent). Nothing is scheduled without a watchdog."""
        if self.watchdog_s is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.ensure_future(self._ping(self.watchdog_s))

    async def _ping(self, interval: float) -> None:
        while True:
            self._send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.notifier is not None:
            self.notifier.close()
