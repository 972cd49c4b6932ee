from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kagent.errors import ExitCode, PreconditionError
from kagent.node.lock import InstanceLock, is_held
from tests.conftest import REPO


def test_second_lock_on_the_same_file_is_a_precondition_error(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kagent.lock"
    with InstanceLock(path):
        assert is_held(path)
        with pytest.raises(PreconditionError) as err:
            InstanceLock(path).acquire()
        assert err.value.exit_code is ExitCode.PRECONDITION
        assert err.value.render().splitlines()[0] == f"error: {path}: another kagent is already running with this run dir"
    assert not is_held(path)
    assert path.exists()  # never deleted: the flock is on the inode


def test_is_held_without_a_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kagent.lock"
    assert is_held(path) is False
    assert not path.exists()


def test_lock_is_seen_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "kagent.lock"
    code = ("import sys; from pathlib import Path; from kagent.node.lock import InstanceLock\n"
            "lock = InstanceLock(Path(sys.argv[1])).acquire(); print('held', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "held\n"
        assert is_held(path)
        with pytest.raises(PreconditionError):
            InstanceLock(path).acquire()
    finally:
        p.communicate("", timeout=10)  # EOF on stdin: the holder exits and the kernel drops its lock
    assert not is_held(path)
    with InstanceLock(path) as lock:
        assert lock.fd is not None


def test_release_is_idempotent(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path / "l").acquire()
    lock.release()
    lock.release()
    assert not is_held(tmp_path / "l")
