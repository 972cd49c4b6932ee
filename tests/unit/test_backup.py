"""The pure parts of backup: entry-name checks of an untrusted archive, archive names, which
scheduled archives retention prunes, and the spec.backup config section."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from kagent.backup import ArchiveError, Listed, archive_name, check_name, prune_plan
from kagent.config.load import load_config
from kagent.errors import ConfigError


@pytest.mark.parametrize("name", ["/etc/passwd", "pki/../../x", "../x", "pki//ca.key", "./pki", "etc/passwd", "pki\\x", "",
                                  "x" * 2000])
def test_hostile_names_are_refused(name):
    with pytest.raises(ArchiveError) as e:
        check_name(name)
    assert e.value.exit_code == 2 and e.value.where.startswith("archive entry")


@pytest.mark.parametrize("name", ["pki/ca.key", "pki/etcd/", "manifests/a.yaml", "images/x.tar", "etcd-snapshot.db",
                                  "kine-state.db", "manifest.json", "config/kagent.yaml"])
def test_layout_names_pass(name):
    assert check_name(name) == name.rstrip("/")


def test_archive_names_sort_by_time_and_retention_prunes_only_scheduled_ones():
    t = datetime(2026, 12, 1, 21, 5, 3, 123456, tzinfo=timezone.utc)
    assert archive_name(t) == "kagent_backup_20261201T210503.123Z.tar.gz"
    assert archive_name(t, scheduled=True).startswith("kagent_scheduled_")
    listed = [Listed(Path(f"/b/{i}"), 1, f"2026120{i}T000000.000Z", scheduled=i != 2) for i in range(1, 7)]
    assert prune_plan(listed, 3) == [Path("/b/1"), Path("/b/3")]
    assert prune_plan(listed, 10) == []


def test_spec_backup_is_strict():
    cfg = load_config('spec:\n  backup: {schedule: "6h", retention: 3, directory: /var/backups/kagent}\n', host_address="10.0.0.1")
    assert cfg.backup is not None and cfg.backup.schedule.total_seconds() == 21600 and cfg.backup.retention == 3
    assert load_config("spec: {}\n", host_address="10.0.0.1").backup is None
    for text, where in [("spec:\n  backup: {schedule: 6h}\n", "spec.backup.directory"),
                        ("spec:\n  backup: {schedule: 6h, directory: rel}\n", "spec.backup.directory"),
                        ("spec:\n  backup: {schedule: 6h, directory: /b, retention: 0}\n", "spec.backup.retention"),
                        ("spec:\n  backup: {schedule: soon, directory: /b}\n", "spec.backup.schedule"),
                        ("spec:\n  backup: {schedual: 6h, directory: /b}\n", "spec.backup.schedual")]:
        with pytest.raises(ConfigError) as e:
            load_config(text, host_address="10.0.0.1")
        assert e.value.path == where, text
