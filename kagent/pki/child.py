"""Edge. The PKI runs in a short-lived child process, so the long-lived agent never loads
``cryptography`` (about 11 MiB of the agent's RSS) and a crash in the PKI code cannot take the
agent down. The agent builds the plan (pure, no cryptography) and calls ``apply_in_child``,
which runs this very kagent (``bins.self_argv()``: ``python -P -m kagent`` or the single file, as
the control-api child) as the hidden ``kagent pki-apply`` with the plan as JSON on stdin
(kagent.pki.wire); the child applies it with ``store.apply_pki``, logs its ``pki_file_written``
events to the agent's stderr (same log format) and answers one JSON document on stdout:
the written files with their reasons, or one error.

The agent validates the answer (every path a file of the plan) and turns every failure into
one ``KagentError`` naming ``pki``: the child's own KagentError as it was raised there, an
OSError as a PreconditionError naming the file (exit 4), anything else as an internal error,
a child that dies or answers garbage, or does not finish within ``TIMEOUT``, as what it did.
A request the child cannot decode is refused before anything is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Sequence

from kagent import errors, log
from kagent.errors import ExitCode, KagentError, PreconditionError
from kagent.pki import wire
from kagent.pki.plan import PkiPlan

TIMEOUT = 300.0  # s: a full RSA issue takes a few seconds; a child stuck this long is killed
COMMAND = "pki-apply"
_WHERE = "pki"
_BUG_HINT = "this is a bug in kagent; rerun with --debug for a traceback and report it"
_ERROR_TYPES: dict[str, type[KagentError]] = {
    c.__name__: c for c in (errors.KagentError, errors.UsageError, errors.ConfigError, errors.PreconditionError,
                            errors.ComponentError)
}


# ---- the agent's side ------------------------------------------------------------------------


def apply_in_child(plan: PkiPlan, *, now: datetime, argv: Sequence[str] | None = None,
                   timeout: float = TIMEOUT, lock_fd: int | None = None) -> dict[Path, str]:
    """``store.apply_pki(plan, now=now)`` in a child process: the files it wrote (in write
    order) with their reasons. ``argv`` is the command prefix that runs kagent (default: this
    kagent, ``bins.self_argv()``). ``lock_fd``: the agent's instance lock, inherited by the
    child (a flock belongs to the open file, not the process), so should the agent die while
    the child writes, no new agent starts and writes the same files until the child is done."""
    from kagent.bins import self_argv

    cmd = [*(argv if argv is not None else self_argv()), *log.child_args(), COMMAND]
    data = json.dumps(wire.request(plan, now)).encode()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                                pass_fds=() if lock_fd is None else (lock_fd,))
    except OSError as e:
        raise PreconditionError(_WHERE, f"cannot start the PKI child {cmd[0]}: {e.strerror or e}",
                                hint="the executable that runs this agent must stay in place while it runs") from None
    try:
        out, _ = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise PreconditionError(_WHERE, f"the PKI child (pid {proc.pid}) did not finish within {timeout:g} s and was killed",
                                hint="check the data dir's disk (a hung or very slow file system) and retry") from None
    return _outcome(out, proc.returncode, plan)


def _outcome(out: bytes, returncode: int, plan: PkiPlan) -> dict[Path, str]:
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and set(doc) == {"error"}:
        raise _error_from(doc["error"])
    if doc is None or returncode != 0:
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
        raise KagentError(_WHERE, f"the PKI child {how} without an answer"
                          + ("" if doc is None else " (and answered with exit code != 0)"),
                          hint="its log lines above say how far it got; files it wrote are complete (atomic writes), "
                               "the next start or reload repairs the rest")
    try:
        return wire.parse_reply(doc, plan)
    except ValueError as e:
        raise KagentError(_WHERE, f"the PKI child's answer is invalid: {e}", hint=_BUG_HINT) from None


def _error_from(doc: Any) -> KagentError:
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("type", "where", "what")):
        return KagentError(_WHERE, "the PKI child's error answer is invalid", hint=_BUG_HINT)
    hint = doc.get("hint") if isinstance(doc.get("hint"), str) else None
    cls = _ERROR_TYPES.get(doc["type"])
    if cls is errors.ConfigError:
        source = doc.get("source") if isinstance(doc.get("source"), str) else None
        return errors.ConfigError(str(doc.get("path", "")), doc["what"], hint=hint, source=source)
    if cls is not None:
        return cls(doc["where"], doc["what"], hint=hint)
    return KagentError(doc["where"], doc["what"], hint=hint)


# ---- the child's side ------------------------------------------------------------------------


def _error_doc(err: BaseException) -> dict[str, Any]:
    if isinstance(err, KagentError):
        # a subclass (JoinError, ...) travels as its nearest known base, with its exit code
        known = next(c.__name__ for c in type(err).__mro__ if c.__name__ in _ERROR_TYPES)
        doc: dict[str, Any] = {"type": known, "where": err.where, "what": err.what, "hint": err.hint}
        if isinstance(err, errors.ConfigError):
            doc.update(path=err.path, source=err.source)
        return doc
    if isinstance(err, OSError):
        target = f"{err.filename}: " if err.filename else ""
        return {"type": "PreconditionError", "where": _WHERE, "what": f"{target}{err.strerror or err}",
                "hint": "free space on the data dir's file system or fix its permissions, then restart or reload"}
    return {"type": "KagentError", "where": _WHERE, "what": f"internal error in the PKI child: {type(err).__name__}: {err}",
            "hint": _BUG_HINT}


def _answer(stdout: IO[bytes], doc: dict[str, Any]) -> None:
    stdout.write(json.dumps(doc).encode() + b"\n")
    stdout.flush()


def serve(stdin: IO[bytes], stdout: IO[bytes], *, debug: bool = False) -> int:
    """The child: one request from ``stdin``, one answer on ``stdout``; the exit code."""
    from kagent.pki.store import apply_pki

    try:
        plan, now = wire.parse_request(json.loads(stdin.read()))
    except (ValueError, TypeError) as e:  # nothing was written
        _answer(stdout, {"error": {"type": "KagentError", "where": _WHERE,
                                   "what": f"the PKI child got an invalid request: {e}", "hint": _BUG_HINT}})
        return int(ExitCode.BUG)
    try:
        result = apply_pki(plan, now=now)
    except Exception as e:  # every failure is one answer: the agent reports it (and survives it on reload)
        if debug and not isinstance(e, KagentError):
            traceback.print_exc(file=sys.stderr)
        doc = _error_doc(e)
        _answer(stdout, {"error": doc})
        return int(_ERROR_TYPES[doc["type"]].exit_code)
    _answer(stdout, wire.reply(result.reasons))
    return 0
