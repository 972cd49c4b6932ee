"""Three controllers on one machine, both ways: plain loopback addresses (127.0.0.1/2/3) and
network namespaces joined by veth pairs. Controller 1 ``--init``, 2 and 3 join with a
controller token; ``kagent etcd member-list`` shows three voting members; a key written
through controller 1's etcd is read through controller 3's; SIGKILL of controller 1's agent
and its children leaves the cluster writable through 2 and 3; controller 1 restarted with no
token rejoins; in the namespaces, ``kagent reset`` of a stopped controller removes its member
through another controller's API. Loopback only (once is enough): a worker token on the controller endpoints is
401, a token naming another CA is refused by the joiner before anything is written, and
members leave cleanly (a running one through its etcd, a stopped one through another
controller's API)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from kagent.join.controller import ApiClient, member_client
from kagent.join.token import JoinToken, TokenRole, decode_token, encode_token
from kagent.paths import Paths
from tests.fixtures.controllers import KUBE, Host, configure, netns_hosts, voting, wait_until, write_token
from tests.fixtures.pki_env import build

pytestmark = pytest.mark.slow
HEALTHY = ["etcd", "control-api"]


def _bring_up(hosts: list[Host], tmp: Path) -> Path:
    c1, c2, c3 = hosts
    c1.start("--init")
    c1.node.wait_healthy(HEALTHY, timeout=60)
    token = tmp / "controller.token"
    write_token(c1, "controller", token)
    for h in (c2, c3):
        h.start("--token-file", str(token))
        h.node.wait_healthy(HEALTHY, timeout=90)
        name = h.member_name()
        wait_until(lambda: name in voting(c1), 60, f"{name} promoted to a voting member")
    return token


def _replicates(src: Host, dst: Host, key: str, value: str) -> None:
    w = src.etcdctl("put", key, value)
    assert w.returncode == 0, w.stderr
    r = dst.etcdctl("get", key, "--print-value-only", "--consistency=l")
    assert r.returncode == 0 and r.stdout.strip() == value, r.stderr


def _ha_scenario(hosts: list[Host], tmp: Path) -> None:
    c1, c2, c3 = hosts
    _bring_up(hosts, tmp)
    names = [h.member_name() for h in hosts]
    assert len(set(names)) == 3, names  # unique even though every host has the same hostname
    for h in hosts:
        members = h.members()
        assert sorted(m["name"] for m in members) == sorted(names)
        assert not any(m["isLearner"] for m in members)
    _replicates(c1, c3, "/ha/one", "written-through-1")
    # every joined controller knows the others' APIs (how a stopped one leaves)
    state = json.loads((c3.node.data / "etcd-member.json").read_text())
    assert state["state"] == "joined" and state["apiURLs"]

    c1.kill_hard()
    t0 = time.monotonic()
    wait_until(lambda: c2.etcdctl("put", "/ha/two", "after-kill").returncode == 0, 20, "a write through controller 2")
    failover_s = time.monotonic() - t0
    r = c3.etcdctl("get", "/ha/two", "--print-value-only", "--consistency=l")
    assert r.stdout.strip() == "after-kill", r.stderr
    assert failover_s < 20

    # controller 1 restarts from its data dir, no token
    c1.start()
    c1.node.wait_healthy(HEALTHY, timeout=90)
    r = wait_until(lambda: c1.etcdctl("get", "/ha/two", "--print-value-only", "--consistency=l").stdout.strip(), 30,
                   "controller 1 catching up")
    assert r == "after-kill"
    assert sorted(voting(c1)) == sorted(names)


def test_three_controllers_on_loopback_addresses(node_factory, tmp_path: Path):
    nodes = [node_factory() for _ in range(3)]
    hosts = [Host(n, f"127.0.0.{i + 1}") for i, n in enumerate(nodes)]
    for h in hosts:
        configure(h.node, h.address)
    _ha_scenario(hosts, tmp_path)
    c1, c2, c3 = hosts

    # a worker token cannot use the controller endpoints
    worker = decode_token(write_token(c1, "worker", tmp_path / "worker.token"))
    as_worker = ApiClient(server=worker.server, ca_pem=worker.ca_pem, bearer=worker.value)
    assert as_worker.request("GET", "/v1beta1/ca")[0] == 401
    status, doc = as_worker.request("POST", "/v1beta1/etcd/members", {"node": "evil", "peerAddress": "127.0.0.9"})
    assert status == 401 and "cert" not in json.dumps(doc)
    # nor can anyone without the member's own certificate remove a member
    assert as_worker.request("DELETE", f"/v1beta1/etcd/members/{c2.member_name()}")[0] == 401
    # and one controller's member certificate does not remove another controller's member
    as_c2 = member_client(Paths.build(c2.node.data, c2.node.run), worker.server)
    assert as_c2.request("DELETE", f"/v1beta1/etcd/members/{c3.member_name()}")[0] == 401
    assert as_c2.request("POST", f"/v1beta1/etcd/members/{c3.member_name()}/promote", {})[0] == 401
    assert len(c1.members()) == 3

    # a token naming another CA: the joiner refuses the server, writes nothing
    other = build(tmp_path / "other", "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    real = decode_token((tmp_path / "controller.token").read_text())
    forged = JoinToken(server=real.server, ca_pem=other.paths.pki("ca.crt").read_bytes(), role=TokenRole.CONTROLLER,
                       token_id=real.token_id, secret=real.secret)
    (tmp_path / "forged.token").write_text(encode_token(forged))
    c4 = Host(node_factory(), "127.0.0.4")
    configure(c4.node, c4.address)
    (tmp_path / "garbage.token").write_text("H4sIAAAA-not-a-token")
    for bad in ("garbage.token", "worker.token"):  # garbage, and a worker token: refused before any request
        r = c4.kagent("controller", "--token-file", str(tmp_path / bad), "--disable-components", KUBE)
        assert r.returncode == 4 and str(tmp_path / bad) in r.stderr, r.stderr
        assert not c4.node.data.exists() or not any(c4.node.data.iterdir())
    r = c4.kagent("controller", "--token-file", str(tmp_path / "forged.token"), "--disable-components", KUBE)
    assert r.returncode == 4, r.stderr
    assert "not signed by the pinned CA" in r.stderr
    assert not (c4.node.data / "pki" / "ca.crt").exists()
    assert len(c1.members()) == 3

    # leaving: a stopped controller through another controller's API, then a running one
    name3 = c3.member_name()
    assert c3.node.stop() == 0
    r = c3.kagent("etcd", "leave")
    assert r.returncode == 0, r.stderr
    assert "through https://" in r.stdout
    wait_until(lambda: sorted(m["name"] for m in c1.members()) == sorted([c1.member_name(), c2.member_name()]), 20,
               f"{name3} removed")
    _replicates(c2, c1, "/ha/three", "after-leave")
    r = c2.kagent("etcd", "leave")
    assert r.returncode == 0, r.stderr
    assert [m["name"] for m in c1.members()] == [c1.member_name()]
    # the one member left elects itself (the removed one may have been the leader) and takes writes
    wait_until(lambda: c1.etcdctl("put", "/ha/four", "single").returncode == 0, 15, "a write to the last member")
    r = c3.kagent("controller", "--disable-components", KUBE)
    assert r.returncode == 4 and "left the cluster" in r.stderr


def test_three_controllers_in_network_namespaces(node_factory, tmp_path: Path):
    with netns_hosts(3) as spaces:
        nodes = [node_factory() for _ in spaces]
        hosts = [Host(n, addr, ns) for n, (ns, addr) in zip(nodes, spaces)]
        for h in hosts:
            configure(h.node, h.address, same_ports_as=nodes[0] if h is not hosts[0] else None)
        try:
            _ha_scenario(hosts, tmp_path)
            # each host reaches the others only over the bridge
            r = subprocess.run(["ip", "netns", "exec", hosts[1].netns or "", "ip", "-4", "addr"], capture_output=True,
                               text=True)
            assert hosts[1].address in r.stdout and hosts[0].address not in r.stdout
            # kagent reset on a stopped controller: its member leaves through another controller's API first
            c1, c2, c3 = hosts
            assert c3.node.stop() == 0
            name3 = c3.member_name()
            r = c3.kagent("reset")
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"etcd member {name3} left the cluster (through https://" in r.stdout
            assert sorted(m["name"] for m in c1.members()) == sorted([c1.member_name(), c2.member_name()])
            assert not (c3.node.data / "etcd-member.json").exists()
            _replicates(c2, c1, "/ha/after-reset", "two-left")
        finally:
            for h in hosts:
                h.node.stop(timeout=30)
