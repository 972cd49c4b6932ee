"""``kagent reset`` of one controller of a three-member etcd cluster: the stopped controller
leaves through another controller's API first, so the two survivors form a two-member
cluster that is still writable; with no other controller reachable the reset is refused
(nothing removed) and ``--force`` resets without leaving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.controllers import Host, configure, wait_until
from tests.integration.join.test_controller_ha import _bring_up

pytestmark = pytest.mark.slow


def test_reset_of_one_of_three_controllers_leaves_a_writable_pair(node_factory, tmp_path: Path):
    hosts = [Host(node_factory(), f"127.0.0.{i + 1}") for i in range(3)]
    for h in hosts:
        configure(h.node, h.address)
    c1, c2, c3 = hosts
    _bring_up(hosts, tmp_path)  # c1 --init, c2 and c3 joined as voting members
    gone = c3.member_name()
    wait_until(lambda: json.loads((c3.node.data / "etcd-member.json").read_text()).get("apiURLs"), 60,
               "controller 3 knowing the others' APIs")

    assert c3.node.stop() == 0
    dry = c3.kagent("reset", "--dry-run")
    assert dry.returncode == 0 and f"would leave: the etcd cluster, as member {gone}, through one of" in dry.stdout, dry.stdout
    assert len(c1.members()) == 3  # a dry run changes nothing
    r = c3.kagent("reset", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"etcd member {gone} left the cluster" in r.stdout
    assert not c3.node.data.exists()
    survivors = sorted([c1.member_name(), c2.member_name()])
    assert sorted(m["name"] for m in c1.members()) == survivors
    w = c1.etcdctl("put", "/after-reset", "two-left")
    assert w.returncode == 0, w.stderr
    assert c2.etcdctl("get", "/after-reset", "--print-value-only", "--consistency=l").stdout.strip() == "two-left"

    # no other controller reachable: refused, nothing removed; --force resets without leaving
    assert c1.node.stop() == 0 and c2.node.stop() == 0
    r = c2.kagent("reset", timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "--force" in r.stderr and (c2.node.data / "pki" / "ca.key").exists()
    r = c2.kagent("reset", "--force", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not c2.node.data.exists()
