"""Edge. The only module that writes files: atomic, idempotent, with named modes.

write_atomic: temp file in the same folder, fsync, chmod (and chown) before rename,
os.replace, fsync the folder; skipped entirely when the bytes and mode are already right.

Staged writes (the PKI of a reload or renewal, which must change nothing when the reload is
rejected): ``stage`` writes the temp file (same folder, same ``.name.*.tmp`` naming, fsynced,
its final mode) and stops before the rename; ``commit_staged`` renames a whole set (and puts
the old files back should one rename fail), ``discard_staged`` removes it. A crash between
stage and commit leaves the old files and stray temp files that ``remove_stale_temps`` (or the
PKI's own cleanup) removes on the next run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

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
    if _unchanged(path, payload, mode, owner):
        return False
    tmp = _write_temp(path, payload, mode, durable=durable)
    try:
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        _drop_temp(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)
    return True


def _unchanged(path: Path, payload: bytes, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """``path`` holds exactly these bytes with this mode (and this owner, when given)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return ((st.st_mode & 0o7777) == mode and st.st_size == len(payload)
            and (owner is None or (st.st_uid, st.st_gid) == owner) and path.read_bytes() == payload)


def _write_temp(path: Path, payload: bytes, mode: int, *, durable: bool = True) -> Path:
    """``payload`` in a new ``.<name>.<random>.tmp`` beside ``path`` (its folder made when
    missing, 0755), mode ``mode`` before the first byte (mkstemp's 0600 until then), fsynced
    unless ``durable=False``. A failure leaves no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
    except BaseException:
        _drop_temp(tmp)
        raise
    return Path(tmp)


def stage(path: Path, data: bytes, *, mode: int) -> Path | None:
    """Write ``data`` to a temp file next to ``path`` (``.<name>.<random>.tmp``, fsynced, mode
    ``mode`` already) and return it, without renaming it onto ``path``: ``commit_staged`` does
    that. None (nothing written) when ``path`` already holds exactly these bytes with this mode.
    The folder is made when missing (0755, as ``write_atomic``); a failure leaves no temp file."""
    if _unchanged(path, data, mode):
        return None
    return _write_temp(path, data, mode)


def _temp_beside(path: Path) -> Path:
    """A free ``.<name>.<random>.tmp`` name in ``path``'s folder (for a hard link to the old file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def commit_staged(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename each staged temp file onto its target, in order, then fsync their folders. Should
    a rename fail (EIO, a directory in the way), the targets renamed so far get their old files
    back (kept as hard links until the end), the remaining temp files are removed, and the
    OSError is raised: the disk is as it was before. A crash in the middle leaves some new files
    in place and hard links named like temp files, which the next PKI run removes."""
    done: list[tuple[Path, Path | None]] = []  # (target, the hard link to its old file)
    try:
        for target, tmp in pairs:
            old: Path | None = None
            if os.path.lexists(target):
                old = _temp_beside(target)
                os.link(target, old, follow_symlinks=False)
            try:
                os.replace(tmp, target)
            except BaseException:
                if old is not None:
                    _drop_temp(old)
                raise
            done.append((target, old))
    except BaseException:
        for target, old in reversed(done):
            if old is not None:
                os.replace(old, target)
            else:
                _drop_temp(target)
        discard_staged(pairs)
        raise
    for _target, old in done:
        if old is not None:
            _drop_temp(old)
    for folder in sorted({t.parent for t, _ in pairs}):
        _fsync_dir(folder)


def discard_staged(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Remove the staged temp files (those already gone are fine); never a target."""
    for _target, tmp in pairs:
        _drop_temp(tmp)


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
