"""Edge. Starting a child with the C library's ``posix_spawn``, called through ctypes, and a
small pool of threads that does it off the event loop.

Why not ``os.posix_spawn`` or ``subprocess.Popen``: both keep the GIL through the whole
vfork-and-exec wait (glibc's posix_spawn is clone(CLONE_VM|CLONE_VFORK): the caller sleeps
until the child has exec'd, which under load means until the scheduler runs the child), so
spawns are strictly one after the other. A ctypes call releases the GIL: a few threads then
have several children on their way to exec at once (a mass restart, the start-up of many
components), and the event loop keeps running meanwhile. The C API also gives what
``os.posix_spawn`` lacks: ``posix_spawn_file_actions_addclosefrom_np`` (the child gets fds
0-2 only, whatever the agent has open or inherited) and ``..._addchdir_np`` (its working
directory). Both are glibc 2.34+ (Debian 12 has 2.36); ``libc()`` is None on a C library
without them, and the callers fall back to Popen.

The child: fds 0-2 from the caller, every other fd closed, its own process group, an empty
signal mask, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them; Popen's
``restore_signals`` does the same), and handled signals reset by exec as always.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import queue
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

_SETPGROUP, _SETSIGDEF, _SETSIGMASK = 0x02, 0x04, 0x08  # <spawn.h> (glibc)
_CLONE_FILES = 0x400  # <sched.h>
_SYS_PIDFD_GETFD = 438  # one number on x86-64, arm64, arm and i386 (the shared syscall table, Linux 5.6+)
_OPAQUE = 1024  # bytes for posix_spawn_file_actions_t / posix_spawnattr_t / sigset_t (glibc x86-64: 80/336/128)


class Prepared:
    """What one spawn needs, converted to C once (a spec is spawned again and again with the
    same argv and environment). Immutable after construction: threads share it."""

    def __init__(self, lib: Libc, path: str, argv: Sequence[str], env: dict[str, str], cwd: str | None) -> None:
        self.path = os.fsencode(path)
        args = [os.fsencode(a) for a in argv]
        envs = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        self.cwd = os.fsencode(cwd) if cwd is not None else None
        if any(b"\0" in x for x in (self.path, self.cwd or b"", *args, *envs)):
            raise ValueError("embedded null byte")  # a C string would end there (Popen refuses it too)
        self.argv, self.envp = lib.strings(args), lib.strings(envs)


class Libc:
    """The C library's posix_spawn API, loaded once; one shared, read-only attributes object
    (process group, signal mask, default signals: the same for every child)."""

    def __init__(self) -> None:
        import ctypes

        self._ct = ctypes
        # the C library this interpreter runs on: posix_spawn releases the GIL (CDLL); the
        # small set-up calls keep it (PyDLL), so a pool thread does not wait for the GIL
        # again after each of them
        lib, quick = ctypes.CDLL(None, use_errno=True), ctypes.PyDLL(None, use_errno=True)
        vp, i, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        argv_t = ctypes.POINTER(cp)

        def fn(name: str, *args: Any, releases_gil: bool = False) -> Any:
            f = getattr(lib if releases_gil else quick, name)  # AttributeError: not this C library
            f.argtypes, f.restype = list(args), i
            return f

        self._spawn = fn("posix_spawn", ctypes.POINTER(i), cp, vp, vp, argv_t, argv_t, releases_gil=True)
        self._fa_init = fn("posix_spawn_file_actions_init", vp)
        self._fa_destroy = fn("posix_spawn_file_actions_destroy", vp)
        self._fa_dup2 = fn("posix_spawn_file_actions_adddup2", vp, i, i)
        self._fa_closefrom = fn("posix_spawn_file_actions_addclosefrom_np", vp, i)
        self._fa_chdir = fn("posix_spawn_file_actions_addchdir_np", vp, cp)
        attr_init = fn("posix_spawnattr_init", vp)
        setflags = fn("posix_spawnattr_setflags", vp, ctypes.c_short)
        setpgroup = fn("posix_spawnattr_setpgroup", vp, i)
        setsigmask = fn("posix_spawnattr_setsigmask", vp, vp)
        setsigdefault = fn("posix_spawnattr_setsigdefault", vp, vp)
        sigemptyset, sigaddset = fn("sigemptyset", vp), fn("sigaddset", vp, i)
        self._attr = ctypes.create_string_buffer(_OPAQUE)
        empty, default = ctypes.create_string_buffer(_OPAQUE), ctypes.create_string_buffer(_OPAQUE)
        for rc in (attr_init(self._attr), sigemptyset(empty), sigemptyset(default),
                   sigaddset(default, signal.SIGPIPE), sigaddset(default, signal.SIGXFSZ),
                   setflags(self._attr, _SETPGROUP | _SETSIGDEF | _SETSIGMASK), setpgroup(self._attr, 0),
                   setsigmask(self._attr, empty), setsigdefault(self._attr, default)):
            if rc != 0:
                raise OSError(rc, "posix_spawnattr set-up failed")

    def file_actions(self, stdin: int, stdout: int, stderr: int, cwd: bytes | None) -> FileActions:
        return FileActions(self, stdin, stdout, stderr, cwd)

    def strings(self, items: list[bytes]) -> Any:
        """A NULL-terminated ``char *[]`` (keeps ``items`` alive with it)."""
        return (self._ct.c_char_p * (len(items) + 1))(*items, None)

    def spawn(self, prep: Prepared, stdin: int, stdout: int, stderr: int) -> int:
        """Start ``prep`` with these fds as its 0, 1, 2 (each must be above 2); returns its pid.
        Raises OSError with the errno of the failed exec (ENOENT, EACCES, ENOEXEC) or chdir.
        Thread-safe; the GIL is released during the call."""
        fa = FileActions(self, stdin, stdout, stderr, prep.cwd)
        try:
            return self.spawn_with(prep, fa)
        finally:
            fa.close()

    def spawn_with(self, prep: Prepared, fa: FileActions) -> int:
        """``spawn`` with file actions built before (their cwd, not ``prep``'s, is used): a
        respawn over the same fds is this one C call. Thread-safe (``fa`` is only read)."""
        ct = self._ct
        pid = ct.c_int()
        self._check(self._spawn(ct.byref(pid), prep.path, fa.buf, self._attr, prep.argv, prep.envp), prep.path)
        return int(pid.value)

    @staticmethod
    def _check(rc: int, path: bytes | None = None) -> None:
        if rc != 0:
            raise OSError(rc, os.strerror(rc), *((os.fsdecode(path),) if path is not None else ()))


class FileActions:
    """A ``posix_spawn_file_actions_t``, built once: the child's 0, 1, 2 from these fds (each
    above 2), every other fd closed, then ``cwd``. Read-only once built (threads share it);
    ``close`` frees it."""

    def __init__(self, lib: Libc, stdin: int, stdout: int, stderr: int, cwd: bytes | None) -> None:
        self.lib = lib  # the C library that built it (and spawns with it)
        self.cwd = cwd
        self.fds = (stdin, stdout, stderr)  # the caller's fds the child gets as 0, 1, 2
        self.buf: Any = lib._ct.create_string_buffer(_OPAQUE)
        lib._check(lib._fa_init(self.buf))
        try:
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                lib._check(lib._fa_dup2(self.buf, fd, target))
            if cwd is not None:
                lib._check(lib._fa_chdir(self.buf, cwd))
            lib._check(lib._fa_closefrom(self.buf, 3))
        except BaseException:
            self.close()
            raise

    def close(self, *, free: bool = True) -> None:
        """Free it (``free=False``: only forget it, for a pool thread that may still read it)."""
        if self.buf is not None:
            if free:
                self.lib._fa_destroy(self.buf)
            self.buf = None


class HandoffError(Exception):
    """The hand-off thread cannot spawn (not: the spawn failed)."""


class Handoff:
    """A thread with an fd table of its own, which spawns for a caller that waits.

    A vfork child starts with a copy of its parent's fd table and closes it again (the
    ``closefrom`` action; exec would close the close-on-exec rest): about 0.3 µs per open fd
    here, 300 µs when the agent holds 1,000. This thread ``unshare``s its fd table when it
    starts and closes everything in it but its two pipe ends, so the children it spawns copy
    a handful. Per spawn it fetches the three fds the child gets from the agent's table
    (``pidfd_getfd`` on a pidfd of its own process), spawns, and closes them again: it keeps
    no pipe's write end, so the agent's readers still see EOF once the agent and the child
    close theirs. The caller blocks in a read (the GIL released) until the thread answers:
    the hand-off costs two thread wake-ups (~60 µs here), so it pays only in an agent with
    a few hundred fds (``process.Launcher`` decides). Python code in the thread must not
    touch an fd of the agent's by number: it blocks every signal (a handler's wakeup byte),
    and the caller holds off garbage collection while the thread runs (a finalizer's close).

    ``start`` and ``spawn_with`` raise ``HandoffError`` when the hand-off cannot be had (no
    ``pidfd_getfd`` before Linux 5.6, a seccomp filter, no fd left, the thread gone): the
    caller then spawns in its own thread. A failed exec is the OSError ``Libc.spawn_with``
    raises, as without the hand-off."""

    def __init__(self, lib: Libc) -> None:
        self._lib = lib
        self._lock = threading.Lock()  # one spawn at a time
        self._job: tuple[Prepared, FileActions] | None = None
        self._answer: int | BaseException | None = None
        self._req_w = self._rep_r = -1
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ct = self._lib._ct
        quick = ct.PyDLL(None, use_errno=True)
        unshare, close_range, syscall = quick.unshare, quick.close_range, quick.syscall
        unshare.argtypes, unshare.restype = [ct.c_int], ct.c_int
        close_range.argtypes, close_range.restype = [ct.c_uint, ct.c_uint, ct.c_int], ct.c_int
        syscall.argtypes, syscall.restype = [ct.c_long, ct.c_int, ct.c_int, ct.c_uint], ct.c_long

        def getfd(pidfd: int, fd: int) -> int:
            got = int(syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
            if got < 0:
                err = ct.get_errno()
                raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
            return got

        try:  # (EMFILE: this fails, not the spawn, which goes on in the caller's thread)
            req_r, self._req_w = _pipe_above_2()
            try:
                self._rep_r, rep_w = _pipe_above_2()
            except BaseException:
                os.close(req_r)
                raise
        except OSError as err:
            self.close()
            raise HandoffError(f"no spawn hand-off: {err}") from err
        ready: list[BaseException | None] = []
        up = threading.Event()

        def run() -> None:
            actions: dict[tuple[int, int, int, bytes | None], FileActions] = {}
            # no signal handled here: the C handler writes the wakeup byte to an fd number
            # of the loop's table, which is not this thread's (its children's mask is the
            # spawn attributes' empty one)
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            try:
                try:
                    if unshare(_CLONE_FILES) != 0:
                        raise OSError(ct.get_errno(), "unshare(CLONE_FILES)")
                    # this table is a copy of the agent's: keep 0-2 and the two pipe ends (above
                    # 2) only
                    lo, hi = sorted((req_r, rep_w))
                    for first, last in ((3, lo - 1), (lo + 1, hi - 1), (hi + 1, 0xFFFFFFFF)):
                        if first <= last and close_range(first, last, 0) != 0:
                            raise OSError(ct.get_errno(), "close_range")
                    # 0-2 as inherited stay; one the agent reused (it started with that fd
                    # closed: a pipe end of its own, held here, would never see EOF) or left
                    # free gets /dev/null, so what is fetched below lands above 2 as well
                    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    for fd, stream in enumerate((sys.__stdin__, sys.__stdout__, sys.__stderr__)):
                        if fd != null and (stream is None or not _is_open(fd)):
                            os.dup2(null, fd, inheritable=False)
                    if null > 2:
                        os.close(null)
                    me = os.pidfd_open(os.getpid())  # the agent's table is its main thread's
                    os.close(getfd(me, self._req_w))  # the kernel lets us: fail here, not at a spawn
                except BaseException as err:  # noqa: BLE001 - the starter raises it
                    ready.append(err)
                    return
                ready.append(None)
                up.set()
                os.write(rep_w, b"x")  # parked: no more Python here until the next request
                while os.read(req_r, 1):
                    assert self._job is not None
                    prep, fa = self._job
                    try:
                        self._answer = self._spawn(me, getfd, actions, prep, fa)
                    except BaseException as err:  # noqa: BLE001 - the caller raises it
                        self._answer = err
                    os.write(rep_w, b"x")
            finally:
                for mine in actions.values():
                    mine.close()
                up.set()
                # (the thread's own table, with req_r and rep_w, goes with the thread: the
                # caller's read then ends with EOF)

        t = threading.Thread(target=run, name="kagent-handoff", daemon=True)
        with _collections_held():
            try:
                t.start()
                up.wait()
            except RuntimeError as err:  # can't start new thread
                ready[:] = [err]
            finally:
                # the thread has its copies (or is gone): ours would keep its pipes from EOF
                os.close(req_r)
                os.close(rep_w)
            if ready and ready[0] is None and not os.read(self._rep_r, 1):
                ready[0] = RuntimeError("the hand-off thread ended")
        failed = ready[0] if ready else RuntimeError("the hand-off thread did not start")
        if failed is not None:
            self.close()
            raise HandoffError(f"no spawn hand-off: {failed}") from failed
        self._thread = t

    def _spawn(self, me: int, getfd: Callable[[int, int], int], actions: dict[tuple[int, int, int, bytes | None], FileActions],
               prep: Prepared, fa: FileActions) -> int:
        fds: list[int] = []
        try:
            for fd in fa.fds:
                try:
                    fds.append(getfd(me, fd))
                except OSError as err:  # (EMFILE, say): not the child's failure
                    raise HandoffError(str(err)) from err
            a, b, c = fds
            mine = actions.get((a, b, c, fa.cwd))
            if mine is None:  # (the same numbers every time: this table holds nothing else)
                mine = actions[(a, b, c, fa.cwd)] = FileActions(self._lib, a, b, c, fa.cwd)
            return self._lib.spawn_with(prep, mine)
        finally:
            for fd in fds:
                os.close(fd)

    def spawn_with(self, prep: Prepared, fa: FileActions) -> int:
        """``Libc.spawn_with`` in the thread; the caller waits."""
        with self._lock:
            if self._thread is None:
                raise HandoffError("the hand-off thread is not running")
            interrupted: BaseException | None = None
            with _collections_held():
                self._job = (prep, fa)
                os.write(self._req_w, b"x")
                while True:  # the spawn is under way: its answer is waited for, whatever happens here
                    try:
                        got = os.read(self._rep_r, 1)
                        break
                    except BaseException as err:  # noqa: BLE001 - a signal handler raised: re-raised below
                        interrupted = err
            answer, self._job, self._answer = self._answer, None, None
            if not got:
                self._thread = None
                raise HandoffError("the hand-off thread ended")
            if interrupted is not None:
                if isinstance(answer, int):  # nobody will supervise it
                    _kill_and_reap(answer)
                raise interrupted
            if isinstance(answer, BaseException):
                raise answer
            assert answer is not None
            return answer

    def close(self, timeout: float = 5.0) -> bool:
        """End the thread (EOF on its pipe; call from the thread that spawns through it, not
        during a spawn). False when it is still busy after ``timeout``."""
        with _collections_held():  # (its last Python code runs before join returns)
            for fd in (self._req_w, self._rep_r):
                if fd >= 0:
                    os.close(fd)
            self._req_w = self._rep_r = -1
            t, self._thread = self._thread, None
            if t is not None:
                t.join(timeout)
                return not t.is_alive()
        return True


def _pipe_above_2() -> tuple[int, int]:
    """``os.pipe()`` with both ends above 2 (in an agent started with a standard fd closed,
    the pipe may get it)."""
    ends = list(os.pipe())
    try:
        for i, fd in enumerate(ends):
            if fd <= 2:
                ends[i] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                os.close(fd)
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    return ends[0], ends[1]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _collections_held() -> Iterator[None]:
    """No automatic garbage collection meanwhile: while the hand-off thread runs Python code,
    a collection would run in it when its allocations trip one, and a finalizer there (a
    socket's, a file's) would close the fd number in that thread's table, not the agent's.
    (The caller waits meanwhile; other threads only collect later.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def kill_unsupervised(pid: int) -> None:
    """SIGKILL to a child just started that nobody will supervise: to its group and to its
    pid (it is unreaped, so the pid is still ours; it may have left its group)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill_and_reap(pid: int) -> None:
    kill_unsupervised(pid)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


_libc: Libc | None = None
_libc_tried = False


def libc() -> Libc | None:
    """The loaded API, or None when this C library lacks part of it (then use Popen)."""
    global _libc, _libc_tried
    if not _libc_tried:
        _libc_tried = True
        try:
            _libc = Libc()
        except (OSError, AttributeError):
            _libc = None
    return _libc


Work = Callable[[], Any]
Done = Callable[[Any], None]  # gets the work's result, or the exception it raised
Undo = Callable[[Any], None]  # what to do with a result nobody can take any more


class Pool:
    """``threads`` daemon threads running submitted work. Each result goes back to the event
    loop with ``call_soon_threadsafe``; a result whose loop is gone is handed to ``undo`` (a
    child nobody would supervise is killed there). Threads start at the first ``submit`` and
    block on a queue while idle (no wake-ups); ``close`` ends and joins them."""

    def __init__(self, threads: int) -> None:
        self._size = threads
        self._q: queue.SimpleQueue[tuple[Work, Done, Undo, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, work: Work, done: Done, undo: Undo, loop: Any) -> None:
        if not self._threads:
            for n in range(self._size):
                t = threading.Thread(target=self._run, name=f"kagent-spawn-{n}", daemon=True)
                t.start()
                self._threads.append(t)
        self._q.put((work, done, undo, loop))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            work, done, undo, loop = item
            try:
                result = work()
            except BaseException as err:  # noqa: BLE001 - handed to the loop, which reports it
                result = err
            try:
                loop.call_soon_threadsafe(done, result)
            except RuntimeError:  # the loop is closed
                if not isinstance(result, BaseException):
                    undo(result)

    def close(self, timeout: float = 5.0) -> bool:
        """End the threads; False when one is still busy after ``timeout`` (a spawn stuck in
        exec, e.g. a binary on a hung file system: what it uses must not be freed)."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._q.put(None)
        for t in threads:
            t.join(timeout)
        return not any(t.is_alive() for t in threads)
