from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kagent.paths import DEFAULT_CONFIG_DIR, DEFAULT_DATA_DIR, DEFAULT_RUN_DIR, Paths


def every_path(p: Paths) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name in dir(Paths):
        attr = getattr(Paths, name)
        if isinstance(attr, property):
            out[name] = getattr(p, name)
    out["pki(admin.crt)"] = p.pki("admin.crt")
    out["etcd_pki(server.crt)"] = p.etcd_pki("server.crt")
    out["pidfile(etcd)"] = p.pidfile("etcd")
    return out


def test_every_path_is_under_the_data_run_or_config_dir(tmp_path: Path) -> None:
    p = Paths.build(tmp_path / "d", tmp_path / "r", tmp_path / "etc")
    paths = every_path(p)
    assert len(paths) > 30
    for name, path in paths.items():
        assert isinstance(path, Path), name
        roots = [r for r in (p.data_dir, p.run_dir, p.config_dir) if path.is_relative_to(r)]
        assert roots, f"{name}: {path} is outside the data, run and config dirs"


def test_moving_the_data_dir_moves_every_data_path(tmp_path: Path) -> None:
    a = every_path(Paths.build(tmp_path / "a", tmp_path / "r", tmp_path / "etc"))
    b = every_path(Paths.build(tmp_path / "b", tmp_path / "r", tmp_path / "etc"))
    moved = {n for n in a if a[n] != b[n]}
    for n in moved:
        assert a[n].relative_to(tmp_path / "a") == b[n].relative_to(tmp_path / "b")
    assert {"bin_dir", "pki_dir", "etcd_data_dir", "kine_db", "kubelet_root", "admin_conf", "manifests_dir"} <= moved
    assert "lock_file" not in moved and "containerd_sock" not in moved


def test_layout_matches_the_design(tmp_path: Path) -> None:
    p = Paths.build(tmp_path / "data", tmp_path / "run")
    d, r = p.data_dir, p.run_dir
    assert (p.bin_dir, p.pki_dir, p.etcd_pki_dir, p.etcd_data_dir, p.kine_db) == (
        d / "bin", d / "pki", d / "pki/etcd", d / "etcd", d / "db/state.db")
    assert (p.manifests_dir, p.images_dir, p.containerd_root, p.kubelet_root, p.kubelet_conf, p.log_dir) == (
        d / "manifests", d / "images", d / "containerd", d / "kubelet", d / "kubelet.conf", d / "log")
    assert (p.agent_pidfile, p.pidfile("etcd"), p.status_sock, p.lock_file, p.containerd_sock, p.kubelet_config) == (
        r / "kagent.pid", r / "etcd.pid", r / "status.sock", r / "kagent.lock", r / "containerd.sock", r / "kubelet/config.yaml")
    assert p.pki("ca.key") == d / "pki/ca.key" and p.etcd_pki("peer.crt") == d / "pki/etcd/peer.crt"


def test_defaults_and_relative_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Paths() == Paths(DEFAULT_DATA_DIR, DEFAULT_RUN_DIR, DEFAULT_CONFIG_DIR)
    assert Paths().bin_dir == Path("/var/lib/kagent/bin") and Paths().lock_file == Path("/run/kagent/kagent.lock")
    monkeypatch.chdir(tmp_path)
    p = Paths.build("data", "run")
    assert p.data_dir == tmp_path / "data" and p.run_dir == tmp_path / "run"  # made absolute
    assert p.config_dir == DEFAULT_CONFIG_DIR


def test_paths_is_frozen_and_touches_nothing(tmp_path: Path) -> None:
    p = Paths.build(tmp_path / "d", tmp_path / "r")
    every_path(p)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.data_dir = tmp_path  # type: ignore[misc]
