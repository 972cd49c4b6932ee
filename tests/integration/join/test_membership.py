"""etcd membership for controller joins (``kagent.join.membership``) against a real etcd:
learners that keep the cluster writable, promotion, a stale join replaced by the joiner's
next attempt or swept after the timeout, conflicts, and removal."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from kagent.bins import find_binary
from kagent.join import membership
from kagent.paths import Paths
from tests.conftest import ProcRegistry, free_port
from tests.fixtures.etcd import RunningMember, client_for, start_member
from tests.fixtures.pki_env import PkiEnv, build

pytestmark = pytest.mark.slow

CONFIG = "spec:\n  storage:\n    etcd:\n      peerAddress: {peer}\n  pki:\n    keyAlgorithm: ecdsa-p256\n"
ETCD = find_binary("etcd", Paths.build("/nonexistent", "/nonexistent"))


def _joiner_pki(first: PkiEnv, base: Path, peer: str) -> PkiEnv:
    paths = Paths.build(base / "data", base / "run")
    paths.etcd_pki_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(first.paths.etcd_pki(name), paths.etcd_pki(name))
    return build(base, CONFIG.format(peer=peer))


def _start_joiner(reg: ProcRegistry, env: PkiEnv, base: Path, name: str, added: membership.Added) -> RunningMember:
    assert ETCD is not None
    return start_member(reg, ETCD, env.paths, base, name=name, peer_url=added.member.peer_urls[0],
                        initial_cluster=",".join(added.initial_cluster(name)), state="existing", wait=30)


@pytest.fixture
def cluster(tmp_path: Path):
    assert ETCD is not None
    env = build(tmp_path / "a", CONFIG.format(peer="127.0.0.1"))
    reg = ProcRegistry()
    try:
        a = start_member(reg, ETCD, env.paths, tmp_path, name="a")
        with client_for(env.paths, a.client_url, timeout=5) as c:
            yield env, a, c, reg, tmp_path
    finally:
        reg.stop_all()


def test_a_join_adds_a_learner_then_promotes_it(cluster):
    env, a, c, reg, base = cluster
    peer = f"https://127.0.0.2:{free_port()}"
    added = membership.add(c, "b-1", peer, now=time.time())
    assert added.member.is_learner and not added.existing
    assert sorted(added.initial_cluster("b-1")) == sorted([f"a={a.peer_url}", f"b-1={peer}"])
    pending = c.get(membership.PENDING + "b-1")
    assert pending is not None and json.loads(pending.value)["peerURL"] == peer
    c.put("/kagent/x", "still writable with a learner that never started")
    b_env = _joiner_pki(env, base / "b", "127.0.0.2")
    _start_joiner(reg, b_env, base / "b", "b-1", added)
    m = membership.promote(c, "b-1", deadline_s=30)
    assert not m.is_learner and m.name == "b-1"
    assert c.get(membership.PENDING + "b-1") is None
    assert sorted((x.name, x.is_learner) for x in c.member_list()) == [("a", False), ("b-1", False)]
    # the same join repeated after it completed changes nothing
    again = membership.add(c, "b-1", peer, now=time.time())
    assert again.existing and again.member.id == m.id and len(c.member_list()) == 2


def test_the_joiners_next_attempt_replaces_its_stale_learner(cluster):
    _env, _a, c, _reg, _base = cluster
    peer = f"https://127.0.0.2:{free_port()}"
    first = membership.add(c, "b-1", peer, now=time.time())
    second = membership.add(c, "b-1", peer, now=time.time())
    ids = [m.id for m in c.member_list()]
    assert second.member.id != first.member.id and first.member.id not in ids and second.member.id in ids
    assert len(ids) == 2
    # also when the joiner comes back on another peer port
    other = f"https://127.0.0.2:{free_port()}"
    third = membership.add(c, "b-1", other, now=time.time())
    assert [m.peer_urls for m in c.member_list() if m.is_learner] == [(other,)]
    assert second.member.id not in [m.id for m in c.member_list()] and third.member.id in [m.id for m in c.member_list()]


def test_a_join_that_never_came_up_is_swept_after_the_timeout(cluster):
    _env, _a, c, _reg, _base = cluster
    t0 = time.time()
    added = membership.add(c, "b-1", f"https://127.0.0.2:{free_port()}", now=t0)
    assert membership.sweep(c, now=t0 + 10) == []  # not yet
    assert len(c.member_list()) == 2
    assert membership.sweep(c, now=t0 + membership.PENDING_TIMEOUT + 1) == ["b-1"]
    assert [m.name for m in c.member_list()] == ["a"] and added.member.id not in [m.id for m in c.member_list()]
    assert c.get(membership.PENDING + "b-1") is None
    c.put("/kagent/x", "writable")


def test_a_peer_url_of_a_running_member_is_a_conflict(cluster):
    _env, a, c, _reg, _base = cluster
    with pytest.raises(membership.MembershipError) as ei:
        membership.add(c, "b-1", a.peer_url, now=time.time())
    assert ei.value.status == 409 and "already used by member a" in ei.value.what
    assert [m.name for m in c.member_list()] == ["a"]


def test_bad_names_and_addresses_are_refused_before_etcd_is_asked(cluster):
    _env, _a, c, _reg, _base = cluster
    for bad in ("", "UPPER", "a" * 64, "../x", None, 5):
        with pytest.raises(membership.MembershipError) as ei:
            membership.add(c, bad, "https://127.0.0.2:2380", now=time.time())  # type: ignore[arg-type]
        assert ei.value.status == 400
    for addr, port in (("", 2380), ("a b", 2380), ("127.0.0.2", 0), ("127.0.0.2", "2380"), ("x" * 300, 1)):
        with pytest.raises(membership.MembershipError):
            membership.peer_url_of(addr, port)
    assert membership.peer_url_of("::1", 2380) == "https://[::1]:2380"
    assert len(c.member_list()) == 1


def test_remove_keeps_the_cluster_writable_and_refuses_the_last_member(cluster):
    env, _a, c, reg, base = cluster
    added = membership.add(c, "b-1", f"https://127.0.0.2:{free_port()}", now=time.time())
    b = _start_joiner(reg, _joiner_pki(env, base / "b", "127.0.0.2"), base / "b", "b-1", added)
    membership.promote(c, "b-1", deadline_s=30)
    membership.register_controller(c, "b-1", b.peer_url, "https://127.0.0.2:9443", now=time.time())
    assert [x["node"] for x in membership.controllers(c)] == ["b-1"]
    removed, left = membership.remove(c, node="b-1", deadline_s=30)
    assert removed.name == "b-1" and [m.name for m in left] == ["a"]
    assert membership.controllers(c) == []
    c.put("/kagent/after", "writable")
    with pytest.raises(membership.MembershipError) as ei:
        membership.remove(c, node="a")
    assert ei.value.status == 409
    with pytest.raises(membership.MembershipError) as ei:
        membership.remove(c, address="127.0.0.9")
    assert ei.value.status == 404


def test_member_changes_are_retried_while_etcd_is_not_ready(cluster):
    """Right after a member is promoted, etcd refuses the next change until every member has
    been connected for 5 s; ``add`` retries with backoff instead of failing."""
    env, _a, c, reg, base = cluster
    added = membership.add(c, "b-1", f"https://127.0.0.2:{free_port()}", now=time.time())
    _start_joiner(reg, _joiner_pki(env, base / "b", "127.0.0.2"), base / "b", "b-1", added)
    membership.promote(c, "b-1", deadline_s=30)
    naps: list[float] = []

    def nap(s: float) -> None:
        naps.append(s)
        time.sleep(s)

    third = membership.add(c, "c-1", f"https://127.0.0.3:{free_port()}", now=time.time(), deadline_s=30, sleep=nap)
    assert third.member.is_learner and len(c.member_list()) == 3
    assert naps, "etcd accepted the change at once: the retry path was not exercised"
    assert naps == sorted(naps)  # backoff grows


def test_keep_membership_follows_the_registered_controllers_down_to_none(cluster):
    """A controller's state file lists the other controllers' APIs (what a stopped node leaves
    or resets through); when the last other one has gone, the list is emptied, so the survivor
    is a single member again and its reset does not look for peers that are gone."""
    from urllib.parse import urlsplit

    from kagent.join.controller import MemberState, keep_membership, load_state, save_state

    env, a, c, reg, base = cluster
    port = urlsplit(a.client_url).port
    assert port is not None
    save_state(env.paths, MemberState(name="a", state="joined", api_urls=("https://127.0.0.9:9443",)))
    membership.register_controller(c, "b-1", "https://127.0.0.2:2380", "https://127.0.0.2:9443", now=time.time())
    keep_membership(env.paths, client_port=port, peer_url=a.peer_url, api_url="https://127.0.0.1:9443")
    st = load_state(env.paths)
    assert st is not None and st.api_urls == ("https://127.0.0.2:9443",)
    assert c.get(membership.CONTROLLERS + "a") is not None  # it registered itself
    c.delete(membership.CONTROLLERS + "b-1")
    keep_membership(env.paths, client_port=port, peer_url=a.peer_url, api_url="https://127.0.0.1:9443")
    st = load_state(env.paths)
    assert st is not None and st.api_urls == () and st.state == "joined"
