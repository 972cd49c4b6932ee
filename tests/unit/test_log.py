"""kagent.log: where log lines go, and that a failing stderr never raises into the caller."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from kagent import log


@pytest.fixture
def json_logging():
    saved, was = structlog.get_config(), log._configured
    log.configure(fmt="json", verbose=False, debug=False)
    yield
    structlog.configure(**saved)
    log._configured = was


def test_log_lines_follow_sys_stderr_when_it_is_replaced(json_logging, monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.get().info("one_event")
    monkeypatch.setattr(sys, "stderr", second)
    log.get().info("two_event")
    assert json.loads(first.getvalue())["event"] == "one_event"
    assert json.loads(second.getvalue())["event"] == "two_event"


def test_a_full_disk_or_a_closed_stderr_drops_lines_and_says_so_when_writing_works_again(json_logging, monkeypatch):
    full = open("/dev/full", "w")  # every write: ENOSPC, as a full disk behind a redirect
    closed = io.StringIO()
    closed.close()
    try:
        monkeypatch.setattr(sys, "stderr", full)
        log.get().warning("lost_on_a_full_disk", component="etcd")  # no exception into the caller
        monkeypatch.setattr(sys, "stderr", closed)
        log.get().info("lost_on_a_closed_file")
        back = io.StringIO()
        monkeypatch.setattr(sys, "stderr", back)
        log.get().info("after")
    finally:
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        try:
            full.close()
        except OSError:
            pass  # its buffered bytes cannot be written either
    lines = [json.loads(ln) for ln in back.getvalue().splitlines()]
    assert lines[0] == {"event": "log_lines_dropped", "count": 2, "level": "warning"}
    assert lines[1]["event"] == "after" and len(lines) == 2


def _run(code: str, timeout: float = 30) -> tuple[list[dict], str]:
    """``code`` in a fresh interpreter (log's set-up is process-wide); its JSON log lines and
    the rest of its stderr."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom kagent import log\n" + code],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    lines, rest = [], []
    for ln in proc.stderr.splitlines():
        (lines if ln.startswith("{") else rest).append(ln)
    return [json.loads(ln) for ln in lines], "\n".join(rest) + proc.stdout


def test_held_lines_wait_for_release_without_structlog_and_keep_their_time_and_order():
    lines, out = _run(
        "import time\n"
        "log.configure(fmt='json', hold=True)\n"
        "log.get(role='x').info('first', n=1)\n"
        "log.get().bind(component='etcd').info('second')\n"
        "log.get().debug('not_verbose')\n"
        "print('structlog imported:', 'structlog' in sys.modules, flush=True)\n"
        "sys.stderr.write('before release\\n'); sys.stderr.flush()\n"
        "time.sleep(0.2)\n"
        "at = time.time()\n"
        "log.release()\n"
        "log.get().info('third')\n"
        "print('release at', at)\n"
    )
    assert "structlog imported: False" in out
    assert [ln["event"] for ln in lines] == ["first", "second", "third"]
    assert lines[0]["role"] == "x" and lines[0]["n"] == 1 and lines[1]["component"] == "etcd"
    import datetime

    at = float(out.split("release at ")[1].split()[0])
    stamps = [datetime.datetime.fromisoformat(ln["timestamp"].replace("Z", "+00:00")).timestamp() for ln in lines]
    assert stamps[0] <= stamps[1] < at - 0.15 < at <= stamps[2]  # the held ones: the time of the call


def test_a_warning_releases_what_was_held_before_it_and_comes_at_once():
    lines, out = _run(
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('one')\n"
        "log.get().warning('two')\n"
        "print('holding after warning:', log.holding())\n"
        "log.get().info('three')\n"
    )
    assert [ln["event"] for ln in lines] == ["one", "two", "three"]
    assert "holding after warning: False" in out


def test_an_exception_logged_while_holding_keeps_its_error():
    lines, _ = _run(
        "log.configure(fmt='json', hold=True)\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    log.get().info('caught', exc_info=True)\n"
    )
    assert lines[0]["event"] == "caught" and lines[0]["error"] == "ValueError: boom"


def test_held_lines_come_out_by_themselves_after_hold_max_and_at_exit():
    lines, out = _run(
        "import time\n"
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('by_timer')\n"
        "deadline = time.monotonic() + 10\n"
        "while log.holding() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print('held after the timer:', log.holding())\n"
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('at_exit')\n"
    )
    assert "held after the timer: False" in out
    assert [ln["event"] for ln in lines] == ["by_timer", "at_exit"]


def test_a_kagent_child_sharing_stderr_starts_after_the_held_lines():
    lines, out = _run(
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('parent_line')\n"
        "args = log.child_args()\n"
        "print('holding:', log.holding(), args)\n"
    )
    assert [ln["event"] for ln in lines] == ["parent_line"]
    assert "holding: False ['--log-format', 'json']" in out


def test_verbose_holds_debug_lines_too():
    lines, _ = _run(
        "log.configure(fmt='json', verbose=True, hold=True)\n"
        "log.get().debug('detail')\n"
        "log.release()\n"
    )
    assert [ln["event"] for ln in lines] == ["detail"]


def test_another_structlog_method_while_holding_releases_first_and_works():
    lines, _ = _run(
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('held')\n"
        "log.get().msg('through_msg')\n"
    )
    assert [ln["event"] for ln in lines] == ["held", "through_msg"]


def _run_without_stderr(code: str, timeout: float = 20) -> tuple[int, str]:
    """``code`` in a fresh interpreter whose fd 2 is closed before it starts (as ``kagent
    controller 2>&-`` would have it): its exit code and stdout."""
    import os
    import subprocess

    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom kagent import log\n" + code],
                          stdout=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=lambda: os.close(2))
    return proc.returncode, proc.stdout


def test_a_held_line_that_cannot_be_rendered_is_reported_and_the_others_still_come_out():
    # JSON cannot take a tuple key: rendering the first line fails at the release. The release
    # (in the supervisor's flush, child_args, the CLI's finally) must not raise, the lines after
    # the bad one must not be lost, and the loss is said once, naming the event
    lines, out = _run(
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('bad', ports={(1, 2): 'x'})\n"
        "log.get().info('good_1')\n"
        "log.get(component='etcd').info('good_2')\n"
        "try:\n"
        "    log.get().warning('a_warning')\n"
        "    print('warning raised: no')\n"
        "except Exception as err:\n"
        "    print('warning raised:', repr(err))\n"
    )
    assert "warning raised: no" in out
    assert [ln["event"] for ln in lines] == ["good_1", "good_2", "log_lines_failed", "a_warning"]
    failed = lines[2]
    assert failed["level"] == "warning" and failed["count"] == 1 and failed["events"] == ["bad"]
    assert "TypeError" in failed["reason"]


def test_a_line_logged_by_the_releasing_thread_itself_comes_after_the_held_ones_without_a_deadlock():
    # a Python signal handler that logs, run in the main thread while it writes the held lines
    # (here: at its first write to stderr); the held lock is not re-entrant
    lines, out = _run(
        "import io, os, signal\n"
        "signal.signal(signal.SIGUSR1, lambda *_: log.get().info('from_handler'))\n"
        "signal.signal(signal.SIGALRM, signal.SIG_DFL); signal.alarm(10)  # a deadlock: killed, not hung\n"
        "real = sys.stderr\n"
        "class Kicks:\n"
        "    sent = False\n"
        "    def write(self, s):\n"
        "        if not Kicks.sent:\n"
        "            Kicks.sent = True\n"
        "            os.kill(os.getpid(), signal.SIGUSR1)\n"
        "        return real.write(s)\n"
        "    def flush(self):\n"
        "        real.flush()\n"
        "log.configure(fmt='json', hold=True)\n"
        "log.get().info('one')\n"
        "log.get().info('two')\n"
        "sys.stderr = Kicks()\n"
        "log.release()\n"
        "sys.stderr = real\n"
        "log.get().info('three')\n"
        "print('done')\n"
    )
    assert "done" in out
    assert [ln["event"] for ln in lines] == ["one", "two", "from_handler", "three"]


def test_a_held_line_shows_its_fields_as_they_were_when_it_was_logged():
    lines, _ = _run(
        "log.configure(fmt='json', hold=True)\n"
        "names, state = ['etcd'], {'etcd': {'phase': 'starting'}}\n"
        "class Unit:\n"
        "    def __init__(self): self.phase = 'starting'\n"
        "    def __repr__(self): return f'Unit({self.phase})'\n"
        "u = Unit()\n"
        "bound = ['b']\n"
        "log.get(tags=bound).info('plan', components=names, state=state, unit=u, n=3, path=None)\n"
        "names.append('kube-apiserver'); state['etcd']['phase'] = 'running'; u.phase = 'running'; bound.append('c')\n"
        "log.release()\n"
    )
    assert lines[0]["components"] == ["etcd"] and lines[0]["state"] == {"etcd": {"phase": "starting"}}
    assert lines[0]["unit"] == "Unit(starting)" and lines[0]["tags"] == ["b"]
    assert lines[0]["n"] == 3 and lines[0]["path"] is None


def test_a_named_logger_while_holding_is_held_too_and_never_writes_to_stdout():
    lines, out = _run(
        "log.configure(fmt='json', hold=True)\n"
        "log.get('kagent.x', component='etcd').info('named')\n"
        "print('holding:', log.holding())\n"
        "log.release()\n"
    )
    assert out.strip() == "holding: True"
    assert [(ln["event"], ln["component"]) for ln in lines] == [("named", "etcd")]


def test_with_no_stderr_at_all_log_lines_are_dropped_and_nothing_raises():
    # fd 2 closed at exec: sys.stderr is None; neither configure (which asks for a TTY), nor a
    # release, nor a line logged at once may raise into the agent
    rc, out = _run_without_stderr(
        "log.configure(hold=True)\n"
        "log.get().info('held')\n"
        "log.release()\n"
        "log.get().warning('direct')\n"
        "print('child_args', log.child_args())\n"
        "print('ok')\n"
    )
    assert rc == 0 and "ok" in out and "child_args ['--log-format', 'json']" in out


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_held_line_is_written_as_the_same_line_logged_at_once_would_be(fmt):
    code = (
        "import enum, pathlib\n"
        "class K(enum.Enum):\n"
        "    A = 1\n"
        "log.configure(fmt=%r, hold=%s)\n"
        "log.get(component='etcd', pid=12).info('evt', path=pathlib.Path('/x'), err=ValueError('boom'), kind=K.A,\n"
        "    items=[1, 'a', (2, 3)], d={'k': [1]}, b=b'x', f=1.5, t=True, n=None, st={1})\n"
        "log.release()\n"
    )
    import re
    import subprocess

    def line(hold: bool) -> str:
        proc = subprocess.run([sys.executable, "-c", "import sys\nfrom kagent import log\n" + code % (fmt, hold)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?", "<time>", proc.stderr)

    at_once, held = line(False), line(True)
    assert "PosixPath('/x')" in at_once and "ValueError('boom')" in at_once
    assert held == at_once


_BEFORE_THE_HOLD: list[dict] = []  # structlog's set-up before the next test held (the one after restores it)


def test_a_test_that_holds_and_does_not_release(monkeypatch):
    # (with the next test: tests/conftest.py releases a hold when its test ends)
    _BEFORE_THE_HOLD.append(structlog.get_config())
    monkeypatch.setattr(log, "HOLD_MAX", 0.05)
    log.configure(fmt="json", hold=True)
    log.get().info("held_by_the_previous_test")


def test_the_next_test_keeps_its_capture_when_the_previous_ones_hold_timer_was_due():
    import time

    try:
        with structlog.testing.capture_logs() as logs:
            time.sleep(0.2)  # the previous test's timer (0.05 s) is due meanwhile
            structlog.get_logger().info("mine")
        assert [e["event"] for e in logs] == ["mine"]
    finally:
        if _BEFORE_THE_HOLD:
            structlog.configure(**_BEFORE_THE_HOLD.pop())


def test_held_lines_released_onto_a_full_disk_are_all_counted_as_dropped():
    lines, out = _run(
        "log.configure(fmt='json', hold=True)\n"
        "for i in range(3):\n"
        "    log.get().info('held', i=i)\n"
        "real = sys.stderr\n"
        "sys.stderr = open('/dev/full', 'w')  # ENOSPC at each flush, as a full disk behind 2>file\n"
        "log.release()\n"
        "log.get().info('still_full')\n"
        "sys.stderr = real\n"
        "log.get().info('after')\n"
        "print('ok')\n"
    )
    assert "ok" in out
    assert lines[0] == {"event": "log_lines_dropped", "count": 4, "level": "warning"}
    assert [ln["event"] for ln in lines[1:]] == ["after"]
