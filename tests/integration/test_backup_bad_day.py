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


def _kine_controller(root: Path) -> tuple[Path, Path, Path]:
    data, run = root / "data", root / "run"
    (data / "pki").mkdir(parents=True)
    (data / "pki" / "ca.crt").write_text("not read as a certificate by backup\n")
    (data / "pki" / "bulk.bin").write_bytes(os.urandom(1_000_000))  # does not compress: fills the tmpfs
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
