"""Edge. structlog is configured once, here: console renderer on a TTY, JSON lines otherwise.

Event names are stable snake_case verbs (``component_started``); context goes in fields
(``component``, ``pid``, ``exit_code``, ``signal``, ``attempt``, ``path``, ``reason``).
Logs go to stderr so that command output on stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO, cast

_configured = False
# what the command line asked for (root options, possibly given after the subcommand); the
# defaults of configure() and of the lazy set-up in get(). Cheap: no structlog import.
_preset: dict[str, Any] = {"fmt": None, "verbose": False, "debug": False}


_effective: dict[str, Any] = {}  # what configure() set up last


def child_args() -> list[str]:
    """The root options that give a kagent child process (one that shares this stderr, e.g. the
    PKI child) this process's log set-up."""
    eff = _effective or {**_preset, "fmt": _preset["fmt"] or ("console" if sys.stderr.isatty() else "json")}
    return ["--log-format", str(eff["fmt"]), *(["-v"] if eff["verbose"] else []), *(["--debug"] if eff["debug"] else [])]


def preset(*, fmt: str | None = None, verbose: bool = False, debug: bool = False) -> None:
    """Record the CLI's log options (the defaults of the next configure())."""
    _preset.update(fmt=fmt, verbose=verbose, debug=debug)


def _drop_traceback(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Without --debug an exception is logged as one line (``error``), not a traceback."""
    exc = event.pop("exc_info", None)
    if exc:
        err = sys.exc_info()[1] if exc is True else (exc if isinstance(exc, BaseException) else exc[1])
        if err is not None:
            event.setdefault("error", f"{type(err).__name__}: {err}")
    return event


class _Stderr:
    """Where log lines go: the process's stderr as it is at each write (``sys.stderr``
    replaced, e.g. by a test's capture, is followed), and a write that fails (a full disk
    behind a redirect, a closed pipe or file) drops the line instead of raising into the
    code that logged: logging never takes the agent or a child's supervision down. The
    lines dropped are counted, and said with the next line that gets through."""

    def __init__(self) -> None:
        self.dropped = 0
        self._failed = False  # the current line (print writes it, then "\n", then flushes)

    def write(self, text: str) -> int:
        if self._failed:
            return len(text)  # the rest of a line that failed
        try:
            if self.dropped and text != "\n":
                sys.stderr.write(self._dropped_line())
                self.dropped = 0
            return sys.stderr.write(text)
        except (OSError, ValueError):
            self._failed = True
            self.dropped += 1
            return len(text)

    def _dropped_line(self) -> str:
        if _effective.get("fmt") == "json":
            import json

            return json.dumps({"event": "log_lines_dropped", "count": self.dropped, "level": "warning"}) + "\n"
        return f"[warning  ] log_lines_dropped count={self.dropped}\n"

    def flush(self) -> None:
        failed, self._failed = self._failed, False
        if failed:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            self.dropped += 1


_STDERR = _Stderr()


def configure(*, fmt: str | None = None, verbose: bool | None = None, debug: bool | None = None) -> None:
    """Set up structlog. ``fmt`` is ``console`` or ``json``; None picks by whether stderr is a
    TTY. ``verbose`` shows debug-level events; ``debug`` does too and adds tracebacks to logged
    exceptions. Arguments left out take the CLI's preset."""
    global _configured
    import logging

    import structlog

    fmt = fmt if fmt is not None else _preset["fmt"]
    verbose = _preset["verbose"] if verbose is None else verbose
    debug = _preset["debug"] if debug is None else debug
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    level = logging.DEBUG if (debug or verbose) else logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not debug:
        processors.append(_drop_traceback)
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    _effective.update(fmt=fmt, verbose=verbose, debug=debug)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _STDERR)),
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
