"""``kagent etcd member-list|leave`` outside a controller: exit 4 naming the data dir, nothing
written. (Against running controllers: tests/integration/join/test_controller_ha.py.)"""

from __future__ import annotations

import pytest

from tests.conftest import Dirs, run_kagent


@pytest.mark.parametrize("args", [("etcd", "member-list"), ("etcd", "member-list", "-o", "json"), ("etcd", "leave"),
                                  ("etcd", "leave", "--peer-address", "10.0.0.9")])
def test_without_a_controller_data_dir_it_is_exit_4_naming_it(kdirs: Dirs, args: tuple[str, ...]):
    r = run_kagent(*args, *kdirs.flags())
    assert r.returncode == 4, r.stderr
    assert f"error: {kdirs.data}: holds no etcd PKI" in r.stderr and "hint:" in r.stderr
    assert not kdirs.data.exists() and not kdirs.run.exists()


def test_help_lists_both_subcommands():
    r = run_kagent("etcd", "--help")
    assert r.returncode == 0 and "member-list" in r.stdout and "leave" in r.stdout
