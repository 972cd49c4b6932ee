"""Edge. Cancelling blocking work that runs in a worker thread (``asyncio.to_thread``): the
supervisor runs a reload's or a renewal's loader under a ``threading.Event`` (``run``) and sets
it when a stop is requested; blocking code that can wait long (the PKI child runner) polls
``cancelled()`` and gives up with ``Cancelled``. Cancelling an asyncio task alone cannot stop a
thread, nor the child process it waits for."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Callable, TypeVar

from kagent.errors import KagentError

T = TypeVar("T")
_CURRENT: ContextVar[threading.Event | None] = ContextVar("kagent_cancel", default=None)


class Cancelled(KagentError):
    """The work was given up because the agent is stopping (not a failure of the work)."""


def run(event: threading.Event, fn: Callable[[], T]) -> T:
    """``fn()`` with ``event`` as the calling thread's cancel event."""
    token = _CURRENT.set(event)
    try:
        return fn()
    finally:
        _CURRENT.reset(token)


def cancelled() -> bool:
    """Whether the work this thread runs was cancelled."""
    ev = _CURRENT.get()
    return ev is not None and ev.is_set()
