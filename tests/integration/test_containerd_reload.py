"""containerd under ``kagent worker`` (kubelet disabled), reloaded: the hosts dir of an old
mirror set (and one left over from an earlier run) is removed once containerd runs healthy on
the new one; an operator drop-in in containerd.d/ that appears or changes restarts containerd
on ``kagent reload``, and an unchanged one does not."""

from __future__ import annotations

import pytest

from tests.integration.conftest import base_config


def _config(n, mirror: str) -> dict:
    return base_config(n, containerd={"registryMirrors": {"registry.example.com": [mirror]}})


def _hosts_dirs(n) -> set[str]:
    return {p.name for p in (n.run / "containerd-hosts").iterdir()}


def _reload(n) -> str:
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_reload_prunes_old_hosts_dirs_and_restarts_on_a_changed_drop_in(node_factory):
    n = node_factory()
    n.write_config(_config(n, "https://a.example"))
    leftover = n.run / "containerd-hosts" / "0123456789ab" / "registry.example.com"
    leftover.mkdir(parents=True)
    (leftover / "hosts.toml").write_text("server = 'https://old.example'\n")
    n.start("worker", "--disable-components", "kubelet")
    pid = n.wait_healthy(["containerd"], timeout=90)["containerd"]["pid"]
    first = n.wait_for(lambda c: len(_hosts_dirs(n)) == 1, timeout=30, what="leftover hosts dir removed")
    (dir_a,) = _hosts_dirs(n)
    assert dir_a != "0123456789ab" and first["containerd"]["pid"] == pid

    # a new mirror set: containerd restarts on a new hosts dir, the old one goes after it is healthy
    n.write_config(_config(n, "https://b.example"))
    assert "restarted: containerd" in _reload(n)
    after = n.wait_healthy(["containerd"])
    assert after["containerd"]["pid"] != pid
    n.wait_for(lambda c: dir_a not in _hosts_dirs(n) and len(_hosts_dirs(n)) == 1, timeout=30, what="old hosts dir removed")
    pid = after["containerd"]["pid"]

    # nothing changed: nothing restarts
    assert _reload(n).startswith("nothing changed")

    # an operator drop-in appears, then changes: each time containerd restarts
    dropins = n.config.parent / "containerd.d"
    dropins.mkdir()
    (dropins / "10-debug.toml").write_text("[debug]\n  level = \"info\"\n")
    assert "restarted: containerd" in _reload(n)
    pid2 = n.wait_healthy(["containerd"])["containerd"]["pid"]
    assert pid2 != pid
    (dropins / "10-debug.toml").write_text("[debug]\n  level = \"debug\"\n")
    assert "restarted: containerd" in _reload(n)
    pid3 = n.wait_healthy(["containerd"])["containerd"]["pid"]
    assert pid3 != pid2
    assert _reload(n).startswith("nothing changed")
    assert n.stop() == 0
