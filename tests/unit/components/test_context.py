"""kagent.components.context: Context helpers and the run-flag parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagent.components.context import (
    Taint,
    go_arch,
    parse_kubelet_extra_args,
    parse_labels,
    parse_taints,
    pick_resolv_conf,
)
from kagent.components.context import Role
from kagent.errors import UsageError
from tests.unit.components.cases import PATHS, ctx


def test_binary_prefers_the_resolved_path():
    assert ctx().binary("etcd") == PATHS.bin_dir / "etcd"
    assert ctx(bins={"etcd": Path("/usr/bin/etcd")}).binary("etcd") == Path("/usr/bin/etcd")


def test_single_means_kine_worker_and_no_konnectivity():
    c = ctx(single=True)
    assert c.storage == "kine" and c.runs_worker and not c.konnectivity and c.single_controller
    assert not ctx().single_controller and ctx(Role.WORKER).runs_worker


def test_parse_labels():
    assert parse_labels("a=b, example.com/x=y") == ("a=b", "example.com/x=y")
    assert parse_labels(None) == ()
    with pytest.raises(UsageError, match="not a label"):
        parse_labels("novalue")
    with pytest.raises(UsageError):
        parse_labels("a=b c")


def test_parse_taints():
    assert parse_taints("k=v:NoSchedule,k2:NoExecute") == (Taint(key="k", value="v", effect="NoSchedule"),
                                                            Taint(key="k2", effect="NoExecute"))
    with pytest.raises(UsageError, match="taint"):
        parse_taints("k=v:Sometimes")
    with pytest.raises(UsageError):
        parse_taints("k=v")


def test_parse_kubelet_extra_args():
    assert parse_kubelet_extra_args('--max-pods=50 --v 2 --fail-swap-on --node-ip="10.0.0.1"') == (
        ("max-pods", "50"), ("v", "2"), ("fail-swap-on", "true"), ("node-ip", "10.0.0.1"))
    assert parse_kubelet_extra_args("--eviction-hard=memory.available<100Mi--x") == (("eviction-hard", "memory.available<100Mi--x"),)
    with pytest.raises(UsageError, match="not a --flag"):
        parse_kubelet_extra_args("max-pods=5")


def test_pick_resolv_conf_and_go_arch():
    assert pick_resolv_conf("nameserver 127.0.0.53\noptions edns0\n") == Path("/run/systemd/resolve/resolv.conf")
    assert pick_resolv_conf("nameserver 1.1.1.1\n") == Path("/etc/resolv.conf")
    assert pick_resolv_conf(None) == Path("/etc/resolv.conf")
    assert go_arch("x86_64") == "amd64" and go_arch("aarch64") == "arm64" and go_arch("riscv64") == "riscv64"


def test_build_from_a_run_request():
    from types import SimpleNamespace

    from kagent.components.context import Detected, build
    from tests.unit.components.cases import FACTS, default_config

    req = SimpleNamespace(role="controller", enable_worker=False, single=True, disabled=frozenset({"kube-scheduler"}),
                          labels=(("a", "b"),), taints=("k=v:NoExecute",), no_taints=False, profile="default",
                          kubelet_extra_args=(("v", "2"),))
    det = Detected(bins={"etcd": Path("/usr/bin/etcd")}, containerd_version=(2, 0), etcd_version=(3, 4), arch="arm64")
    c = build(config=default_config(), paths=PATHS, facts=FACTS, req=req, detected=det)
    assert c.role == Role.CONTROLLER and c.options.single and c.options.enable_worker
    assert c.options.labels == ("a=b",)
    assert c.options.taints == (Taint(key="k", value="v", effect="NoExecute"),)
    assert c.options.containerd_version == (2, 0) and c.options.etcd_version == (3, 4) and c.options.arch == "arm64"
    assert c.binary("etcd") == Path("/usr/bin/etcd") and not c.options.join
