"""Edge. structlog is configured once, here: console renderer on a TTY, JSON lines otherwise.

Event names are stable snake_case verbs (``component_started``); context goes in fields
(``component``, ``pid``, ``exit_code``, ``signal``, ``attempt``, ``path``, ``reason``).
Logs go to stderr so that command output on stdout stays machine-readable.

The agent commands configure with ``hold=True``: lines below warning are held, and structlog
is not even imported, until the supervisor has its first children on their way (``release``).
structlog's import is most of the way from exec to the first spawn that is not the spawn's
own. Held lines keep their time and their order, and come out at the latest HOLD_MAX seconds
after ``configure``, before a warning or an error, before a kagent child that shares stderr
starts (``child_args``), and at exit. A held line's fields are taken as they are at the call
(containers copied, other objects as their repr); a line that cannot be written at the release
is dropped and said (``log_lines_failed``), and a release never raises. What a SIGKILL or a
crash of the interpreter cuts off in that window (at most HOLD_MAX) is lost: no exit runs.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO, cast

_configured = False
# what the command line asked for (root options, possibly given after the subcommand); the
# defaults of configure() and of the lazy set-up in get(). Cheap: no structlog import.
_preset: dict[str, Any] = {"fmt": None, "verbose": False, "debug": False}


_effective: dict[str, Any] = {}  # what configure() set up last


def _isatty() -> bool:
    """Whether stderr is a terminal; False when there is none (fd 2 closed at exec:
    ``sys.stderr`` is None) or it is closed."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def child_args() -> list[str]:
    """The root options that give a kagent child process (one that shares this stderr, e.g. the
    PKI child) this process's log set-up. Held lines come out first: the child's lines follow
    them."""
    release()
    eff = _effective or {**_preset, "fmt": _preset["fmt"] or ("console" if _isatty() else "json")}
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
        self._said = 0  # the count the current line's log_lines_dropped says (gone once it is out)

    def write(self, text: str) -> int:
        if self._failed:
            return len(text)  # the rest of a line that failed
        try:
            if self.dropped and text != "\n" and not self._said:
                sys.stderr.write(self._dropped_line())
                self._said = self.dropped  # ... and off the count once the flush got it out
            return sys.stderr.write(text)
        except (OSError, ValueError, AttributeError):  # AttributeError: no stderr at all (None)
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
        said, self._said = self._said, 0
        if failed:
            return
        try:
            sys.stderr.flush()
            self.dropped -= said
        except (OSError, ValueError, AttributeError):
            self.dropped += 1  # (a buffered stream fails here: a full disk behind a redirect)


_STDERR = _Stderr()


HOLD_MAX = 0.5  # s: held lines come out at the latest this long after configure(hold=True)
HOLD_LINES = 10_000  # ... or once this many are held
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "exception": 40, "critical": 50}
_WARNING = 30
# (bound fields, method, event, fields, time.time()) logged while held; None: not holding
_held: list[tuple[dict[str, Any], str, str, dict[str, Any], float]] | None = None
_held_lock = threading.Lock()
_hold_timer: threading.Timer | None = None
# the thread writing the held lines out (``release``), holding _held_lock: a line it logs
# meanwhile (a signal handler's, a field's repr) joins the end of the held ones instead of
# waiting for the lock it holds itself
_releasing: int | None = None
_FREEZE_DEPTH = 16


def configure(*, fmt: str | None = None, verbose: bool | None = None, debug: bool | None = None,
              hold: bool = False) -> None:
    """Set up structlog. ``fmt`` is ``console`` or ``json``; None picks by whether stderr is a
    TTY. ``verbose`` shows debug-level events; ``debug`` does too and adds tracebacks to logged
    exceptions. Arguments left out take the CLI's preset. ``hold``: see the module's doc."""
    global _configured, _held, _hold_timer
    fmt = fmt if fmt is not None else _preset["fmt"]
    verbose = _preset["verbose"] if verbose is None else verbose
    debug = _preset["debug"] if debug is None else debug
    if fmt is None:
        fmt = "console" if _isatty() else "json"
    release()  # lines held by an earlier set-up come out in that set-up
    _effective.update(fmt=fmt, verbose=verbose, debug=debug)
    _configured = True
    if not hold:
        _setup()
        return
    import atexit

    with _held_lock:
        _held = []
    _hold_timer = threading.Timer(HOLD_MAX, release)
    _hold_timer.daemon = True
    _hold_timer.start()
    atexit.unregister(release)  # once, however often a process holds (tests do, many times)
    atexit.register(release)


def holding() -> bool:
    return _held is not None


def release() -> None:
    """Held lines come out now, in order, with their own times; later lines are not held.
    Idempotent, from any thread; never raises: a held line that cannot be written is dropped,
    and the lines dropped are said once (``log_lines_failed``), after the others."""
    global _held, _hold_timer, _releasing
    if _held is None or _releasing == threading.get_ident():
        return  # (the second: called while this thread writes the held lines out)
    timer, _hold_timer = _hold_timer, None
    if timer is not None and timer is not threading.current_thread():
        timer.cancel()
    failed: list[str] = []
    reason = ""
    with _held_lock:
        if _held is None:
            return
        _releasing = threading.get_ident()
        try:
            _setup()  # (imports structlog: a failure there is the except below)
            held, i = _held, 0
            while i < len(held):  # (lines this thread logs meanwhile are appended: they come last)
                bound, method, event, fields, at = held[i]
                i += 1
                try:
                    getattr(_structlog(bound), method)(event, _at=at, **fields)
                except Exception as err:  # noqa: BLE001 - one bad line must not take the others (or the caller) down
                    failed.append(event)
                    reason = reason or f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - structlog's import or set-up: no held line can be written
            _STDERR.write(_failed_line(len(_held), f"{type(err).__name__}: {err}"))
            _STDERR.flush()
            return
        finally:
            _held = None  # only now: a line logged meanwhile by another thread waited for the lock
            _releasing = None
    if failed:
        try:
            _structlog({}).warning("log_lines_failed", count=len(failed), events=failed[:20], reason=reason)
        except Exception:  # noqa: BLE001 - as above
            pass


def _failed_line(count: int, reason: str) -> str:
    """``log_lines_failed`` without structlog (it could not be set up)."""
    import json

    if _effective.get("fmt") == "json":
        return json.dumps({"event": "log_lines_failed", "count": count, "reason": reason, "level": "warning"}) + "\n"
    return f"[warning  ] log_lines_failed count={count} reason={reason!r}\n"


def _plain(value: Any) -> bool:
    """A value a held line can keep as it is (immutable)."""
    return value is None or isinstance(value, (str, int, float, bytes))


def _frozen(value: Any, depth: int = 0) -> Any:
    """``value`` as it is now, for a line written later: builtin containers copied (all the way
    down), other objects that are not plain values as their repr (what the JSON and console
    renderers would write of them), so that a change after the call does not show in the line."""
    if _plain(value):
        return value  # (bool is an int; str/int subclasses such as StrEnum are immutable too)
    if depth < _FREEZE_DEPTH:
        kind = type(value)
        if kind is list:
            return [_frozen(v, depth + 1) for v in value]
        if kind is dict:
            return {k: _frozen(v, depth + 1) for k, v in value.items()}
        if kind is tuple:
            return tuple(_frozen(v, depth + 1) for v in value)
        if kind is set or kind is frozenset:
            return kind(value)
    if hasattr(value, "__structlog__"):
        return value
    return _Repr(repr(value))


class _Repr:
    """An object's repr taken when its line was logged; written as that repr."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _freeze(fields: dict[str, Any]) -> dict[str, Any]:
    if all(_plain(v) for v in fields.values()):
        return fields  # the common case: plain values only, nothing to copy
    return {k: _frozen(v) for k, v in fields.items()}


def _hold(bound: dict[str, Any], method: str, event: str, fields: dict[str, Any]) -> bool:
    """Keep one line while holding; False when it is to be logged at once."""
    if _held is None:
        return False
    level = _LEVELS.get(method, _WARNING)
    shown = level >= (10 if _effective.get("verbose") or _effective.get("debug") else 20)  # as structlog's filter
    if _releasing is not None and _releasing == threading.get_ident():
        # logged by the thread writing the held lines out, which holds _held_lock: the line
        # joins the end of those (a warning too: it cannot come out before them)
        if shown and len(_held) < 2 * HOLD_LINES:
            if fields.get("exc_info") is True or (method == "exception" and "exc_info" not in fields):
                fields = {**fields, "exc_info": sys.exc_info()}  # the exception being handled now
            _held.append((_freeze(bound), method, event, _freeze(fields), time.time()))
        return True
    if level >= _WARNING or "exc_info" in fields:
        release()  # a warning or an error is never late, and comes after what was held
        return False
    if not shown:
        return True  # below the level: dropped, as structlog's filtering logger would
    bound, fields = _freeze(bound), _freeze(fields)  # (before the lock: a repr may log)
    with _held_lock:
        if _held is None:
            return False
        _held.append((bound, method, event, fields, time.time()))
        full = len(_held) >= HOLD_LINES
    if full:
        release()
    return True


class _Held:
    """What ``get`` gives while lines are held: structlog's bound-logger methods the code
    uses, each line held (``_hold``) or, once released, logged through structlog."""

    __slots__ = ("_bound", "_real")

    def __init__(self, bound: dict[str, Any]) -> None:
        self._bound = bound
        self._real: Any = None

    def bind(self, **fields: Any) -> _Held:
        return _Held({**self._bound, **fields})

    def _logger(self) -> Any:
        if self._real is None:
            self._real = _structlog(self._bound)
        return self._real

    def _log(self, method: str, event: str, fields: dict[str, Any]) -> Any:
        if _hold(self._bound, method, event, fields):
            return None
        return getattr(self._logger(), method)(event, **fields)

    def __getattr__(self, name: str) -> Any:
        """Any other method of structlog's bound logger: what was held comes out first."""
        if name.startswith("__"):
            raise AttributeError(name)
        release()
        return getattr(self._logger(), name)

    def debug(self, event: str, **fields: Any) -> Any:
        return self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> Any:
        return self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._log("error", event, fields)

    def exception(self, event: str, **fields: Any) -> Any:
        return self._log("exception", event, fields)

    def critical(self, event: str, **fields: Any) -> Any:
        return self._log("critical", event, fields)


def _structlog(bound: dict[str, Any]) -> Any:
    """structlog's logger with these fields bound (structlog set up)."""
    import structlog

    logger = structlog.get_logger()
    return logger.bind(**bound) if bound else logger


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """ISO 8601 in UTC, as structlog's TimeStamper(fmt="iso", utc=True) writes it, of the
    time the line was logged (``_at``, for a held line) or of now."""
    import datetime

    at = event.pop("_at", None)
    when = datetime.datetime.fromtimestamp(at if at is not None else time.time(), tz=datetime.timezone.utc)
    event["timestamp"] = when.isoformat().replace("+00:00", "Z")
    return event


def _setup() -> None:
    import logging

    import structlog

    fmt, verbose, debug = _effective["fmt"], _effective["verbose"], _effective["debug"]
    level = logging.DEBUG if (debug or verbose) else logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
    ]
    if not debug:
        processors.append(_drop_traceback)
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=_isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _STDERR)),
        cache_logger_on_first_use=False,
    )


def get(name: str | None = None, **bound: Any) -> Any:
    """A bound structlog logger; configures a default (quiet-free JSON/console) setup if none
    yet. While lines are held, a logger that holds them (and logs through structlog after)."""
    if not _configured:
        configure()
    if _held is not None:
        return _Held(bound)  # (a name changes nothing: the PrintLoggerFactory ignores it)
    import structlog

    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger.bind(**bound) if bound else logger
