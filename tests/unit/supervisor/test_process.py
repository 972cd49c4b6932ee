"""The process edge with real children (no agent around it)."""

import asyncio
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest

from kagent.components.spec import ComponentSpec
from kagent.errors import ComponentError
from kagent.supervisor import process
from kagent.supervisor.policy import ExitStatus

INSTANCE = "test-instance"


def run(coro):
    return asyncio.run(coro)


def py(name: str, code: str, **kw) -> ComponentSpec:
    return ComponentSpec(name=name, binary=Path(sys.executable), args=("-c", code), **kw)


async def spawn_collect(spec: ComponentSpec) -> tuple[process.Child, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    child = process.spawn(spec, instance=INSTANCE, sink=lambda s, ln: lines.append((s, ln)), now=0.0,
                          loop=asyncio.get_running_loop())
    return child, lines


def test_output_is_split_into_lines_per_stream_and_exit_is_reported():
    async def main():
        child, lines = await spawn_collect(py("a", "import sys; print('one'); print('two', file=sys.stderr); "
                                                  "sys.stdout.write('no newline'); sys.exit(7)"))
        ex = await child.exited
        await child.drain(2)
        return ex, lines, list(child.tail)

    ex, lines, tail = run(main())
    assert ex == ExitStatus(code=7)
    assert sorted(lines) == [("stderr", "two"), ("stdout", "no newline"), ("stdout", "one")]
    assert set(tail) == {"one", "two", "no newline"}


def test_a_huge_line_is_cut_and_the_next_line_survives():
    async def main():
        child, lines = await spawn_collect(py("a", "import sys; sys.stdout.write('z'*300000 + '\\nnext\\n')"))
        await child.exited
        await child.drain(2)
        return lines

    lines = run(main())
    assert len(lines) == 2
    assert lines[0][1] == "z" * process.MAX_LINE + f" [line cut: {300000 - process.MAX_LINE} more bytes]"
    assert lines[1] == ("stdout", "next")


def test_env_markers_and_own_process_group():
    async def main():
        child, lines = await spawn_collect(py("comp", "import os; print(os.environ['KAGENT_MANAGED'], "
                                                      "os.environ['KAGENT_COMPONENT'], os.environ['X'], "
                                                      "os.getpgid(0) == os.getpid())", env=(("X", "y"),)))
        await child.exited
        await child.drain(2)
        return lines

    assert run(main()) == [("stdout", f"{INSTANCE} comp y True")]


def test_stop_escalates_to_kill_for_a_term_ignoring_child():
    code = "import signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"

    async def main():
        child, lines = await spawn_collect(py("a", code))
        while not lines:
            await asyncio.sleep(0.01)
        return await child.stop(signal.SIGTERM, 0.3)

    ex, killed = run(main())
    assert killed and ex == ExitStatus(signal=signal.SIGKILL)


def test_a_child_that_left_its_process_group_is_still_stopped():
    """Its group is gone, so killpg finds nothing: the stop signals the pid and finishes."""
    code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.setpgid(0, os.getpgid(os.getppid())); print('left', flush=True); time.sleep(60)")

    async def main():
        child, lines = await spawn_collect(py("a", code))
        while not lines:
            await asyncio.sleep(0.01)
        assert os.getpgid(child.pid) != child.pid
        return await asyncio.wait_for(child.stop(signal.SIGTERM, 0.3), 10)

    ex, killed = run(main())
    assert killed and ex == ExitStatus(signal=signal.SIGKILL)


def test_missing_binary_is_a_component_error_naming_it(tmp_path):
    spec = ComponentSpec(name="etcd", binary=tmp_path / "etcd")

    async def main():
        process.spawn(spec, instance=INSTANCE, sink=lambda s, ln: None, now=0, loop=asyncio.get_running_loop())

    with pytest.raises(ComponentError, match=rf"component etcd: {tmp_path / 'etcd'} does not exist"):
        run(main())


def test_is_ours_needs_marker_component_and_binary(tmp_path):
    sleep = Path("/bin/sleep")
    env = {"KAGENT_MANAGED": INSTANCE, "KAGENT_COMPONENT": "a"}
    ours = subprocess.Popen([str(sleep), "30"], env=env)
    bare = subprocess.Popen([str(sleep), "30"])
    try:
        assert process.is_ours(ours.pid, ComponentSpec(name="a", binary=sleep), INSTANCE)
        assert not process.is_ours(ours.pid, ComponentSpec(name="b", binary=sleep), INSTANCE)
        assert not process.is_ours(ours.pid, ComponentSpec(name="a", binary=Path("/bin/true")), INSTANCE)
        assert not process.is_ours(ours.pid, ComponentSpec(name="a", binary=sleep), "other-instance")
        assert not process.is_ours(bare.pid, ComponentSpec(name="a", binary=sleep), INSTANCE)
    finally:
        for p in (ours, bare):
            p.kill()
            p.wait()
    assert not process.is_ours(ours.pid, ComponentSpec(name="a", binary=sleep), INSTANCE)  # gone


def test_is_ours_recognises_a_script_run_through_its_interpreter(tmp_path):
    """A component binary may be a #! script: /proc/<pid>/exe is the interpreter, argv[1] the script."""
    script = tmp_path / "kube-thing"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    other = tmp_path / "other-thing"
    other.write_text(script.read_text())
    other.chmod(0o755)
    env = {"KAGENT_MANAGED": INSTANCE, "KAGENT_COMPONENT": "a", "PATH": "/usr/bin:/bin"}
    # run through the interpreter without exec'ing away from it
    p = subprocess.Popen(["/bin/sh", str(script)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while b"kube-thing" not in Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.is_ours(p.pid, ComponentSpec(name="a", binary=script), INSTANCE)
        assert not process.is_ours(p.pid, ComponentSpec(name="a", binary=other), INSTANCE)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_terminate_stale_only_touches_our_process(tmp_path):
    sleep = Path("/bin/sleep")
    spec = ComponentSpec(name="a", binary=sleep, stop_timeout=2)
    ours = subprocess.Popen([str(sleep), "30"], env={"KAGENT_MANAGED": INSTANCE, "KAGENT_COMPONENT": "a"},
                            process_group=0)
    other = subprocess.Popen([str(sleep), "30"])
    pidfile = tmp_path / "a.pid"
    try:
        pidfile.write_text(f"{other.pid}\n")
        assert run(process.terminate_stale(pidfile, spec, INSTANCE)) == (other.pid, "not_ours")
        assert other.poll() is None
        pidfile.write_text(f"{ours.pid}\n")
        assert run(process.terminate_stale(pidfile, spec, INSTANCE)) == (ours.pid, "terminated")
        assert ours.wait(timeout=5) == -signal.SIGTERM
        pidfile.write_text("junk")
        assert run(process.terminate_stale(pidfile, spec, INSTANCE)) == (None, "none")
    finally:
        for p in (ours, other):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_instance_id_is_stable_per_run_dir():
    assert process.instance_id(Path("/run/kagent")) == process.instance_id(Path("/run/kagent"))
    assert process.instance_id(Path("/run/kagent")) != process.instance_id(Path("/tmp/run"))


def test_build_env_drops_inherited_markers():
    spec = ComponentSpec(name="x", binary=Path("/bin/true"), env=(("A", "1"),))
    env = process.build_env(spec, "id", {"KAGENT_MANAGED": "old", "KAGENT_COMPONENT": "old", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "A": "1", "KAGENT_MANAGED": "id", "KAGENT_COMPONENT": "x"}
    assert os.environ.get("KAGENT_MANAGED") is None


def test_build_env_never_passes_the_agents_notify_socket():
    spec = ComponentSpec(name="etcd", binary=Path("/bin/true"))
    base = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1", "PATH": "/bin"}
    env = process.build_env(spec, "id", base)
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(env)
    assert env["PATH"] == "/bin"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
def test_run_as_switches_user_and_drops_supplementary_groups():
    import pwd

    nobody = pwd.getpwnam("nobody")
    spec = ComponentSpec(name="a", binary=Path("/bin/sh"), args=("-c", "echo $(id -u) $(id -g) $(id -G)"),
                         run_as="nobody", cwd=Path("/"))

    async def main():
        child, lines = await spawn_collect(spec)
        await child.exited
        await child.drain(2)
        return lines

    assert run(main()) == [("stdout", f"{nobody.pw_uid} {nobody.pw_gid} {nobody.pw_gid}")]


def test_unknown_run_as_user_is_a_precondition_error():
    from kagent.errors import PreconditionError

    spec = ComponentSpec(name="a", binary=Path("/bin/true"), run_as="no-such-user-kagent")

    async def main():
        process.spawn(spec, instance=INSTANCE, sink=lambda s, ln: None, now=0, loop=asyncio.get_running_loop())

    with pytest.raises(PreconditionError, match="user no-such-user-kagent: no such system user"):
        run(main())


def test_a_shared_output_ends_an_exited_writers_line_at_its_mark_and_reads_no_further():
    """The pipes a launcher keeps from one child to the next: what the pipe held when the old
    child's exit was seen is its output, a line it left open ends there, and catching up
    reads no further (a successor that floods the pipe is read by the loop, not there)."""
    async def main():
        lines: list[tuple[str, str]] = []
        out = process.Output(asyncio.get_running_loop(), lambda s, ln: lines.append((s, ln)))
        w_out, w_err = out.writers
        try:
            os.write(w_out, b"old line\nold partial")
            os.write(w_err, b"err partial")
            out.mark_exit()  # the old child exited here
            os.write(w_out, b" new first\n" + b"flood\n" * 5000)  # its successor, already writing
            out.catch_up()
            caught = list(lines)
            for _ in range(200):  # the loop reads the rest as usual
                await asyncio.sleep(0.01)
                if len(lines) >= 4 + 5000:
                    break
            return caught, lines
        finally:
            out.close()

    caught, lines = run(main())
    assert sorted(caught) == [("stderr", "err partial"), ("stdout", "old line"), ("stdout", "old partial")]
    assert lines[3] == ("stdout", " new first"), "the successor's first bytes start a line of their own"
    assert lines[4:] == [("stdout", "flood")] * 5000


def test_a_mark_with_nothing_pending_ends_the_line_already_read():
    async def main():
        lines: list[str] = []
        out = process.Output(asyncio.get_running_loop(), lambda s, ln: lines.append(ln))
        try:
            os.write(out.writers[0], b"half")
            for _ in range(100):  # the loop has read it (an open line, kept)
                await asyncio.sleep(0.01)
                if out._readers[0].taken == 4:
                    break
            out.mark_exit()
            out.catch_up()
            first = list(lines)
            os.write(out.writers[0], b"next\n")
            for _ in range(100):
                await asyncio.sleep(0.01)
                if len(lines) == 2:
                    break
            return first, lines
        finally:
            out.close()

    first, lines = run(main())
    assert first == ["half"] and lines == ["half", "next"]


def test_a_sink_that_raises_leaves_the_reader_consistent():
    # the reader's state is updated before lines go to the sink: a failing sink loses the
    # lines of that read, never a cut or a half-taken line
    async def main():
        lines: list[str] = []

        def sink(stream: str, line: str) -> None:
            if line == "boom":
                raise OSError(28, "No space left on device")
            lines.append(line)

        out = process.Output(asyncio.get_running_loop(), sink)
        try:
            os.write(out.writers[0], b"a\nboom\nc\nold partial")
            out.mark_exit()
            os.write(out.writers[0], b"next\n")
            with pytest.raises(OSError):
                out.catch_up()
            after_failure = list(lines)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if "next" in lines:
                    break
            return after_failure, lines
        finally:
            out.close()

    after_failure, lines = run(main())
    assert after_failure == ["a"]
    assert lines == ["a", "next"], "the successor's line is its own, not joined to a lost one"


def test_killing_a_started_child_that_left_its_group_does_not_block():
    # _supervised's clean-up (from the event loop): the child left its process group, so
    # killpg alone misses it; it is killed by pid and reaped without blocking the caller
    p = subprocess.Popen([sys.executable, "-c", "import os, time; os.setpgid(0, os.getpgid(os.getppid())); "
                          "print('moved', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                         process_group=0)
    try:
        assert p.stdout.readline() == b"moved\n"
        t0 = time.monotonic()
        process._kill_started((p.pid, p.wait), wait=False)
        returned = time.monotonic() - t0
        p.wait(timeout=10)
        assert p.returncode == -signal.SIGKILL
        assert returned < 5, "it did not wait for the child's 60 s sleep"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_ownership_marker_is_the_run_dirs_sha256_prefix_with_or_without_cpythons_own_module(monkeypatch):
    # children of an older agent (hashlib's digest) must still be recognised as ours
    import hashlib

    want = hashlib.sha256(b"/run/kagent").hexdigest()[:16]
    assert process.instance_id(Path("/run/kagent")) == want
    monkeypatch.setitem(sys.modules, "_sha256", None)  # import fails: hashlib is used
    assert process.instance_id(Path("/run/kagent")) == want
