"""kagent.node.detect.dropin_hashes: what containerd's imports glob reads, hashed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kagent.node.detect import dropin_hashes


def test_hashes_each_toml_sorted_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text("b = 1\n")
    (tmp_path / "a.toml").write_text("a = 1\n")
    (tmp_path / "README").write_text("not a drop-in\n")
    got = dropin_hashes(tmp_path)
    assert got == ((str(tmp_path / "a.toml"), hashlib.sha256(b"a = 1\n").hexdigest()),
                   (str(tmp_path / "b.toml"), hashlib.sha256(b"b = 1\n").hexdigest()))


def test_a_missing_dir_is_no_drop_ins_and_a_fifo_is_not_read(tmp_path: Path) -> None:
    assert dropin_hashes(tmp_path / "missing") == ()
    os.mkfifo(tmp_path / "x.toml")  # reading it would hang
    (path, digest), = dropin_hashes(tmp_path)
    assert path == str(tmp_path / "x.toml") and digest.startswith("unreadable: ")
