"""Edge. The PKI runs in a short-lived child process, so the long-lived agent never loads
``cryptography`` (about 11 MiB of the agent's RSS) and a crash in the PKI code cannot take the
agent down. The agent builds the plan (pure, no cryptography) and calls ``stage_in_child``,
which runs this very kagent (``bins.self_argv()``: ``python -P -m kagent`` or the single file, as
the control-api child) as the hidden ``kagent pki-apply`` with the plan as JSON on stdin
(kagent.pki.wire); the child runs ``store.stage_pki`` (every new file a fsynced temp file next
to its target), logs its ``pki_file_written`` events to the agent's stderr (same log format)
and answers one JSON document on stdout: the staged files with their reasons, or one error.
The agent commits them (renames, ``fsutil.commit_staged``) once the reload is accepted, or
discards them; ``apply_in_child`` stages and commits at once.

The agent validates the answer (every path a file of the plan, every temp file beside it) and
turns every failure into one ``KagentError`` naming ``pki``: the child's own KagentError as it
was raised there, an OSError as a PreconditionError naming the file (exit 4), anything else as
an internal error, a child that dies or answers garbage (also more than ``MAX_ANSWER`` bytes),
or does not finish within ``TIMEOUT``, as what it did. A request the child cannot decode is
refused before anything is written. When the agent stops meanwhile (``kagent.cancel``), the
runner SIGKILLs its child by pid, reaps it and raises ``Cancelled``: nothing was committed, and
the temp files a killed child leaves are removed by the next PKI run.

The child dies with the agent: its first act is ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then it
checks that its parent is still the agent that started it (``--parent-pid``), so an agent
killed before that call is seen too. Otherwise a slow or stopped child would hold the instance
lock it inherited and keep a restarted agent out. (The signal follows the *thread* that started
the child; that thread waits in ``_exchange`` until the child is gone.)
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Sequence

from kagent import cancel, errors, log
from kagent.errors import ExitCode, KagentError, PreconditionError
from kagent.pki import wire
from kagent.pki.plan import PkiPlan

TIMEOUT = 300.0  # s: a full RSA issue takes a few seconds; a child stuck this long is killed
MAX_ANSWER = 1 << 20  # bytes: the answer names a few dozen files; more is garbage
POLL = 0.1  # s: how often the runner looks whether the agent is stopping
COMMAND = "pki-apply"
PARENT_OPTION = "--parent-pid"  # the agent's pid: the child exits at once when its parent is another
_WHERE = "pki"
_BUG_HINT = "this is a bug in kagent; rerun with --debug for a traceback and report it"
_ERROR_TYPES: dict[str, type[KagentError]] = {
    c.__name__: c for c in (errors.KagentError, errors.UsageError, errors.ConfigError, errors.PreconditionError,
                            errors.ComponentError)
}


# ---- the agent's side ------------------------------------------------------------------------


def apply_in_child(plan: PkiPlan, *, now: datetime, argv: Sequence[str] | None = None,
                   timeout: float = TIMEOUT, lock_fd: int | None = None) -> dict[Path, str]:
    """``stage_in_child`` and commit at once: the files it wrote (in write order) with their
    reasons. A commit that fails is a PreconditionError naming the file (the disk is as before)."""
    staged = stage_in_child(plan, now=now, argv=argv, timeout=timeout, lock_fd=lock_fd)
    commit(staged)
    return dict(staged.written)


def commit(staged: wire.Staged) -> None:
    """Rename what a child staged onto its targets (all, or none: ``fsutil.commit_staged``)."""
    from kagent import fsutil

    try:
        fsutil.commit_staged(staged.temps)
    except OSError as e:
        raise PreconditionError(_WHERE, f"{e.filename or 'a PKI file'}: cannot put the new file in place: {e.strerror or e}; "
                                "the old files were kept", hint="fix the data dir (space, permissions), then reload") from None


def discard(staged: wire.Staged) -> None:
    """Remove what a child staged: the PKI files stay as they were."""
    from kagent import fsutil

    fsutil.discard_staged(staged.temps)


def stage_in_child(plan: PkiPlan, *, now: datetime, argv: Sequence[str] | None = None,
                   timeout: float = TIMEOUT, lock_fd: int | None = None) -> wire.Staged:
    """``store.stage_pki(plan, now=now)`` in a child process: what it staged (nothing is in
    place yet: ``commit`` or ``discard`` it). ``argv`` is the command prefix that runs kagent
    (default: this kagent, ``bins.self_argv()``). ``lock_fd``: the agent's instance lock,
    inherited by the child (a flock belongs to the open file, not the process), so should the
    agent die while the child writes, no new agent starts and writes the same files until the
    child is gone (it dies with the agent: PR_SET_PDEATHSIG)."""
    from kagent.bins import self_argv

    cmd = [*(argv if argv is not None else self_argv()), *log.child_args(), COMMAND, PARENT_OPTION, str(os.getpid())]
    data = json.dumps(wire.request(plan, now)).encode()
    if cancel.cancelled():  # the agent is stopping: start nothing
        raise cancel.Cancelled(_WHERE, "the PKI step was not started: the agent is stopping")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                                pass_fds=() if lock_fd is None else (lock_fd,))
    except OSError as e:
        raise PreconditionError(_WHERE, f"cannot start the PKI child {cmd[0]}: {e.strerror or e}",
                                hint="the executable that runs this agent must stay in place while it runs") from None
    try:
        how, out = _exchange(proc, data, timeout)
        if how == "done":
            return _outcome(out, proc.returncode, plan)
    finally:
        if proc.returncode is None:
            proc.kill()  # SIGKILL by pid: Popen has not reaped it, so the pid is still this child's
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
    if how == "cancelled":
        raise cancel.Cancelled(_WHERE, f"the PKI child (pid {proc.pid}) was killed: the agent is stopping",
                               hint="nothing it staged was put in place; the next PKI run removes its temp files")
    if how == "too_large":
        raise KagentError(_WHERE, f"the PKI child (pid {proc.pid}) answered more than {MAX_ANSWER} bytes and was killed",
                          hint=_BUG_HINT)
    raise PreconditionError(_WHERE, f"the PKI child (pid {proc.pid}) did not finish within {timeout:g} s and was killed",
                            hint="check the data dir's disk (a hung or very slow file system) and retry")


def _exchange(proc: subprocess.Popen[bytes], data: bytes, timeout: float) -> tuple[str, bytes]:
    """Write ``data`` to the child's stdin, read its stdout (at most ``MAX_ANSWER`` bytes) and
    wait for its exit: ``("done", out)``, or why it stopped early ("timeout", "cancelled",
    "too_large"; the child is still to be killed)."""
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    view, chunks, size = memoryview(data), [], 0
    os.set_blocking(proc.stdin.fileno(), False)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if view:
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        while sel.get_map():
            if cancel.cancelled():
                return "cancelled", b""
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", b""
            for key, _ in sel.select(min(left, POLL)):
                if key.fileobj is proc.stdin:
                    try:
                        view = view[os.write(proc.stdin.fileno(), view[:65536]):]
                    except BrokenPipeError:
                        view = view[:0]  # it stopped reading: its exit code and answer say why
                    if not view:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    sel.unregister(proc.stdout)
                    continue
                size += len(chunk)
                if size > MAX_ANSWER:
                    return "too_large", b""
                chunks.append(chunk)
    while True:  # stdout closed: the child is exiting (or closed it and hangs)
        if cancel.cancelled():
            return "cancelled", b""
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", b""
        try:
            proc.wait(timeout=min(left, POLL))
            return "done", b"".join(chunks)
        except subprocess.TimeoutExpired:
            pass


def _outcome(out: bytes, returncode: int, plan: PkiPlan) -> wire.Staged:
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
                          hint="its log lines above say how far it got; nothing it staged was put in place, "
                               "the next start or reload removes its temp files")
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


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> bool:
    """The child's first act: be SIGKILLed when the thread that started it exits (the agent
    dies), then check that ``parent`` (the agent's pid, passed on the command line) is still the
    parent: False when it died before the prctl (this child was reparented). Linux only; where
    libc has no ``prctl`` only the parent check is done."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            prctl = libc.prctl
        except (OSError, AttributeError):
            prctl = None
        if prctl is not None:
            prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            if prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    return os.getppid() == parent


def serve(stdin: IO[bytes], stdout: IO[bytes], *, debug: bool = False) -> int:
    """The child: one request from ``stdin``, one answer on ``stdout``; the exit code."""
    from kagent.pki.store import stage_pki

    try:
        plan, now = wire.parse_request(json.loads(stdin.read()))
    except (ValueError, TypeError) as e:  # nothing was written
        _answer(stdout, {"error": {"type": "KagentError", "where": _WHERE,
                                   "what": f"the PKI child got an invalid request: {e}", "hint": _BUG_HINT}})
        return int(ExitCode.BUG)
    try:
        result = stage_pki(plan, now=now)
    except Exception as e:  # every failure is one answer: the agent reports it (and survives it on reload)
        if debug and not isinstance(e, KagentError):
            traceback.print_exc(file=sys.stderr)
        doc = _error_doc(e)
        _answer(stdout, {"error": doc})
        return int(_ERROR_TYPES[doc["type"]].exit_code)
    try:
        _answer(stdout, wire.reply(result.reasons, result.staged))
    except BaseException:  # the agent is gone (a broken pipe): what was staged is nobody's
        from kagent import fsutil

        fsutil.discard_staged(result.staged.items())
        raise
    return 0
