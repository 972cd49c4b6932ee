"""Edge. The only module that writes files: atomic, idempotent, with named modes.

write_atomic: temp file in the same folder, fsync, chmod (and chown) before rename,
os.replace, fsync the folder; skipped entirely when the bytes and mode are already right.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Named modes, re-exported for the writers (defined in the pure kagent.modes)
from kagent.modes import (
    MODE_PRIVATE_KEY as MODE_PRIVATE_KEY,
    MODE_KUBECONFIG as MODE_KUBECONFIG,
    MODE_TOKEN as MODE_TOKEN,
    MODE_CERT as MODE_CERT,
    MODE_PUBLIC as MODE_PUBLIC,
    MODE_CONFIG as MODE_CONFIG,
    MODE_PIDFILE as MODE_PIDFILE,
    MODE_PRIVATE_DIR as MODE_PRIVATE_DIR,
    MODE_TRAVERSABLE_DIR as MODE_TRAVERSABLE_DIR,
    MODE_DATA_DIR as MODE_DATA_DIR,
    MODE_BIN_DIR as MODE_BIN_DIR,
    MODE_BINARY as MODE_BINARY,
)


def ensure_dir(path: Path, mode: int = MODE_DATA_DIR) -> bool:
    """Create ``path`` (and parents, 0755) and set its mode. Returns True when something changed."""
    changed = False
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        changed = True
    current = path.stat().st_mode & 0o7777
    if current != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def check_writable_dir(path: Path, what: str) -> None:
    """Refuse (PreconditionError, exit 4, naming ``path``) a ``what`` dir that is not a directory
    or cannot be written: checked before anything is written. A dir that does not exist yet is
    judged by its nearest existing parent, which must be a writable directory."""
    import stat

    from kagent.errors import PreconditionError

    probe = path
    while True:
        try:
            st = probe.stat()
            break
        except FileNotFoundError:
            if probe.parent == probe:
                return
            probe = probe.parent
        except NotADirectoryError:
            probe = probe.parent  # a regular file on the way: found below as "not a directory"
        except OSError as err:
            raise PreconditionError(str(probe), f"cannot use it as the {what} dir: {err.strerror}") from None
    role = f"the {what} dir" if probe == path else f"a parent of the {what} dir {path}"
    if not stat.S_ISDIR(st.st_mode):
        raise PreconditionError(str(probe), f"{role} is not a directory",
                                hint=f"remove or move it, or pass another --{what}-dir")
    readonly = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    if readonly or not os.access(probe, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if readonly else "is not writable by this user"
        raise PreconditionError(str(probe), f"{role} {why}", hint=f"make it writable, or pass another --{what}-dir")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = _fsync_dir  # public: backup/restore make a rename durable the same way


def _drop_temp(tmp: str | Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_runtime(path: Path, data: bytes, *, mode: int = MODE_PIDFILE) -> None:
    """Write a small runtime-state file (a pidfile) atomically by rename, without fsync: the
    run dir is a tmpfs on a real host, and such a file means nothing after a reboot. Cheaper
    than ``write_atomic(..., durable=False)`` (no content check, no random temp name: the
    temp name carries our pid, so two writers never share it; the parent must exist). Raises
    OSError like any write; the temp file never stays behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode went through the umask
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _drop_temp(tmp)
        raise


def write_atomic(
    path: Path,
    data: bytes | str,
    *,
    mode: int = MODE_CONFIG,
    owner: tuple[int, int] | None = None,
    durable: bool = True,
) -> bool:
    """Write ``data`` to ``path`` atomically. Returns False (and touches nothing) when the
    file already holds exactly these bytes with this mode. ``durable=False`` skips the two
    fsyncs (still atomic by rename): for runtime state in the run dir (pidfiles), which is a
    tmpfs on a real host and means nothing after a reboot."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        st = path.stat()
        if (st.st_mode & 0o7777) == mode and st.st_size == len(payload):
            if path.read_bytes() == payload and (owner is None or (st.st_uid, st.st_gid) == owner):
                return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        _drop_temp(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete ``.name.*.tmp`` files an interrupted write_atomic left behind in ``folder``."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
