"""libc posix_spawn through ctypes (launch.Libc), the spawn pool, and the Launcher that uses
them: real children, no agent around them."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kagent.components.spec import ComponentSpec
from kagent.errors import ComponentError
from kagent.supervisor import launch, process
from kagent.supervisor.policy import ExitStatus

LIB = launch.libc()


def test_the_c_api_is_there_on_the_supported_platform():
    # Debian 12's glibc 2.36 has it (closefrom_np/addchdir_np are 2.34+); elsewhere Popen is used
    assert LIB is not None


def run_child(argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Spawn through Libc with stdout to a pipe; (exit code, output)."""
    assert LIB is not None
    prep = launch.Prepared(LIB, argv[0], argv, env if env is not None else {"PATH": "/usr/bin:/bin"}, cwd)
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = LIB.spawn(prep, devnull, w, w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
        os.close(devnull)
    with os.fdopen(r) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_the_child_gets_fds_0_to_2_only_even_an_inheritable_one_of_ours_is_closed():
    leak = os.dup2(os.open(os.devnull, os.O_RDONLY), 100, inheritable=True)
    try:
        assert os.get_inheritable(leak)
        code, out = run_child(["/bin/ls", "/proc/self/fd"])
    finally:
        os.close(leak)
    fds = set(out.split())
    assert code == 0
    assert "100" not in fds
    assert {"0", "1", "2"} <= fds and len(fds - {"0", "1", "2"}) <= 1  # (+ the fd ls reads the dir with)


def test_the_child_has_its_own_group_an_empty_mask_and_sigpipe_back_to_default():
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python ignores it: the child must not
    code, out = run_child(["/bin/cat", "/proc/self/stat", "/proc/self/status"])
    assert code == 0
    stat = out.split("\n", 1)[0].rsplit(")", 1)[1].split()
    pid, pgrp = int(out.split()[0]), int(stat[2])
    assert pgrp == pid != os.getpgid(0)
    fields = dict(line.split(":\t", 1) for line in out.splitlines()[1:] if ":\t" in line)
    assert int(fields["SigBlk"], 16) == 0
    ignored = int(fields["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_cwd_and_environment_are_the_given_ones(tmp_path):
    code, out = run_child(["/bin/sh", "-c", "pwd; echo $X"], cwd=str(tmp_path), env={"X": "y z"})
    assert (code, out.split("\n")[:2]) == (0, [str(tmp_path), "y z"])


def test_a_failed_exec_or_chdir_is_an_oserror_with_its_errno(tmp_path):
    with pytest.raises(OSError) as e:
        run_child([str(tmp_path / "missing")])
    assert e.value.errno == errno.ENOENT and str(tmp_path / "missing") in str(e.value)
    script = tmp_path / "noexec"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(OSError) as e:
        run_child([str(script)])
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        run_child(["/bin/true"], cwd=str(tmp_path / "nodir"))
    assert e.value.errno == errno.ENOENT


def test_a_nul_byte_in_an_argument_or_the_environment_is_refused_not_cut():
    assert LIB is not None
    with pytest.raises(ValueError, match="null byte"):
        launch.Prepared(LIB, "/bin/echo", ["/bin/echo", "a\0b"], {}, None)
    with pytest.raises(ValueError, match="null byte"):
        launch.Prepared(LIB, "/bin/echo", ["/bin/echo"], {"X": "1\0"}, None)


def test_pool_results_and_errors_come_back_in_the_loop_and_close_ends_its_threads():
    pool = launch.Pool(3)
    before = set(threading.enumerate())

    async def main():
        loop = asyncio.get_running_loop()
        got: list[object] = []
        where: set[bool] = set()
        done = asyncio.Event()

        def collect(result: object) -> None:
            where.add(threading.current_thread() is threading.main_thread())
            got.append(result)
            if len(got) == 6:
                done.set()

        def fail() -> int:
            raise ValueError("boom")

        for i in range(5):
            pool.submit(lambda i=i: i * 10, collect, lambda r: None, loop)
        pool.submit(fail, collect, lambda r: None, loop)
        await asyncio.wait_for(done.wait(), 10)
        return got, where

    got, where = asyncio.run(main())
    assert sorted(x for x in got if isinstance(x, int)) == [0, 10, 20, 30, 40]
    assert [str(x) for x in got if isinstance(x, ValueError)] == ["boom"]
    assert where == {True}  # done() always runs in the loop's thread
    assert len(set(threading.enumerate()) - before) == 3
    pool.close()
    assert set(threading.enumerate()) - before == set()


def test_pool_hands_a_result_whose_loop_is_closed_to_undo():
    pool = launch.Pool(1)
    loop = asyncio.new_event_loop()
    loop.close()
    undone: list[int] = []
    gate = threading.Event()
    pool.submit(lambda: 42, lambda r: None, undone.append, loop)
    pool.submit(gate.set, lambda r: None, lambda r: None, loop)
    assert gate.wait(10)
    pool.close()
    assert undone == [42]


def spec(name: str, code: str, **kw) -> ComponentSpec:
    return ComponentSpec(name=name, binary=Path(sys.executable), args=("-c", code), **kw)


def test_a_burst_in_one_turn_runs_the_first_inline_and_the_rest_in_the_pool():
    launcher = process.Launcher(threads=3)
    before = set(threading.enumerate())

    async def main():
        loop = asyncio.get_running_loop()
        lines: dict[str, list[str]] = {}
        results: dict[str, object] = {}
        all_done = asyncio.Event()
        specs = [spec(f"c{i}", "import os; print(os.environ['KAGENT_COMPONENT'], os.getpgid(0) == os.getpid())")
                 for i in range(8)] + [ComponentSpec(name="gone", binary=Path("/nonexistent/bin"))]

        def done_for(name: str):
            def done(result: object) -> None:
                results[name] = result
                if len(results) == len(specs):
                    all_done.set()
            return done

        inline = []
        for s in specs:  # one turn of the loop: no await in between
            child = launcher.spawn(s, instance="test", sink=lambda st, ln, n=s.name: lines.setdefault(n, []).append(ln),
                                   now=0.0, loop=loop, done=done_for(s.name))
            if child is not None:
                inline.append(s.name)
                done_for(s.name)(child)
        await asyncio.wait_for(all_done.wait(), 20)
        statuses = {}
        for name, r in results.items():
            if isinstance(r, process.Child):
                statuses[name] = await r.exited
                await r.drain(2)
        return inline, results, statuses, lines

    try:
        inline, results, statuses, lines = asyncio.run(main())
    finally:
        launcher.close()
    assert inline == ["c0"]
    assert set(statuses) == {f"c{i}" for i in range(8)}
    assert all(st == ExitStatus(code=0) for st in statuses.values())
    assert lines == {f"c{i}": [f"c{i} True"] for i in range(8)}
    gone = results["gone"]
    assert isinstance(gone, ComponentError) and "/nonexistent/bin does not exist" in gone.render()
    assert set(threading.enumerate()) - before == set()


def test_a_spawn_in_the_next_turn_runs_inline_again_and_a_relative_binary_goes_through_popen():
    launcher = process.Launcher(threads=2)

    async def main():
        loop = asyncio.get_running_loop()
        out = []
        for name, binary in (("a", Path(sys.executable)), ("b", Path("true"))):
            child = launcher.spawn(ComponentSpec(name=name, binary=binary, args=("-c", "pass") if name == "a" else ()),
                                   instance="t", sink=lambda s, ln: None, now=0.0, loop=loop, done=out.append)
            assert child is not None, name
            out.append(await child.exited)
            await asyncio.sleep(0)  # the next turn
        return out

    try:
        assert asyncio.run(main()) == [ExitStatus(code=0), ExitStatus(code=0)]
    finally:
        launcher.close()


def test_a_release_waits_for_a_spawn_still_in_the_pool():
    # the pipes and file actions a pool thread is about to use are not closed under it
    launcher = process.Launcher(threads=2)

    async def main():
        loop = asyncio.get_running_loop()
        results = []
        got = asyncio.Event()

        def done(r):
            results.append(r)
            got.set()

        first = launcher.spawn(spec("a", "pass"), instance="t", sink=lambda s, ln: None, now=0.0, loop=loop,
                               done=done)
        assert first is not None  # inline: the first of the turn
        b = spec("b", "print('b ran')")
        assert launcher.spawn(b, instance="t", sink=lambda s, ln: None, now=0.0, loop=loop, done=done) is None
        output = launcher._outputs["b"]
        launcher.release("b")  # in the same turn: the pool has not answered yet
        still_open = output.writers is not None
        await asyncio.wait_for(got.wait(), 10)
        child = results[0]
        status = await child.exited
        await child.drain(2)
        await first.exited
        return still_open, output.writers, status, list(child.tail)

    try:
        still_open, writers_after, status, tail = asyncio.run(main())
    finally:
        launcher.close()
    assert still_open, "released only once the pool's spawn came back"
    assert writers_after is None, "and then released"
    assert status == ExitStatus(code=0) and tail == ["b ran"]


# ---- the hand-off thread: spawns from a small fd table -------------------------------------

def _handoff() -> launch.Handoff:
    assert LIB is not None
    h = launch.Handoff(LIB)
    h.start()
    return h


def _thread_fds(h: launch.Handoff) -> list[str]:
    assert h._thread is not None and h._thread.native_id is not None
    d = f"/proc/self/task/{h._thread.native_id}/fd"
    return [os.readlink(f"{d}/{fd}") for fd in os.listdir(d)]


def test_the_hand_off_thread_holds_a_handful_of_fds_and_its_child_gets_the_agents_pipe():
    assert LIB is not None
    held = [fd for _ in range(100) for fd in os.pipe()]  # an agent with many fds
    h = _handoff()
    try:
        idle = _thread_fds(h)
        r, w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        prep = launch.Prepared(LIB, "/bin/sh", ["/bin/sh", "-c", "echo hi; ls /proc/self/fd"], {}, None)
        fa = LIB.file_actions(devnull, w, w, None)
        try:
            pid = h.spawn_with(prep, fa)
            after = _thread_fds(h)
        finally:
            fa.close()
            os.close(w)  # the child's copy is now the only write end: EOF when it exits
            os.close(devnull)
        with os.fdopen(r) as fh:
            out = fh.read().split()  # would hang if the thread kept a copy of the write end
        _, status = os.waitpid(pid, 0)
    finally:
        assert h.close()
        for fd in held:
            os.close(fd)
    # 0-2, its two pipe ends and the pidfd it fetches fds with; none of the agent's 200 pipes
    assert len(idle) <= 6, idle
    assert sorted(idle) == sorted(after), "what it fetched for the spawn is closed again"
    assert os.waitstatus_to_exitcode(status) == 0
    assert out[0] == "hi" and {"0", "1", "2"} <= set(out[1:]) and len(out[1:]) <= 4


def test_a_failed_exec_through_the_hand_off_is_the_exec_errno_and_close_ends_the_thread(tmp_path):
    assert LIB is not None
    h = _handoff()
    thread = h._thread
    devnull = os.open(os.devnull, os.O_RDONLY)
    fa = LIB.file_actions(devnull, devnull, devnull, None)
    try:
        with pytest.raises(OSError) as e:
            h.spawn_with(launch.Prepared(LIB, str(tmp_path / "missing"), ["x"], {}, None), fa)
        assert e.value.errno == errno.ENOENT and not isinstance(e.value, launch.HandoffError)
        assert h.spawn_with(launch.Prepared(LIB, "/bin/true", ["true"], {}, None), fa) > 0  # still serving
        os.waitpid(-1, 0)
    finally:
        fa.close()
        os.close(devnull)
        assert h.close()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(launch.HandoffError, match="not running"):
        h.spawn_with(launch.Prepared(LIB, "/bin/true", ["true"], {}, None), fa)


def _respawns(launcher: process.Launcher, n: int) -> tuple[list[ExitStatus], list[str], bool]:
    """Spawn one component, then respawn it n times (each in its own turn); statuses, lines,
    whether the launcher had a hand-off thread at the end."""
    s = spec("h", "print('up')")
    lines: list[str] = []

    async def main():
        loop = asyncio.get_running_loop()
        got = []
        child = launcher.spawn(s, instance="t", sink=lambda st, ln: lines.append(ln), now=0.0, loop=loop,
                               done=got.append)
        assert child is not None
        for _ in range(n + 1):
            got.append(await child.exited)
            await asyncio.sleep(0)  # the next turn: respawn runs inline again
            if len(got) > n:
                break
            nxt = launcher.respawn(s, instance="t", now=0.0, loop=loop)
            assert nxt is not None
            child = nxt
        await child.drain(2)
        return got, launcher._handoff is not None

    try:
        got, used = asyncio.run(main())
        return got, lines, used
    finally:
        launcher.close()


def test_a_launcher_with_many_components_respawns_through_the_hand_off(monkeypatch):
    monkeypatch.setattr(process, "HANDOFF_AT", 1)
    launcher = process.Launcher(threads=1)
    statuses, lines, used = _respawns(launcher, 3)
    assert statuses == [ExitStatus(code=0)] * 4 and lines == ["up"] * 4
    assert used and launcher.handoff_error is None
    assert launcher._handoff is None  # closed with the launcher
    assert not [t for t in threading.enumerate() if t.name == "kagent-handoff"]


def test_where_the_kernel_refuses_the_hand_off_spawns_stay_in_the_loops_thread(monkeypatch):
    monkeypatch.setattr(process, "HANDOFF_AT", 1)
    monkeypatch.setattr(launch, "_SYS_PIDFD_GETFD", 100000)  # no such system call: ENOSYS, as before Linux 5.6
    launcher = process.Launcher(threads=1)
    statuses, lines, used = _respawns(launcher, 2)
    assert statuses == [ExitStatus(code=0)] * 3 and lines == ["up"] * 3 and not used
    assert launcher.handoff_error is not None and "pidfd_getfd" in launcher.handoff_error


def _script(code: str) -> str:
    """Run ``code`` in a fresh interpreter (no other test's threads or signal handlers); its stdout."""
    from tests.conftest import kagent_env

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=kagent_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_signal_the_kernel_gives_the_hand_off_thread_still_reaches_the_loop():
    # a process-directed signal goes to any thread that does not block it; the main thread
    # is passed over while it has one pending (here: while it blocks it). Handled in the
    # hand-off thread, the C handler would write the wakeup byte into that thread's own fd
    # table, where the loop's wakeup fd is not: SIGTERM lost, the agent never stops
    out = _script("""
import asyncio, os, signal, time
from kagent.supervisor import launch

async def main():
    loop = asyncio.get_running_loop()
    h = launch.Handoff(launch.libc())
    h.start()
    fired = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, fired.set)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        await asyncio.wait_for(fired.wait(), 5)
        print("handled")
    except TimeoutError:
        print("lost")
    assert h.close()

asyncio.run(main())
""")
    assert out == "handled"


def test_garbage_collected_during_a_hand_off_closes_its_fds_in_the_agents_table():
    # a collection runs in the thread whose allocation trips it; a finalizer run in the
    # hand-off thread would close the fd number in that thread's own table: the agent's fd
    # stays open for good (a pipe's write end: its reader never sees EOF), and the number
    # closed there may be one the thread uses. The threshold is set so that the collection
    # falls at the caller's next allocations or at the thread's first ones.
    out = _script("""
import gc, os, select
from kagent.supervisor import launch
lib = launch.libc()
h = launch.Handoff(lib)
h.start()
devnull = os.open(os.devnull, os.O_RDONLY)
prep = launch.Prepared(lib, "/bin/true", ["true"], {}, None)
fa = lib.file_actions(devnull, devnull, devnull, None)
class Cycle:
    pass
readers = []
for slack in (0, 1, 2, 3, 4) * 2:
    r, w = os.pipe()
    readers.append(r)
    gc.disable()
    c = Cycle()
    c.me, c.f = c, os.fdopen(w, "wb")  # garbage once dropped: closes w when collected
    del c
    gc.set_threshold(gc.get_count()[0] + 1 + slack)
    gc.enable()
    pid = h.spawn_with(prep, fa)
    gc.set_threshold(700, 10, 10)
    os.waitpid(pid, 0)
gc.collect()
assert h.close()
print(sum(1 for r in readers if not select.select([r], [], [], 0)[0]), "of", len(readers))
""")
    assert out == "0 of 10", "write ends still open after their objects were collected"


def test_no_fd_left_for_the_hand_offs_pipes_is_a_hand_off_error_and_leaves_nothing_open():
    # two fds free: the first pipe fits, the second does not (EMFILE). The launcher spawns in
    # its own thread on a HandoffError; an OSError was the spawn's failure, and the first
    # pipe stayed open (again at each later try)
    out = _script("""
import os, resource
from kagent.supervisor import launch
lib = launch.libc()
def fds():
    out = []
    for fd in range(256):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            pass
    return out
held = [fd for fd in range(max(fds())) if fd not in fds()]
held = [os.open(os.devnull, os.O_RDONLY) for _ in held]  # no holes below the highest fd
before = fds()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(before) + 3, hard))
try:
    launch.Handoff(lib).start()
    print("started")
except launch.HandoffError as err:
    print("HandoffError", err.__cause__.__class__.__name__)
except OSError as err:
    print("OSError", err.errno)
finally:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(fds() == before)
""")
    assert out.splitlines() == ["HandoffError OSError", "True"]


def test_an_agent_started_with_stdin_and_stdout_closed_keeps_no_pipe_open_in_the_hand_off():
    # its first pipe is then fds 0 and 1, and the thread's copy of the table kept 0-2 as they
    # were: the write end stayed open there, and its reader never saw EOF
    from tests.conftest import kagent_env

    code = """
import os, select, sys
from kagent.supervisor import launch
lib = launch.libc()
r, w = os.pipe()
h = launch.Handoff(lib)
h.start()
out_r, out_w = os.pipe()
devnull = os.open(os.devnull, os.O_RDONLY)
fa = lib.file_actions(devnull, out_w, out_w, None)
pid = h.spawn_with(launch.Prepared(lib, "/bin/sh", ["sh", "-c", "echo hi"], {}, None), fa)
os.close(out_w)
os.waitpid(pid, 0)
os.close(w)
eof = select.select([r], [], [], 2)[0] and os.read(r, 1) == b""
print(r, w, "eof" if eof else "open", os.read(out_r, 100).decode().strip(), file=sys.stderr)
assert h.close()
"""
    done = subprocess.run(["/bin/sh", "-c", 'exec "$0" -c "$1" <&- >&-', sys.executable, code],
                          capture_output=True, text=True, timeout=30, env=kagent_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == ["0", "1", "eof", "hi"]
