"""``kagent backup`` on a bad day, without a daemon: the destination's file system fills up
while the archive is written (a small tmpfs, mounted in a private mount namespace that exists
only for the one command). The error is one line naming the directory, with a hint, exit 4,
and nothing is left in the directory."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import kagent_cmd, kagent_env


def _kine_controller(root: Path, bulk: int = 1_000_000) -> tuple[Path, Path, Path]:
    data, run = root / "data", root / "run"
    (data / "pki").mkdir(parents=True)
    (data / "pki" / "ca.crt").write_text("not read as a certificate by backup\n")
    (data / "pki" / "bulk.bin").write_bytes(os.urandom(bulk))  # does not compress: fills the tmpfs
    (data / "db").mkdir()
    db = sqlite3.connect(data / "db" / "state.db")
    db.execute("create table kine (x)")
    db.commit()
    db.close()
    run.mkdir()
    config = root / "kagent.yaml"
    config.write_text("apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    address: 127.0.0.1\n")
    return data, run, config


def test_a_full_destination_is_one_error_naming_it_and_leaves_nothing(tmp_path):
    data, run, config = _kine_controller(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    script = f'mount -t tmpfs -o size=256k tmpfs "{out}" && "$@"; rc=$?; ls -A "{out}"; exit $rc'
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        *kagent_cmd("-c", str(config), "--data-dir", str(data), "--run-dir", str(run),
                                    "backup", "--save-path", str(out))],
                       capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert r.returncode == 4, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: {out}: cannot write the backup: No space left on device", r.stderr
    assert lines[1].startswith(f"hint: free space in {out} or pass another --save-path") and len(lines) == 2, r.stderr
    assert r.stdout == ""  # `ls -A` of the full tmpfs: no archive, no temp dir left


def _kagent_in_mount_ns(mount: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` (a kagent command) with ``mount`` done first in a private mount namespace."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', "sh", *argv],
                          capture_output=True, text=True, env=kagent_env(), timeout=60)


def _archive(tmp_path: Path) -> tuple[Path, Path]:
    data, run, config = _kine_controller(tmp_path / "src")
    (data / "pki" / "bulk.bin").write_bytes(os.urandom(100_000))
    out = tmp_path / "backups"
    out.mkdir()
    r = subprocess.run(kagent_cmd("-c", str(config), "--data-dir", str(data), "--run-dir", str(run), "backup", "--save-path", str(out)),
                       capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    (archive,) = out.iterdir()
    return archive, config


def test_a_restore_that_cannot_write_is_one_error_with_a_hint_and_leaves_the_data_dir_as_it_was(tmp_path):
    archive, config = _archive(tmp_path)
    small, ro = tmp_path / "small", tmp_path / "ro"
    small.mkdir()
    ro.mkdir()
    flags = ["-c", str(config), "--run-dir", str(tmp_path / "run2")]
    # the data dir's file system fills up while the entries are written
    r = _kagent_in_mount_ns(f'mount -t tmpfs -o size=64k tmpfs "{small}"',
                            kagent_cmd(*flags, "--data-dir", str(small / "data"), "restore", str(archive)))
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines() == [f"error: {small / 'data'}: cannot write the restore: No space left on device",
                                     "hint: free space on its file system, then rerun; nothing was restored, the data dir is as it was"]
    # every entry restored, then --config-out cannot be written: rolled back
    data = tmp_path / "data"
    r = _kagent_in_mount_ns(f'mount -t tmpfs -o ro tmpfs "{ro}"',
                            kagent_cmd(*flags, "--data-dir", str(data), "restore", str(archive), "--config-out", str(ro / "k.yaml")))
    assert r.returncode == 4, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: --config-out {ro / 'k.yaml'}: cannot write the restore: Read-only file system", r.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: fix the permissions or pick another path"), r.stderr
    assert not data.exists()


def _restore_racing(tmp_path: Path, monkeypatch, winner) -> tuple[Path, BaseException]:
    """``restore`` whose instance lock is taken just after another restore (``winner``, run
    where the lock is acquired) got there first: the lock is the only thing serializing them."""
    import pytest

    from kagent import backup as bk
    from kagent.node import lock as lock_mod
    from kagent.paths import Paths

    archive, _config = _archive(tmp_path)
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    paths.run_dir.mkdir()
    real_acquire = lock_mod.InstanceLock.acquire

    def acquire(self):
        winner(paths)
        return real_acquire(self)

    monkeypatch.setattr(lock_mod.InstanceLock, "acquire", acquire)
    target = bk.RestoreTarget(node_name="n", peer_url="https://127.0.0.1:2380")
    with pytest.raises(Exception) as e:
        bk.restore(paths, archive, target, config_out=None)
    return paths.data_dir, e.value


def test_a_restore_that_lost_the_race_for_the_lock_leaves_the_winners_data_dir_alone(tmp_path, monkeypatch):
    from kagent.errors import PreconditionError

    def won_and_finished(paths) -> None:  # the other restore filled the data dir and let go of the lock
        (paths.data_dir / "pki").mkdir(parents=True)
        (paths.data_dir / "pki" / "ca.crt").write_text("the winner's CA\n")

    data, err = _restore_racing(tmp_path / "a", monkeypatch, won_and_finished)
    assert isinstance(err, PreconditionError) and "is not empty" in err.what
    assert sorted(p.name for p in data.iterdir()) == ["pki"] and (data / "pki" / "ca.crt").read_text() == "the winner's CA\n"


def test_a_restore_refused_by_the_lock_does_not_remove_the_data_dir_the_winner_just_made(tmp_path, monkeypatch):
    from kagent.errors import PreconditionError
    from kagent.node.lock import already_running

    def still_running(paths) -> None:  # the other restore made the data dir and holds the lock
        paths.data_dir.mkdir()
        raise already_running(paths.lock_file)

    data, err = _restore_racing(tmp_path / "b", monkeypatch, still_running)
    assert isinstance(err, PreconditionError) and "already running" in err.what
    assert data.is_dir()


def test_a_reader_of_stdout_that_goes_away_is_an_error_not_a_silent_exit(tmp_path):
    """`kagent backup --save-path - | cmd` where cmd stops reading: the archive cmd got is
    incomplete, so the command fails with one error and a hint (it exited 1 saying nothing)."""
    data, run, config = _kine_controller(tmp_path, bulk=8_000_000)  # more than a pipe and its reader hold
    p = subprocess.Popen(kagent_cmd("-c", str(config), "--data-dir", str(data), "--run-dir", str(run), "backup", "--save-path", "-"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kagent_env())
    try:
        assert p.stdout is not None and p.stderr is not None
        assert len(p.stdout.read(10)) == 10
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 4, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: stdout: the reader of the archive went away before its end"), err
    assert lines[1].startswith("hint: keep the command after | reading"), err


def test_an_archive_replaced_between_verification_and_extraction_is_refused_with_nothing_written(tmp_path):
    """An archive too large to hold in memory is read twice; one rewritten in between (another
    archive at the same path, with an entry the first lacks) is refused by name, not an internal
    error (a KeyError), and nothing stays."""
    import shutil

    from kagent import backup as bk
    from kagent.paths import Paths

    data, run, config = _kine_controller(tmp_path / "src")

    def backup_into(out: Path) -> Path:
        out.mkdir()
        r = subprocess.run(kagent_cmd("-c", str(config), "--data-dir", str(data), "--run-dir", str(run), "backup", "--save-path", str(out)),
                           capture_output=True, text=True, env=kagent_env(), timeout=60)
        assert r.returncode == 0, r.stderr
        (archive,) = out.iterdir()
        return archive

    first = backup_into(tmp_path / "one")
    (data / "manifests").mkdir()
    (data / "manifests" / "extra.yaml").write_text("kind: ConfigMap\n")
    second = backup_into(tmp_path / "two")
    path = tmp_path / "archive.tar.gz"
    shutil.copy(first, path)
    verified = bk.verify_archive(path, keep_up_to=0)  # as for an archive over 128 MiB: extracted in a second pass
    shutil.copy(second, path)  # rewritten in between
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    try:
        bk.restore(paths, path, bk.RestoreTarget(node_name="n", peer_url="https://127.0.0.1:2380"), config_out=None, verified=verified)
    except bk.ArchiveError as err:
        assert "changed between verification and extraction" in err.what and err.exit_code == 2
    else:
        raise AssertionError("a rewritten archive was restored")
    assert not paths.data_dir.exists()


def test_restore_from_stdin_with_a_full_temp_dir_is_one_error_naming_it(tmp_path):
    archive, config = _archive(tmp_path)
    small = tmp_path / "tmp"
    small.mkdir()
    with archive.open("rb") as fh:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f'mount -t tmpfs -o size=32k tmpfs "{small}" && exec "$@"', "sh",
                            *kagent_cmd("-c", str(config), "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
                                        "restore", "-")],
                           stdin=fh, capture_output=True, text=True, env=kagent_env({"TMPDIR": str(small)}), timeout=60)
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines()[0] == f"error: stdin: cannot keep the archive in {small} while it is verified: No space left on device", r.stderr
    assert r.stderr.splitlines()[1].startswith("hint: free space there") and len(r.stderr.splitlines()) == 2, r.stderr
    assert not (tmp_path / "data").exists()


def _lock_state(paths) -> str:
    """What a controller starting now (or a second restore) would get: the instance lock, or
    "already running"."""
    from kagent.errors import PreconditionError
    from kagent.node.lock import InstanceLock

    try:
        InstanceLock(paths.lock_file).acquire().release()
    except PreconditionError as e:
        return e.what
    return "free"


def test_a_restore_after_a_reboot_cleared_the_run_dir_holds_the_lock_against_a_starting_controller(tmp_path, monkeypatch):
    """No run dir (a reboot cleared /run): the restore creates it as the agent does and holds the
    instance lock while it writes, so a controller (or another restore) cannot start meanwhile."""
    from kagent import backup as bk
    from kagent.paths import Paths

    archive, _config = _archive(tmp_path)
    paths = Paths.build(tmp_path / "data", tmp_path / "cleared" / "run")
    seen: list[str] = []
    real = bk._refuse_not_empty

    def under_lock(p) -> None:  # called before the lock, then again under it
        seen.append(_lock_state(p) if p.run_dir.is_dir() else "no run dir")
        real(p)

    monkeypatch.setattr(bk, "_refuse_not_empty", under_lock)
    bk.restore(paths, archive, bk.RestoreTarget(node_name="n", peer_url="https://127.0.0.1:2380"), config_out=None)
    assert seen == ["no run dir", "another kagent is already running with this run dir"], seen
    assert paths.run_dir.stat().st_mode & 0o7777 == 0o755
    assert _lock_state(paths) == "free"  # released at the end
    assert (paths.data_dir / "db" / "state.db").is_file()


def test_a_stopped_controller_backup_without_a_run_dir_holds_the_lock_while_it_reads(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    import pytest

    from kagent import backup as bk
    from kagent.errors import KagentError
    from kagent.paths import Paths

    paths = Paths.build(tmp_path / "data", tmp_path / "cleared" / "run")
    (paths.data_dir / "pki").mkdir(parents=True)
    (paths.data_dir / "pki" / "ca.crt").write_text("not read as a certificate by backup\n")
    out = tmp_path / "out"
    out.mkdir()
    seen: list[str] = []
    real = bk._etcd_running_here

    def probe(p) -> bool:  # right after the lock is taken, before the db is read
        seen.append(_lock_state(p))
        return real(p)

    monkeypatch.setattr(bk, "_etcd_running_here", probe)
    with pytest.raises(KagentError):  # (this data dir holds no etcd db: the backup then fails)
        bk.create_backup(paths, storage="etcd", etcd_client_port=1, kine_data_source=None, config_text=None,
                         cluster_name="kagent", save_path=str(out), now=datetime.now(timezone.utc))
    assert seen == ["another kagent is already running with this run dir"], seen
    assert _lock_state(paths) == "free" and list(out.iterdir()) == []
