"""Scheduled backups in a running controller: taken every ``spec.backup.schedule``, pruned to
``retention`` (on-demand archives kept), logged, shown in ``kagent status``; a failing backup
is reported there while etcd keeps running untouched."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


def _taken(n) -> int:
    """Scheduled backups taken so far, from kagent status."""
    st = n.status()
    return st["backup"]["taken"] if st and "backup" in st else 0


def _wait_taken(n, count: int) -> None:
    deadline = time.monotonic() + 30
    while _taken(n) < count:
        assert time.monotonic() < deadline, n.log_text()[-3000:]
        time.sleep(0.2)


def test_scheduled_backups_prune_log_and_report_failures(node_factory, tmp_path):
    n = node_factory()
    out = tmp_path / "backups"
    out.mkdir()
    (out / "kagent_backup_20200101T000000.000Z.tar.gz").write_bytes(b"on-demand, never pruned")
    n.write_config(base_config(n, backup={"schedule": "1s", "retention": 2, "directory": str(out)}))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    etcd_pid = n.wait_healthy(["etcd"])["etcd"]["pid"]

    deadline = time.monotonic() + 60
    while True:
        st = n.status()
        if st and st.get("backup", {}).get("taken", 0) >= 4:
            break
        assert time.monotonic() < deadline, (st, n.log_text()[-3000:])
        time.sleep(0.3)
    assert st["backup"]["last"]["ok"] and st["backup"]["every"] == "0h0m1s" and st["backup"]["retention"] == 2
    scheduled = sorted(p.name for p in out.glob("kagent_scheduled_*.tar.gz"))
    assert len(scheduled) in (2, 3)  # 2 after each prune; a third may be in flight
    assert (out / "kagent_backup_20200101T000000.000Z.tar.gz").exists()
    taken = [e for e in n.events() if e.get("event") == "backup_taken"]
    assert len(taken) >= 4 and any(e["pruned"] for e in taken)
    listing = n.kagent("backup", "list")  # the directory from spec.backup
    assert listing.returncode == 0 and "scheduled" in listing.stdout and "on-demand" in listing.stdout

    shutil.rmtree(out)
    out.write_text("now a file, not a directory")
    deadline = time.monotonic() + 30
    while True:
        st = n.status()
        if st and st["backup"]["last"] and not st["backup"]["last"]["ok"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.3)
    assert str(out) in st["backup"]["last"]["error"]
    text = n.kagent("status").stdout
    assert "LAST FAILED" in text
    comps = n.components()
    assert comps["etcd"]["pid"] == etcd_pid and comps["etcd"]["restarts"] == 0 and comps["etcd"]["health"] == "healthy"
    assert any(e.get("event") == "backup_failed" for e in n.events())
    assert n.stop() == 0


def test_a_reload_enables_reschedules_and_stops_backups_without_touching_etcd(node_factory, tmp_path):
    """spec.backup added by SIGHUP to a controller started without it: backups start (one timer
    in the agent), a `kagent reload` reply names each change (rescheduled, retention, stopped),
    and etcd keeps its pid with no restart through all of it."""
    import os
    import signal

    n = node_factory()
    out = tmp_path / "backups"
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    pids = {k: c["pid"] for k, c in n.wait_healthy(["etcd", "control-api"]).items()}
    assert "backup" not in n.status()

    def scheduled() -> list[str]:
        return sorted(p.name for p in out.glob("kagent_scheduled_*.tar.gz")) if out.is_dir() else []

    def wait_until(pred, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"{what}: {n.log_text()[-3000:]}"
            time.sleep(0.2)

    n.write_config(base_config(n, backup={"schedule": "1s", "retention": 2, "directory": str(out)}))
    os.kill(n.proc.pid, signal.SIGHUP)
    wait_until(lambda: any(e.get("event") == "reload_done" for e in n.events()), "the SIGHUP reload")
    done = [e for e in n.events() if e.get("event") == "backup_schedule_changed"]
    assert done and done[-1]["change"].startswith("started: every 0h0m1s into " + str(out))
    wait_until(lambda: len(scheduled()) >= 1, "a scheduled backup after the reload")
    st = n.status()["backup"]
    assert st["every"] == "0h0m1s" and st["retention"] == 2 and st["taken"] >= 1

    n.write_config(base_config(n, backup={"schedule": "2s", "retention": 1, "directory": str(out)}))
    r = n.kagent("reload")
    assert r.returncode == 0, r.stderr
    assert "backup: rescheduled: every 0h0m1s -> 0h0m2s; retention 2 -> 1" in r.stdout, r.stdout
    assert "restarted:" not in r.stdout and "unchanged: etcd, control-api" in r.stdout
    wait_until(lambda: n.status()["backup"]["every"] == "0h0m2s" and len(scheduled()) == 1, "retention 1 applied")

    n.write_config(base_config(n))
    r = n.kagent("reload")
    assert r.returncode == 0 and "backup: stopped" in r.stdout, (r.stdout, r.stderr)
    assert "backup" not in n.status()
    before = scheduled()
    time.sleep(3)  # more than one old schedule: no backup is taken any more
    assert scheduled() == before
    assert n.kagent("reload").stdout.strip() == "nothing changed\nunchanged: etcd, control-api"  # nothing to say for backups
    # a rejected reload changes nothing for backups either
    bad = base_config(n, backup={"schedule": "1s", "retention": 0, "directory": str(out)})
    n.write_config(bad)
    r = n.kagent("reload")
    assert r.returncode == 3 and "spec.backup.retention" in r.stderr, r.stderr
    assert "backup" not in n.status()
    time.sleep(1.5)
    assert scheduled() == before
    comps = n.components()
    assert {k: c["pid"] for k, c in comps.items()} == pids and all(c["restarts"] == 0 for c in comps.values())
    assert n.stop() == 0


def test_scheduled_backups_go_on_with_the_running_config_after_a_rejected_reload(node_factory, tmp_path):
    """A config edited into something invalid and rejected by `kagent reload` ("nothing was
    changed") does not break the scheduled backups: they go on with the config the agent runs,
    and the archive holds that config, not the rejected file."""
    import json
    import tarfile

    n = node_factory()
    out = tmp_path / "backups"
    good = base_config(n, backup={"schedule": "1s", "retention": 5, "directory": str(out)})
    n.write_config(good)
    running_text = n.config.read_text()
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd"])

    _wait_taken(n, 1)
    n.write_config(base_config(n, backup={"schedule": "1s", "retention": 0, "directory": str(out)}))
    r = n.kagent("reload")
    assert r.returncode == 3 and "nothing was changed" in r.stderr, r.stderr
    after = _taken(n)
    _wait_taken(n, after + 2)
    st = n.status()["backup"]
    assert st["last"]["ok"] and st["failed"] == 0, st
    with tarfile.open(st["last"]["path"]) as tar:
        assert tar.extractfile("config/kagent.yaml").read().decode() == running_text
        assert json.loads(tar.extractfile("manifest.json").read())["storage"] == "etcd"
    assert n.stop() == 0


def test_a_reload_rejected_after_parsing_leaves_the_running_config_in_effect(node_factory, tmp_path):
    """A config that parses but whose reload is rejected later (storage switched to kine, whose
    binary is not here: exit 3 "nothing was changed") is not the agent's config: scheduled
    backups go on from etcd, archiving the config that runs, with the old schedule."""
    import json
    import tarfile

    n = node_factory()
    out = tmp_path / "backups"
    n.write_config(base_config(n, backup={"schedule": "1s", "retention": 5, "directory": str(out)}))
    running_text = n.config.read_text()
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    etcd_pid = n.wait_healthy(["etcd"])["etcd"]["pid"]

    _wait_taken(n, 1)
    other = tmp_path / "elsewhere"
    n.write_config(base_config(n, storage={"type": "kine"}, backup={"schedule": "1s", "retention": 5, "directory": str(other)}))
    r = n.kagent("reload")
    assert r.returncode == 3 and "nothing was changed" in r.stderr and "kine" in r.stderr, (r.returncode, r.stderr)
    after = _taken(n)
    _wait_taken(n, after + 2)
    st = n.status()["backup"]
    assert st["last"]["ok"] and st["failed"] == 0 and st["directory"] == str(out), st
    with tarfile.open(st["last"]["path"]) as tar:
        assert tar.extractfile("config/kagent.yaml").read().decode() == running_text
        assert json.loads(tar.extractfile("manifest.json").read())["storage"] == "etcd"
    assert not other.exists()
    # the same file again, now accepted when it can be: a reload back to the running config says nothing changed
    n.config.write_text(running_text)
    r = n.kagent("reload")
    assert r.returncode == 0 and "backup" not in r.stdout, (r.stdout, r.stderr)
    assert n.components()["etcd"]["pid"] == etcd_pid
    assert n.stop() == 0
