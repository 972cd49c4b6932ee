"""Edge. The single-instance lock: an exclusive flock on ``<run>/kagent.lock``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from kagent.errors import PreconditionError
from kagent.paths import Paths


def already_running(lock_path: Path) -> PreconditionError:
    """The one error for "an agent holds this run dir's lock"."""
    pidfile = lock_path.parent / "kagent.pid"
    return PreconditionError(str(lock_path), "another kagent is already running with this run dir",
                             hint=f'stop it first (kill "$(cat {pidfile})"), or use another --run-dir')


class InstanceLock:
    """Held for the agent's lifetime. The lock file is never deleted (flock is on the inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise PreconditionError(str(self.path), f"cannot take the instance lock: {err.strerror or err}",
                                    hint="the run dir must be a writable directory (--run-dir)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise already_running(self.path) from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold(paths: Paths) -> InstanceLock:
    """The agent's lock, for a command that must not interleave with an agent or with another
    such command (a stopped controller's backup, a restore). With no run dir (a reboot cleared
    /run) it is created as the agent creates it: a lock taken only when the dir exists lets a
    controller started meanwhile, or a second restore, run alongside."""
    from kagent import fsutil

    try:
        fsutil.ensure_dir(paths.run_dir, fsutil.MODE_DATA_DIR)
    except OSError as err:
        raise PreconditionError(str(paths.run_dir), f"cannot create the run dir: {err.strerror or err}",
                                hint="the run dir must be a writable directory (--run-dir)") from None
    return InstanceLock(paths.lock_file).acquire()


def is_held(path: Path) -> bool:
    """True when some process holds the lock (used by reset/restore to refuse)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder_pid(path: Path) -> int | None:
    """The pid that holds the flock on ``path`` (from /proc/locks, as the kernel records it:
    the process that took it), or None when no one does or it cannot be told."""
    try:
        st = path.stat()
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # ("1: -> FLOCK ...": a waiter, not the holder)
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return int(fields[4])
        except ValueError:
            continue
    return None


def holder(paths: Paths) -> tuple[int | None, str]:
    """(pid, "kagent (pid N)") of whoever holds the lock: the kernel's record first (right also
    while an agent starts, before its pidfile is written), else the agent's pidfile; (None,
    "a kagent") when neither tells."""
    pid = holder_pid(paths.lock_file)
    if pid is None:
        from kagent.supervisor.process import read_pidfile

        pid = read_pidfile(paths.agent_pidfile)
    return pid, (f"kagent (pid {pid})" if pid else "a kagent")


def refuse_if_running(paths: Paths, what: str) -> None:
    """Exit 4 naming the agent's pid while it holds the lock (reset, restore)."""
    if is_held(paths.lock_file):
        pid, who = holder(paths)
        raise PreconditionError(str(paths.lock_file), f"{who} is running on this run dir; {what} refused",
                                hint=f"stop it first (kill {pid})" if pid else "stop the running agent first")
