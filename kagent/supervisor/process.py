"""Edge. One child process: spawn a spec, stream its output, notice its exit, stop it; and the
stale-pidfile check that never signals a process that is not provably ours.

Exit is noticed through a pidfd registered with the event loop (``loop.add_reader``): the
kernel wakes us exactly once when the child exits, and nothing runs while every child is up.
We spawn with ``subprocess.Popen`` (vfork/exec in C, ``process_group=0``, no ``preexec_fn``,
no shell) and reap the child ourselves right after its pidfd fires, so asyncio's child
watcher (a thread per child in 3.11) is never involved.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import pwd
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from kagent.components.spec import ComponentSpec
from kagent.errors import ComponentError, PreconditionError
from kagent.service.notify import NOTIFY_ENV
from kagent.supervisor import launch
from kagent.supervisor.policy import ExitStatus

MARKER_ENV = "KAGENT_MANAGED"
COMPONENT_ENV = "KAGENT_COMPONENT"
MAX_LINE = 64 * 1024  # longer lines are cut (the rest up to the newline is dropped, and counted)
READ_CHUNK = 64 * 1024
TAIL_LINES = 20  # last lines kept per child for error messages
KILL_WAIT = 5.0  # after SIGKILL: how long a stop waits before it gives the process up

LineSink = Callable[[str, str], None]  # (stream, line)


def instance_id(run_dir: Path) -> str:
    """The value of ``KAGENT_MANAGED``: stable for one run dir, so an agent restarted on the same
    run dir recognises the children of its previous incarnation, and no other agent's."""
    data = str(run_dir).encode()
    try:  # CPython's own SHA-256: hashlib loads OpenSSL first (~3-4 ms before the first spawn)
        import _sha256  # type: ignore[import-not-found]  # (no stub)

        digest = str(_sha256.sha256(data).hexdigest())
    except ImportError:  # (another interpreter, or 3.12+'s _sha2)
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
    return digest[:16]


def build_env(spec: ComponentSpec, instance: str, base: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the agent's, then the spec's, then the ownership markers."""
    # never the agent's sd_notify socket: a child's READY=1 there would claim the node is up
    env = {k: v for k, v in base.items() if k not in (MARKER_ENV, COMPONENT_ENV, *NOTIFY_ENV)}
    env.update(dict(spec.env))
    env[MARKER_ENV] = instance
    env[COMPONENT_ENV] = spec.name
    return env


# name -> (spec, instance, env): a child's environment, built at the first spawn of that spec
_env_cache: dict[str, tuple[ComponentSpec, str, dict[str, str]]] = {}


def _env_for(spec: ComponentSpec, instance: str) -> dict[str, str]:
    """``build_env`` over the agent's environment, once per spec object (a reload's new spec
    is a new object): reading ``os.environ`` decodes every variable, and a respawn should
    not pay for it. The agent does not change its own environment once it runs (the
    sd_notify variables are dropped before the first spawn), so nothing is missed."""
    hit = _env_cache.get(spec.name)
    if hit is not None and hit[0] is spec and hit[1] == instance:
        return hit[2]
    env = build_env(spec, instance, os.environ)
    _env_cache[spec.name] = (spec, instance, env)
    return env


def _credentials(run_as: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """(user, group, extra_groups) for Popen: all None to keep the agent's own."""
    if run_as is None:
        return None, None, None
    try:
        pw = pwd.getpwnam(run_as)
    except KeyError:
        raise PreconditionError(f"user {run_as}", "no such system user",
                                hint=f"create it (useradd --system {run_as}) or run the agent as root") from None
    if os.geteuid() == 0:
        return pw.pw_uid, pw.pw_gid, []
    if pw.pw_uid == os.geteuid():
        return None, None, None
    raise PreconditionError(f"user {run_as}", "switching users needs root", hint="run kagent as root")


class _LineReader:
    """Reads one pipe without blocking, splits it into lines, hands each to ``sink``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, stream: str, sink: LineSink,
                 tail: collections.deque[str]) -> None:
        self.loop, self.fd, self.stream, self.sink, self.tail = loop, fd, stream, sink, tail
        self.buf = bytearray()
        self.skipping = 0  # bytes dropped from an over-long line
        self.eof = loop.create_future()
        self.at_eof = False
        self.closed = False
        self.taken = 0  # bytes read from the pipe so far
        # pipe positions (in ``taken`` terms) where a writer that exited stopped: a line still
        # open there is ended there (``mark``)
        self.cuts: collections.deque[int] = collections.deque()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _emit(self, raw: bytes | bytearray, dropped: int = 0) -> None:
        if len(raw) > MAX_LINE:
            dropped += len(raw) - MAX_LINE
            raw = raw[:MAX_LINE]
        line = bytes(raw).decode("utf-8", "replace").rstrip("\r")
        if dropped:
            line += f" [line cut: {dropped} more bytes]"
        self.tail.append(line)
        self.sink(self.stream, line)

    def _on_readable(self) -> None:
        self._read_once()

    def mark(self) -> None:
        """A writer exited: what the pipe holds now is the last it wrote (a successor's bytes
        come after), and a line it left open ends there. One ioctl, no read."""
        if self.closed:
            return
        try:
            pending = int.from_bytes(fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
        except OSError:
            pending = 0
        self.cuts.append(self.taken + pending)

    def read_marked(self) -> None:
        """Read up to the last ``mark`` (no further: a successor that floods the pipe is read
        by the loop as usual, not here)."""
        while not self.closed and self.cuts:
            need = self.cuts[-1] - self.taken
            if need <= 0 or not self._read_once(min(READ_CHUNK, need)):
                break
        out: list[tuple[bytes, int]] = []
        while self.cuts and self.cuts[0] <= self.taken:  # a cut with nothing left to read before it
            self.cuts.popleft()
            self._line_end(out)
        for raw, dropped in out:
            self._emit(raw, dropped)

    def _read_once(self, limit: int = READ_CHUNK) -> bool:
        """One read; True when it got data."""
        try:
            data = os.read(self.fd, limit)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            # EOF: every writer is gone. The last partial line and the clean-up run after the
            # callbacks of this turn (a respawn among them goes first; a level-triggered fd
            # reported again meanwhile is read as EOF again: harmless; remove_reader cancels
            # its pending callback)
            if not self.at_eof:
                self.at_eof = True
                self.loop.call_soon(self._finish)
            return False
        # the reader's state first, the sink after: a sink that raises cannot leave a line
        # half taken or a cut lost
        out: list[tuple[bytes, int]] = []
        while self.cuts and self.taken + len(data) >= self.cuts[0]:
            k = self.cuts.popleft() - self.taken
            self._lines(data[:k], out)
            self.taken += k
            data = data[k:]
            self._line_end(out)
        self._lines(data, out)
        self.taken += len(data)
        for raw, dropped in out:
            self._emit(raw, dropped)
        return True

    def _line_end(self, out: list[tuple[bytes, int]]) -> None:
        if self.buf or self.skipping:
            out.append((bytes(self.buf), self.skipping))
            self.buf.clear()
            self.skipping = 0

    def _lines(self, data: bytes, out: list[tuple[bytes, int]]) -> None:
        """Split ``data`` into the lines it ends (to ``out``: bytes, bytes cut off) and what
        stays open in ``buf``."""
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            if self.skipping:
                out.append((bytes(self.buf), self.skipping + nl - start))
                self.skipping = 0
            else:
                self.buf += data[start:nl]
                out.append((bytes(self.buf), 0))
            self.buf.clear()
            start = nl + 1
        rest = data[start:]
        if self.skipping:
            self.skipping += len(rest)
        else:
            self.buf += rest
            if len(self.buf) > MAX_LINE:
                self.skipping = len(self.buf) - MAX_LINE
                del self.buf[MAX_LINE:]

    def _finish(self) -> None:
        if self.closed:
            return
        if self.buf:
            raw, dropped = bytes(self.buf), self.skipping
            self.buf.clear()
            self.close()
            self._emit(raw, dropped)
            return
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.loop.is_closed():  # (the launcher closes what is left after its loop ended)
            self.loop.remove_reader(self.fd)
            self.eof.set_result(None)
        os.close(self.fd)


class Output:
    """A component's stdout and stderr: two pipes. The agent reads their read ends (each line
    to ``sink``, the last ``TAIL_LINES`` in ``tail``) and, under a ``Launcher``, keeps their
    write ends open: one pair of pipes then serves a component from one child to the next,
    so a respawn creates no pipe and its posix_spawn file actions are built once
    (``actions``). A child's exit is no EOF then: in its pidfd callback, before a
    replacement can write, ``mark_exit`` notes how much the pipes hold (that much is its
    output, and a line it left open ends there), and ``catch_up`` reads up to that mark
    after the respawn (no further: a successor that floods the pipe is read by the loop as
    usual). ``close_writers`` (the component is done) lets the readers read on until every
    process holding a write end is gone (EOF), then close.

    ``spawn`` (one child, no launcher) closes the write ends right after its spawn: those
    pipes end with the child."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: LineSink) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        out_r, out_w = os.pipe()
        try:
            err_r, err_w = os.pipe()
        except BaseException:
            os.close(out_r)
            os.close(out_w)
            raise
        self.writers: tuple[int, int] | None = (out_w, err_w)
        self._readers = [_LineReader(loop, out_r, "stdout", sink, self.tail),
                         _LineReader(loop, err_r, "stderr", sink, self.tail)]
        self._actions: dict[tuple[int, bytes | None], launch.FileActions] = {}
        self.inflight = 0  # spawns on these pipes in the launcher's pool (see Launcher.release)
        self.release_wanted = False
        self.current: int | None = None  # the pid of the latest child writing to them

    def actions(self, prep: launch.Prepared | None, stdin: int) -> launch.FileActions | None:
        """The file actions of ``prep``'s child on these pipes (built at the first use of this
        stdin and cwd; call in the loop, not in a pool thread). None when the child goes
        through Popen: no C form, or an fd is one of 0-2 (the agent started with a standard
        fd closed), which Popen sorts out."""
        if prep is None:
            return None
        key = (stdin, prep.cwd)
        fa = self._actions.get(key)
        if fa is None:
            lib = launch.libc()
            if lib is None or self.writers is None or min(stdin, *self.writers) <= 2:
                return None
            fa = self._actions[key] = lib.file_actions(stdin, self.writers[0], self.writers[1], prep.cwd)
        return fa

    def mark_exit(self) -> None:
        """A child exited (call before anything else may write to these pipes, e.g. its
        replacement): its output ends at what the pipes hold now."""
        for r in self._readers:
            r.mark()

    def catch_up(self) -> None:
        """Read the exited child's output up to its ``mark_exit`` (its last line ended)."""
        for r in self._readers:
            r.read_marked()

    async def drain(self, timeout: float) -> None:
        """What the exited child printed: read at once while the write ends are ours, else
        up to EOF (at most ``timeout`` seconds)."""
        if self.writers is not None:
            self.catch_up()
            return
        pending = [r.eof for r in self._readers if not r.eof.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def close_writers(self, *, free: bool = True) -> None:
        """``free=False``: a spawn may still be reading the file actions (a pool thread that
        did not end): they are left allocated."""
        if self.writers is None:
            return
        for fd in self.writers:
            os.close(fd)
        self.writers = None
        for fa in self._actions.values():
            fa.close(free=free)
        self._actions.clear()

    def close(self, *, free: bool = True) -> None:
        self.close_writers(free=free)
        for r in self._readers:
            r.close()


def _waitpid(pid: int) -> int:
    """Reap ``pid`` (a zombie by now); its return code as Popen gives it (-N: killed by N)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status)


class Child:
    """A running (or just exited) child. ``exited`` resolves once, when the kernel says so, and
    ``on_exit`` (when set) is called right then, in the same loop callback: the manager's
    respawn does not wait for a later turn of the loop, as a future's callbacks would.
    ``before_reap`` (when set: a manager's child) runs first, before the zombie is even
    reaped: where the manager starts a replacement it knows the machine will want
    (``respawns_at_once``); the reap and ``on_exit`` then follow in the next turn of the
    loop, exits in the order the kernel reported them."""

    def __init__(self, spec: ComponentSpec, pid: int, output: Output, started_at: float,
                 loop: asyncio.AbstractEventLoop, reap: Callable[[], int] | None = None, *,
                 owns_output: bool = False) -> None:
        """``output``: the pipes its stdout and stderr go to (``owns_output``: this child's
        alone, closed with ``close_output``; else the launcher's, shared with its successors);
        ``reap``: how to collect its status once it exited (default: ``waitpid``)."""
        self.spec = spec
        self.pid = pid
        self.started_at = started_at
        self.output = output
        self.exited: asyncio.Future[ExitStatus] = loop.create_future()
        self.on_exit: Callable[[], None] | None = None
        self.before_reap: Callable[[], None] | None = None
        self._exiting = False
        self._loop = loop
        self._reap = reap or (lambda: _waitpid(pid))
        self._owns_output = owns_output
        self._pidfd = os.pidfd_open(self.pid)
        try:
            loop.add_reader(self._pidfd, self._on_exit)
        except BaseException:
            os.close(self._pidfd)
            raise
        output.current = pid  # its latest writer

    @property
    def tail(self) -> collections.deque[str]:
        """The last lines of its output (under a launcher: of its component's children)."""
        return self.output.tail

    def _on_exit(self) -> None:
        if self._exiting:
            return  # reported again before the clean-up below ran
        self._exiting = True
        if self.output.writers is not None and self.output.current == self.pid:
            # shared pipes, and it was their latest writer: where its output ends, before a
            # successor writes (an older child's late exit must not cut the successor's line)
            self.output.mark_exit()
        if self.before_reap is not None:
            # (a manager's child) the replacement may be on its way now; the reap and the
            # exit's handling come after the other pidfd callbacks of this turn, in their
            # order (in a mass kill every replacement starts first)
            try:
                self.before_reap()
            finally:
                self._loop.call_soon(self._exit_handled)
            return
        self._exit_handled()

    def _exit_handled(self) -> None:
        rc = self._reap()  # already a zombie: returns at once, and reaps it
        self._loop.call_soon(self._close_pidfd)  # after the respawn this callback leads to
        self._loop.call_soon(self.output.catch_up)  # what it printed last, before a successor's lines
        self.exited.set_result(ExitStatus.from_returncode(rc))
        if self.on_exit is not None:
            self.on_exit()

    def _close_pidfd(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Signal the child (or its whole process group); only while it is unreaped, so the
        PID is still ours. A child that left its group (``setpgid`` into another one, or
        ``setsid`` after that) is signalled by its PID as well: the group alone would miss it."""
        if not self.alive:
            return
        try:
            if group:
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    pass  # the group is gone (the child left it): its pid below
                if _pgid(self.pid) == self.pid:
                    return
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    async def stop(self, sig: int, timeout: float) -> tuple[ExitStatus | None, bool]:
        """``sig`` to the group (and the pid), wait ``timeout``, then SIGKILL both. Returns the
        exit status (None when even SIGKILL did not end it within KILL_WAIT, e.g. a process in
        uninterruptible sleep: the caller moves on, so a stop always finishes) and whether the
        KILL was needed."""
        self.signal(sig, group=True)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout), False
        except TimeoutError:
            self.signal(signal.SIGKILL, group=True)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), KILL_WAIT), True
        except TimeoutError:
            return None, True

    async def drain(self, timeout: float) -> None:
        """Read what it printed up to its exit (waiting a little for EOF on pipes of its own),
        e.g. before quoting the tail."""
        await self.output.drain(timeout)

    def close_output(self) -> None:
        """Its own pipes are closed (shared ones stay: the launcher closes them)."""
        if self._owns_output:
            self.output.close()


def spawn(spec: ComponentSpec, *, instance: str, sink: LineSink, now: float,
          loop: asyncio.AbstractEventLoop, base_env: Mapping[str, str] | None = None) -> Child:
    """Start ``spec`` in its own process group with the ownership markers in its environment:
    stdin /dev/null, stdout and stderr pipes, nothing else inherited. (What ``Launcher``
    does inline, without a launcher: /dev/null is opened for this one spawn.)"""
    env = _env_for(spec, instance) if base_env is None else build_env(spec, instance, base_env)
    output = Output(loop, sink)
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            prep = _c_form(spec, env)
            started = _start(spec, env, prep, devnull, output, output.actions(prep, devnull))
        finally:
            os.close(devnull)
        output.close_writers()  # the child holds them now: its pipes end with it
        return _supervised(spec, started, output, now, loop, owns_output=True)
    except BaseException:
        output.close()
        raise


Started = tuple[int, "Callable[[], int] | None"]  # pid, how to reap it


def _start(spec: ComponentSpec, env: dict[str, str], prep: launch.Prepared | None, devnull: int, output: Output,
           fa: launch.FileActions | None,
           run: Callable[[launch.Prepared, launch.FileActions], int] | None = None) -> Started:
    """The child, its stdout and stderr on ``output``'s pipes: libc's posix_spawn through
    ``launch`` with the file actions ``fa`` (built in the loop by ``Output.actions``) when it
    fits, else ``subprocess.Popen`` (another user, a binary to look up in PATH, a C library
    without the API, an fd of ours at 0-2); ``run`` does the posix_spawn (default
    ``Libc.spawn_with``). Returns (pid, how to reap it: None = waitpid). Safe to run in a
    worker thread."""
    writers = output.writers
    if writers is None:
        raise RuntimeError(f"component {spec.name}: its output is closed")
    try:
        if prep is not None and fa is not None:  # (file actions exist only where the C API does)
            return (run or fa.lib.spawn_with)(prep, fa), None
        user, group, extra_groups = _credentials(spec.run_as)
        popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
            spec.argv, env=env, cwd=spec.cwd, stdin=devnull, stdout=writers[0], stderr=writers[1],
            process_group=0, close_fds=True, user=user, group=group, extra_groups=extra_groups)
        return popen.pid, popen.wait
    except OSError as err:
        raise _spawn_error(spec, err) from err


def _supervised(spec: ComponentSpec, started: Started, output: Output, now: float,
                loop: asyncio.AbstractEventLoop, *, owns_output: bool = False) -> Child:
    """The ``Child`` of a process just started. Should that fail (no fd left for its pidfd:
    EMFILE), the process is killed and reaped first: never a child nobody supervises."""
    pid, reap = started
    try:
        return Child(spec, pid, output, now, loop, reap=reap, owns_output=owns_output)
    except BaseException as err:
        _kill_started(started, wait=False)
        if isinstance(err, OSError):
            raise ComponentError(f"component {spec.name}", f"cannot watch its process {pid}, killed it: "
                                 f"{err.strerror or err}",
                                 hint="raise the agent's open-files limit (LimitNOFILE in its service unit)") from err
        raise


def _launchable(spec: ComponentSpec) -> bool:
    """posix_spawn keeps the agent's user and takes the binary's path as it is."""
    return spec.binary.is_absolute() and _credentials(spec.run_as) == (None, None, None)


def _c_form(spec: ComponentSpec, env: dict[str, str]) -> launch.Prepared | None:
    """``spec`` converted for libc's posix_spawn, or None when it must go through Popen."""
    lib = launch.libc() if _launchable(spec) else None
    if lib is None:
        return None
    return launch.Prepared(lib, str(spec.binary), spec.argv, env, str(spec.cwd) if spec.cwd else None)


SPAWN_THREADS = 4  # children on their way to exec at once, at most, in a burst
# From this many components on (5 agent fds each: a pidfd and both ends of two pipes), an
# inline spawn goes through ``launch.Handoff``: a vfork child's copy of the fd table costs
# ~0.3 µs per fd here, the hand-off ~60 µs (docs/supervisor.md). A real node has at most 8.
HANDOFF_AT = 40


class Launcher:
    """How the manager starts children. The first spawn of a turn of the event loop runs
    inline (a single restart: nothing is faster than doing it at once); further spawns in the
    same turn (a mass restart, the start-up of many components) go to a pool of
    ``SPAWN_THREADS`` threads, so their vfork-and-exec waits overlap (``launch``: the GIL is
    released during the call). ``spawn`` returns the Child when it ran inline, else None,
    and ``done(Child or the exception)`` is called in the loop later.

    Only specs that posix_spawn can start go to the pool (Popen keeps the GIL: a pool would
    not help it); without the C API everything runs inline."""

    def __init__(self, threads: int = SPAWN_THREADS) -> None:
        self._pool = launch.Pool(threads)
        self._devnull: int | None = None
        self._turn = False  # a spawn ran inline in this turn of the loop
        self._closed = False
        self.inflight = 0  # spawns in the pool, not back in the loop yet
        self._prepared: dict[str, tuple[ComponentSpec, str, launch.Prepared]] = {}
        self._outputs: dict[str, Output] = {}  # per component, from its first spawn to ``release``
        self._handoff: launch.Handoff | None = None
        self.handoff_error: str | None = None  # why spawns stay in the loop's thread (once set)

    def _null(self) -> int:
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY)  # close-on-exec
        return self._devnull

    def spawn(self, spec: ComponentSpec, *, instance: str, sink: LineSink, now: float,
              loop: asyncio.AbstractEventLoop, done: Callable[[Child | Exception], None]) -> Child | None:
        env = _env_for(spec, instance)
        prep = self._prepare(spec, instance, env)
        devnull = self._null()
        output = self._outputs.get(spec.name)
        if output is None or output.writers is None:
            output = self._outputs[spec.name] = Output(loop, sink)
        fa = output.actions(prep, devnull)
        if prep is None or not self._turn:
            if not self._turn:
                self._turn = True
                loop.call_soon(self._next_turn)
            return _supervised(spec, _start(spec, env, prep, devnull, output, fa, self._inline), output, now, loop)

        def work() -> Started:
            return _start(spec, env, prep, devnull, output, fa)

        def finished(result: Any) -> None:
            self.inflight -= 1
            self._settle(output)
            if self._closed and not isinstance(result, BaseException):
                _kill_started(result, wait=False)  # the agent is done: nobody would supervise it
                return
            if not isinstance(result, BaseException):
                try:
                    result = _supervised(spec, result, output, now, loop)
                except Exception as err:  # noqa: BLE001 - handed to done, as a failed spawn
                    result = err
            if isinstance(result, BaseException):
                done(result if isinstance(result, Exception) else RuntimeError(repr(result)))
                return
            done(result)

        output.inflight += 1
        self.inflight += 1
        self._pool.submit(work, finished, _kill_started, loop)
        return None

    def _settle(self, output: Output) -> None:
        """A pool spawn on ``output`` came back: a release that waited for it happens now."""
        output.inflight -= 1
        if output.inflight == 0 and output.release_wanted:
            output.close_writers()

    def respawn(self, spec: ComponentSpec, *, instance: str, now: float,
                loop: asyncio.AbstractEventLoop) -> Child | None:
        """``spawn`` again of a spec object this launcher started before, at the least cost:
        its C form, pipes and file actions are there, so this is one posix_spawn call.
        None (nothing done) when it cannot be that: not started before as this object, the
        Popen path, or a spawn already ran inline in this turn of the loop (use ``spawn``,
        whose pool takes a burst)."""
        if self._turn:
            return None
        hit = self._prepared.get(spec.name)
        output = self._outputs.get(spec.name)
        if hit is None or hit[0] is not spec or hit[1] != instance or output is None or self._devnull is None:
            return None
        fa = output.actions(hit[2], self._devnull)
        if fa is None:
            return None
        self._turn = True
        loop.call_soon(self._next_turn)
        try:
            pid = self._inline(hit[2], fa)
        except OSError as err:
            raise _spawn_error(spec, err) from err
        return _supervised(spec, (pid, None), output, now, loop)

    def _inline(self, prep: launch.Prepared, fa: launch.FileActions) -> int:
        """One spawn for the loop, which waits: through the hand-off thread when the agent
        holds many fds (``HANDOFF_AT``), else in this thread. A hand-off that cannot be had
        is not tried again."""
        if len(self._outputs) >= HANDOFF_AT and self.handoff_error is None:
            try:
                if self._handoff is None:
                    handoff = launch.Handoff(fa.lib)
                    handoff.start()
                    self._handoff = handoff
                return self._handoff.spawn_with(prep, fa)
            except launch.HandoffError as err:
                self.handoff_error = str(err)
                if self._handoff is not None:
                    self._handoff.close()
                    self._handoff = None
        return fa.lib.spawn_with(prep, fa)

    def _next_turn(self) -> None:
        self._turn = False

    def _prepare(self, spec: ComponentSpec, instance: str, env: dict[str, str]) -> launch.Prepared | None:
        """The C form of ``spec`` (cached per spec object), or None when it cannot go to the pool."""
        hit = self._prepared.get(spec.name)
        if hit is not None and hit[0] is spec and hit[1] == instance:
            return hit[2]
        prep = _c_form(spec, env)
        if prep is not None:
            self._prepared[spec.name] = (spec, instance, prep)
        return prep

    def release(self, name: str) -> None:
        """The component is done (stopped, failed, removed): its pipes' write ends are closed,
        and its readers read on until every process holding them is gone. Its next spawn, if
        any, gets new pipes."""
        output = self._outputs.pop(name, None)
        if output is None:
            return
        if output.inflight:  # a spawn in the pool still uses its fds and file actions: after it
            output.release_wanted = True
        else:
            output.close_writers()

    def close(self) -> None:
        """End the pool's threads, close every component's pipes and /dev/null (the agent is
        done)."""
        self._closed = True
        ended = self._pool.close()
        if self._handoff is not None:
            ended = self._handoff.close() and ended
            self._handoff = None
        for output in self._outputs.values():
            output.close(free=ended)
        self._outputs.clear()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None


def _kill_started(result: Started, *, wait: bool = True) -> None:
    """A child started that nobody would supervise (its loop is gone, or it cannot be
    watched): SIGKILL to its group and to its pid (it is unreaped, so the pid is still
    ours; it may have left its group), then reaped. ``wait=False`` (from the event loop):
    reaped at once if it is gone already, else by a daemon thread, so a child slow to die
    (uninterruptible sleep) does not block the loop."""
    pid, reap = result
    launch.kill_unsupervised(pid)
    collect = reap or (lambda: _waitpid(pid))  # (Popen's own wait for a Popen child)
    if wait:
        collect()
        return
    try:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            collect()
            return
    except ChildProcessError:
        return
    threading.Thread(target=collect, name=f"kagent-reap-{pid}", daemon=True).start()


def _spawn_error(spec: ComponentSpec, err: OSError) -> ComponentError:
    if isinstance(err, FileNotFoundError):
        missing = spec.cwd if spec.cwd and not Path(spec.cwd).is_dir() else spec.binary
        return ComponentError(f"component {spec.name}", f"{missing} does not exist",
                              hint="install the binary (see kagent sysinfo)")
    if isinstance(err, PermissionError):
        return ComponentError(f"component {spec.name}", f"{spec.binary} is not executable: {err.strerror}")
    return ComponentError(f"component {spec.name}", f"cannot start {spec.binary}: {err.strerror or err}")


# ---- pidfiles and stale children ---------------------------------------------------------

def read_pidfile(path: Path) -> int | None:
    """The PID in a pidfile, or None when missing or not a positive number."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_ours(pid: int, spec: ComponentSpec | None, instance: str, *, name: str | None = None) -> bool:
    """True only when /proc says the process carries our marker for this component and runs
    this spec's binary. Any doubt (unreadable, another user, a thread id) means no. Without a
    spec (a component no longer configured: only its pidfile is left) the marker alone decides:
    ``KAGENT_MANAGED`` of this run dir and ``KAGENT_COMPONENT`` of that name."""
    comp = spec.name if spec is not None else name
    if comp is None:
        return False
    proc = Path(f"/proc/{pid}")
    try:
        status = (proc / "status").read_text()
        tgid = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Tgid:")), None)
        if tgid != str(pid):
            return False
        environ = (proc / "environ").read_bytes().split(b"\0")
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        try:
            exe = os.readlink(proc / "exe").removesuffix(" (deleted)")
        except OSError:
            exe = ""
    except (OSError, ValueError):
        return False
    if f"{MARKER_ENV}={instance}".encode() not in environ or f"{COMPONENT_ENV}={comp}".encode() not in environ:
        return False
    if spec is None:
        return True
    binary = str(spec.binary)
    # argv[0] for an executable; argv[1] for a script run through its #! interpreter
    argv_head = [a.decode(errors="replace") for a in cmdline[:2]]
    return exe == os.path.realpath(binary) or binary in argv_head


async def wait_fd_readable(fd: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def terminate_stale(pidfile: Path, spec: ComponentSpec | None, instance: str, *,
                          name: str | None = None) -> tuple[int | None, str]:
    """If ``pidfile`` names a live process of ours, TERM it (then KILL after the spec's stop
    timeout) and wait until it is gone. Returns (pid, what was done) for the log. ``spec`` None:
    a component that is not configured any more, recognised by its marker (``is_ours``)."""
    pid = read_pidfile(pidfile)
    if pid is None or pid == os.getpid():
        return None, "none"
    try:
        pidfd = os.pidfd_open(pid)  # pins the process: no PID-reuse race from here on
    except (ProcessLookupError, OSError):
        return pid, "gone"
    try:
        if not is_ours(pid, spec, instance, name=name):
            return pid, "not_ours"
        group = _own_group(pid)
        _pidfd_signal(pidfd, pid, spec.stop_signal if spec else signal.SIGTERM, group)
        if await wait_fd_readable(pidfd, spec.stop_timeout if spec else 5.0):
            return pid, "terminated"
        _pidfd_signal(pidfd, pid, signal.SIGKILL, group)
        await wait_fd_readable(pidfd, 5.0)
        return pid, "killed"
    finally:
        os.close(pidfd)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _own_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _pidfd_signal(pidfd: int, pid: int, sig: int, group: bool) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
        if group:
            os.killpg(pid, sig)
    except ProcessLookupError:
        pass
