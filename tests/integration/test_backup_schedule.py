"""Scheduled backups in a running controller: taken every ``spec.backup.schedule``, pruned to
``retention`` (on-demand archives kept), logged, shown in ``kagent status``; a failing backup
is reported there while etcd keeps running untouched."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


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
