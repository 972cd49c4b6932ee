from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kagent import fsutil
from kagent.fsutil import MODE_CERT, MODE_PRIVATE_KEY, ensure_dir, remove_stale_temps, write_atomic


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_creates_parents_with_mode_and_reports_change(tmp_path: Path) -> None:
    key = tmp_path / "pki" / "ca.key"
    assert write_atomic(key, b"secret", mode=MODE_PRIVATE_KEY) is True
    assert key.read_bytes() == b"secret"
    assert mode(key) == 0o600
    assert leftovers(key.parent) == []


def test_unchanged_bytes_and_mode_skip_the_write_and_keep_mtime(tmp_path: Path) -> None:
    f = tmp_path / "ca.crt"
    write_atomic(f, "cert\n", mode=MODE_CERT)
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    inode = f.stat().st_ino
    assert write_atomic(f, "cert\n", mode=MODE_CERT) is False
    assert f.stat().st_mtime_ns == 1_000_000_000
    assert f.stat().st_ino == inode


def test_changed_bytes_or_mode_rewrite(tmp_path: Path) -> None:
    f = tmp_path / "x.conf"
    write_atomic(f, "a", mode=0o644)
    assert write_atomic(f, "b", mode=0o644) is True and f.read_text() == "b"
    assert write_atomic(f, "b", mode=0o600) is True and mode(f) == 0o600
    assert write_atomic(f, "bb", mode=0o600) is True  # same prefix, other size


def test_mode_is_set_before_the_file_appears(tmp_path: Path) -> None:
    # the final file is never world-readable, even for an instant: the temp is chmodded first,
    # and a umask that would widen it has no effect
    old = os.umask(0)
    try:
        f = tmp_path / "admin.conf"
        write_atomic(f, "k", mode=0o600)
    finally:
        os.umask(old)
    assert mode(f) == 0o600


def test_temp_file_removed_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "adir"
    target.mkdir()  # os.replace of a file over a folder fails
    with pytest.raises(OSError):
        write_atomic(target, "data")
    assert target.is_dir()
    assert leftovers(tmp_path) == []


def test_temp_file_removed_when_chown_fails_after_the_temp_was_written(tmp_path: Path) -> None:
    f = tmp_path / "f"
    with pytest.raises(OverflowError):  # a uid no kernel takes: chown fails after write, fsync and chmod
        write_atomic(f, "x", owner=(2**40, 0))
    assert not f.exists()
    assert leftovers(tmp_path) == []


def test_remove_stale_temps_only_removes_hidden_tmp_files(tmp_path: Path) -> None:
    (tmp_path / ".ca.key.abc123.tmp").write_text("half")
    (tmp_path / "keep.tmp").write_text("not hidden")
    (tmp_path / ".keep").write_text("not tmp")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".ca.key.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "keep.tmp"]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_ensure_dir_creates_and_fixes_mode(tmp_path: Path) -> None:
    d = tmp_path / "a" / "pki"
    assert ensure_dir(d, fsutil.MODE_PRIVATE_DIR) is True
    assert mode(d) == 0o700
    assert ensure_dir(d, fsutil.MODE_PRIVATE_DIR) is False
    os.chmod(d, 0o755)
    assert ensure_dir(d, fsutil.MODE_PRIVATE_DIR) is True and mode(d) == 0o700


def test_named_modes() -> None:
    assert (fsutil.MODE_PRIVATE_KEY, fsutil.MODE_KUBECONFIG, fsutil.MODE_TOKEN) == (0o600, 0o600, 0o600)
    assert (fsutil.MODE_CERT, fsutil.MODE_PRIVATE_DIR) == (0o644, 0o700)


def test_write_runtime_replaces_atomically_with_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    f = tmp_path / "c.pid"
    old = os.umask(0o077)
    try:
        fsutil.write_runtime(f, b"123\n")
        first = f.stat().st_ino
        fsutil.write_runtime(f, b"4567\n")
    finally:
        os.umask(old)
    assert f.read_bytes() == b"4567\n"
    assert mode(f) == fsutil.MODE_PIDFILE
    assert f.stat().st_ino != first  # a new file renamed over the old one, not rewritten in place
    assert leftovers(tmp_path) == []


def test_write_runtime_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "adir"
    target.mkdir()  # os.replace of a file over a folder fails
    with pytest.raises(OSError):
        fsutil.write_runtime(target, b"1\n")
    assert target.is_dir()
    assert leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):  # the parent must exist: nothing is created on the way
        fsutil.write_runtime(tmp_path / "missing" / "c.pid", b"1\n")


def test_a_staged_set_is_committed_whole_or_not_at_all(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.key", tmp_path / "b.crt", tmp_path / "c.crt"
    a.write_bytes(b"old a")
    c.write_bytes(b"old c")
    staged = [(p, fsutil.stage(p, f"new {p.stem}".encode(), mode=MODE_PRIVATE_KEY)) for p in (a, b, c)]
    pairs = [(p, t) for p, t in staged if t is not None]
    assert len(pairs) == 3 and a.read_bytes() == b"old a" and not b.exists()
    assert all(t.stat().st_mode & 0o7777 == MODE_PRIVATE_KEY for _, t in pairs)
    assert fsutil.stage(a, b"old a", mode=a.stat().st_mode & 0o7777) is None  # unchanged: nothing staged
    c.unlink()
    c.mkdir()  # the third rename fails (a directory in the way)
    with pytest.raises(OSError):
        fsutil.commit_staged(pairs)
    # the first two were put back: a holds its old bytes, b (new) is gone again, no temp is left
    assert a.read_bytes() == b"old a" and not b.exists() and c.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "c.crt"]
    c.rmdir()
    pairs = [(p, t) for p in (a, b, c) if (t := fsutil.stage(p, f"new {p.stem}".encode(), mode=MODE_CERT)) is not None]
    fsutil.commit_staged(pairs)
    assert [p.read_bytes() for p in (a, b, c)] == [b"new a", b"new b", b"new c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "b.crt", "c.crt"]
