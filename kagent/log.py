"""Edge. structlog is configured once, here: console renderer on a TTY, JSON lines otherwise.

Event names are stable snake_case verbs (``component_started``); context goes in fields
(``component``, ``pid``, ``exit_code``, ``signal``, ``attempt``, ``path``, ``reason``).
Logs go to stderr so that command output on stdout stays machine-readable.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_configured = False


def configure(*, fmt: str | None = None, verbose: bool = False, debug: bool = False) -> None:
    """Set up structlog. ``fmt`` is ``console`` or ``json``; None picks by whether stderr is a TTY."""
    global _configured
    import structlog

    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get(name: str | None = None, **bound: Any) -> Any:
    """A bound structlog logger; configures a default (quiet-free JSON/console) setup if none yet."""
    import structlog

    if not _configured:
        configure()
    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger.bind(**bound) if bound else logger
