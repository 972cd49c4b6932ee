"""Privilege separation with the real etcd: it runs as the configured system user (Debian's
``etcd``), owns its data dir and keys (0600), the PKI dirs are traversable but not listable;
an etcd user that cannot get through a dir above the data dir is refused (exit 4 naming it)
before anything is written."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from tests.conftest import TEST_USERS
from tests.integration.conftest import KUBE_COMPONENTS, Node, base_config


def _uid_of(pid: int) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:"))
    return int(line.split()[1])  # real uid


def test_etcd_runs_as_its_user_and_owns_its_files(node_factory):
    etcd = pwd.getpwnam(TEST_USERS["etcdUser"])
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    pid = n.wait_healthy(["etcd"])["etcd"]["pid"]
    assert _uid_of(pid) == etcd.pw_uid
    data = n.data / "etcd"
    st = data.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (etcd.pw_uid, 0o700)
    assert all(p.lstat().st_uid == etcd.pw_uid for p in data.rglob("*"))
    for key in ("server.key", "peer.key", "jwt.key"):
        st = (n.data / "pki" / "etcd" / key).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (etcd.pw_uid, 0o600), key
    st = (n.data / "pki" / "ca.key").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)  # read by no one but the agent here
    for d in (n.data / "pki", n.data / "pki" / "etcd"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o711, d  # traversable, not listable
    created = [e for e in n.events() if e.get("event") == "system_user_created"]
    assert created == []  # an existing user is used as it is
    assert n.stop() == 0


def test_a_data_dir_the_etcd_user_cannot_reach_is_refused_before_anything_is_written(node_factory):
    n = node_factory()
    locked = n.root / "locked"
    locked.mkdir(mode=0o700)
    n.data, n.run = locked / "d", locked / "r"
    n.write_config(base_config(n))
    r = n.kagent("controller", "--init", "--disable-components", KUBE_COMPONENTS, timeout=60)
    assert r.returncode == 4, r.stderr
    first = r.stderr.splitlines()[-2]
    assert first.startswith(f"error: {locked}: etcd runs as user etcd, who cannot reach "), r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"hint: let it pass: chmod o+x {locked}")
    assert list(locked.iterdir()) == []


def test_an_etcd_staged_0750_in_the_bin_dir_runs_as_the_etcd_user(node_factory):
    import shutil

    etcd = pwd.getpwnam(TEST_USERS["etcdUser"])
    n = node_factory()
    n.write_config(base_config(n))
    staged = n.data / "bin" / "etcd"
    staged.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("etcd") or "/usr/bin/etcd", staged)
    staged.chmod(0o750)  # the mode `kagent bins fetch` gives it
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    pid = n.wait_healthy(["etcd"])["etcd"]["pid"]
    assert os.path.samefile(f"/proc/{pid}/exe", staged) and _uid_of(pid) == etcd.pw_uid
    st = staged.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, etcd.pw_gid, 0o750)
    assert n.stop() == 0
