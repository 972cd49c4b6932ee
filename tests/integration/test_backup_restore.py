"""``kagent backup`` / ``kagent restore`` with the real etcd: a live controller holding 1,000
keys is backed up through etcd's API, restored into a fresh data dir, started there, and every
key is back; a stopped controller is backed up from its db file; truncated and tampered
archives are refused with nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import kagent_cmd, kagent_env
from tests.fixtures.etcd_gateway import Gateway
from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = (p.stat().st_mode & 0o777, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _only_archive(d: Path) -> Path:
    found = sorted(d.glob("kagent_backup_*.tar.gz"))
    assert len(found) == 1, found
    return found[0]


def test_live_backup_of_1000_keys_restores_into_a_fresh_data_dir(node_factory, tmp_path):
    a = node_factory()
    a.write_config(base_config(a))
    a.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    a.wait_healthy(["etcd"])
    gw = Gateway(a.ports["etcd_client"], a.data / "pki")
    try:
        keys = gw.put_many(1000)
    finally:
        gw.close()
    out = tmp_path / "backups"
    out.mkdir()
    r = a.kagent("backup", "--save-path", str(out))
    assert r.returncode == 0, r.stderr
    archive = _only_archive(out)
    assert "etcd snapshot (api)" in r.stdout
    assert oct(archive.stat().st_mode & 0o777) == "0o600"  # it holds the CA key
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert names[-1] == "manifest.json" and "etcd-snapshot.db" in names and "pki/ca.key" in names
    assert manifest["snapshot"]["kind"] == "api" and manifest["cluster"]["etcd_cluster_id"]
    assert manifest["etcd_version"].startswith("3.")
    assert {e["name"] for e in manifest["entries"] if e["type"] == "file"} == set(names) - {"manifest.json"} - {
        n for n in names if n in ("pki", "pki/etcd", "manifests", "config")}
    assert a.stop() == 0  # the restored controller reuses the same ports

    b = node_factory()
    cfg_out = b.root / "restored.yaml"
    r = b.kagent("restore", str(archive), "--config-out", str(cfg_out))
    assert r.returncode == 0, r.stderr
    assert oct((b.data / "etcd").stat().st_mode & 0o777) == "0o700"
    etcd_uid = pwd.getpwnam("etcd").pw_uid  # spec.install.users.etcdUser of the test config
    for dirpath, _dirs, files in os.walk(b.data / "etcd"):
        assert os.stat(dirpath).st_uid == etcd_uid and all(os.stat(Path(dirpath) / f).st_uid == etcd_uid for f in files)
    assert oct((b.data / "pki").stat().st_mode & 0o777) == "0o700"
    assert oct((b.data / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert not list(b.data.glob(".kagent-restore-*"))
    # the same archive into another empty dir gives the same tree
    c = node_factory()
    assert c.kagent("restore", str(archive)).returncode == 0
    assert _tree(c.data) == _tree(b.data)
    # an archive too large to hold in memory is extracted in a second pass: the same tree again
    from kagent import backup as bk
    from kagent.node.facts import gather
    from kagent.paths import Paths

    d = node_factory()
    big = bk.verify_archive(archive, keep_up_to=0)
    assert big.blobs is None
    target = bk.RestoreTarget(node_name=gather().node_name, peer_url=f"https://127.0.0.1:{a.ports['etcd_peer']}")
    bk.restore(Paths.build(d.data, d.run), archive, target, config_out=None, verified=big)
    assert _tree(d.data) == _tree(b.data)
    # a second restore into a now non-empty dir is refused
    again = b.kagent("restore", str(archive))
    assert again.returncode == 4 and "is not empty" in again.stderr

    b.config = cfg_out
    b.start("controller", "--disable-components", KUBE_COMPONENTS)  # no --init: the restored PKI is a cluster
    b.wait_healthy(["etcd"])
    gw = Gateway(a.ports["etcd_client"], b.data / "pki")
    try:
        assert gw.get_prefix("/kagent-test/") == keys
    finally:
        gw.close()


def test_stopped_controller_backup_and_stdin_restore(node_factory, tmp_path):
    a = node_factory()
    a.write_config(base_config(a))
    a.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    a.wait_healthy(["etcd"])
    gw = Gateway(a.ports["etcd_client"], a.data / "pki")
    keys = gw.put_many(20, prefix="/stopped/")
    gw.close()
    assert a.stop() == 0
    p = subprocess.run(kagent_cmd(*a.flags(), "backup", "--save-path", "-"), capture_output=True, env=kagent_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert b"db-copy" in p.stderr
    r_bytes = p.stdout
    assert r_bytes[:2] == b"\x1f\x8b"
    b = node_factory()
    p = subprocess.run(kagent_cmd("-c", str(a.config), "--data-dir", str(b.data), "--run-dir", str(b.run), "restore", "-"),
                       input=r_bytes, capture_output=True, env=kagent_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    b.config = a.config
    b.start("controller", "--disable-components", KUBE_COMPONENTS)
    b.wait_healthy(["etcd"])
    gw = Gateway(a.ports["etcd_client"], b.data / "pki")
    try:
        assert gw.get_prefix("/stopped/") == keys
    finally:
        gw.close()


def _rewrite(src: Path, dest: Path, change) -> None:
    """Copy a tar.gz entry by entry, letting ``change(info, data)`` return new (info, data) or None."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read() if info.isreg() else None
            res = change(info, data)
            if res is None:
                continue
            info, data = res
            if data is not None:
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data) if data is not None else None)


def test_truncated_tampered_and_hostile_archives_write_nothing(node_factory, tmp_path):
    a = node_factory()
    a.write_config(base_config(a))
    a.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    a.wait_healthy(["etcd"])
    assert a.stop() == 0
    out = tmp_path / "b"
    out.mkdir()
    assert a.kagent("backup", "--save-path", str(out)).returncode == 0
    good = _only_archive(out)
    raw = good.read_bytes()

    cases: dict[str, Path] = {}
    cases["truncated"] = tmp_path / "truncated.tar.gz"
    cases["truncated"].write_bytes(raw[: len(raw) // 2])
    cases["garbage"] = tmp_path / "garbage.tar.gz"
    cases["garbage"].write_bytes(b"not a tarball at all")
    cases["tampered"] = tmp_path / "tampered.tar.gz"
    _rewrite(good, cases["tampered"], lambda i, d: (i, d + b"\n") if i.name == "pki/ca.crt" else (i, d))

    def add_link(i, d):
        if i.name == "manifest.json":
            link = tarfile.TarInfo("pki/evil")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            return link, None
        return i, d
    cases["symlink"] = tmp_path / "symlink.tar.gz"
    _rewrite(good, cases["symlink"], add_link)
    cases["dotdot"] = tmp_path / "dotdot.tar.gz"
    _rewrite(good, cases["dotdot"], lambda i, d: (tarfile.TarInfo("pki/../../escape"), b"x") if i.name == "pki/sa.pub" else (i, d))
    cases["no-manifest"] = tmp_path / "nomanifest.tar.gz"
    _rewrite(good, cases["no-manifest"], lambda i, d: None if i.name == "manifest.json" else (i, d))

    expect = {"truncated": "truncated or corrupt", "garbage": "not a gzip-compressed tar", "tampered": "does not match the manifest",
              "symlink": "is a link, device or other special file", "dotdot": "'..'", "no-manifest": "holds no manifest.json"}
    for case, path in cases.items():
        b = node_factory()
        r = b.kagent("restore", str(path), "--config-out", str(b.root / "cfg.yaml"))
        assert r.returncode == 2, (case, r.stderr)
        assert expect[case] in r.stderr, (case, r.stderr)
        assert r.stderr.startswith("error: "), r.stderr
        assert not b.data.exists() and not (b.root / "cfg.yaml").exists(), case
    assert not Path("/escape").exists()


def test_backup_refuses_a_missing_directory_and_leaves_no_temp(node_factory, tmp_path):
    a = node_factory()
    a.write_config(base_config(a))
    r = a.kagent("controller", "--init", "--init-only", "--disable-components", KUBE_COMPONENTS)
    assert r.returncode == 0, r.stderr
    r = a.kagent("backup", "--save-path", str(tmp_path / "nope"))
    assert r.returncode == 2 and "is not a directory" in r.stderr
    out = tmp_path / "o"
    out.mkdir()
    r = a.kagent("backup", "--save-path", str(out))  # no etcd db and no etcd running: refused, nothing left
    assert r.returncode == 4 and "no etcd database" in r.stderr
    assert list(out.iterdir()) == []


def test_kine_sqlite_backup_is_consistent_and_restores(node_factory, tmp_path):
    """kine's SQLite file (kine itself is not installed here: the file is made directly) is
    copied with SQLite's backup API, also while a writer holds it open in WAL mode."""
    import sqlite3

    a = node_factory()
    a.write_config(base_config(a, storage={"type": "kine"}))
    r = a.kagent("controller", "--init", "--init-only", "--single")
    assert r.returncode == 0, r.stderr
    (a.data / "db").mkdir(exist_ok=True)
    db = sqlite3.connect(a.data / "db" / "state.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE kine (name TEXT, value BLOB)")
    db.executemany("INSERT INTO kine VALUES (?, ?)", [(f"/k/{i}", b"v" * 100) for i in range(500)])
    db.commit()
    db.execute("INSERT INTO kine VALUES ('/uncommitted', x'00')")  # an open transaction is not in the copy
    try:
        out = tmp_path / "o"
        out.mkdir()
        r = a.kagent("backup", "--save-path", str(out))
        assert r.returncode == 0, r.stderr
        assert "kine snapshot (sqlite-backup)" in r.stdout
    finally:
        db.rollback()
        db.close()
    b = node_factory()
    r = b.kagent("restore", str(_only_archive(out)))
    assert r.returncode == 0, r.stderr
    restored = sqlite3.connect(b.data / "db" / "state.db")
    try:
        names = [row[0] for row in restored.execute("SELECT name FROM kine ORDER BY rowid")]
    finally:
        restored.close()
    assert names == [f"/k/{i}" for i in range(500)]
    assert oct((b.data / "db").stat().st_mode & 0o777) == "0o750" and not (b.data / "etcd").exists()
