"""Privilege separation as k0s: which component runs as which user (spec.install.users, the
configured names), and the ownership plan derived from the specs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kagent.components import specs_for
from kagent.components.context import Role
from kagent.components.ownership import FileOwner, plan_ownership
from kagent.components.spec import ComponentSpec
from kagent.config.load import load_config
from kagent.errors import ConfigError
from tests.unit.components.cases import PATHS, ctx

K8S = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server")


def _run_as(c) -> dict[str, str | None]:
    return {s.name: s.run_as for s in specs_for(c)}


def test_default_users_are_k0s_s_and_containerd_kubelet_stay_root() -> None:
    got = _run_as(ctx(Role.CONTROLLER, enable_worker=True))
    assert got == {"etcd": "etcd", "konnectivity-server": "konnectivity-server", "kube-apiserver": "kube-apiserver",
                   "kube-scheduler": "kube-scheduler", "kube-controller-manager": "kube-apiserver",
                   "containerd": None, "kubelet": None, "control-api": None}  # the controller API: root, as k0s


def test_configured_names_are_used_also_for_kine() -> None:
    cfg = load_config("spec:\n  install:\n    users: {etcdUser: e1, kineUser: k1, kubeAPIserverUser: a1,"
                      " kubeSchedulerUser: s1, konnectivityUser: n1}\n", host_address="10.0.0.5")
    assert _run_as(ctx(Role.CONTROLLER, config=cfg)) == {"etcd": "e1", "konnectivity-server": "n1", "kube-apiserver": "a1",
                                                         "kube-scheduler": "s1", "kube-controller-manager": "a1", "control-api": None}
    assert _run_as(ctx(Role.CONTROLLER, config=cfg, single=True))["kine"] == "k1"


def test_an_agent_that_is_not_root_runs_everything_as_itself() -> None:
    c = ctx(Role.CONTROLLER)
    c = replace(c, facts=replace(c.facts, uid=1000))
    assert set(_run_as(c).values()) == {None}


def test_plan_owns_dirs_and_private_files_of_each_user() -> None:
    plan = plan_ownership(specs_for(ctx(Role.CONTROLLER, enable_worker=True)))
    assert plan.users == ("etcd", "konnectivity-server", "kube-apiserver", "kube-scheduler")
    assert {(d.path, d.user) for d in plan.dirs} >= {(PATHS.etcd_data_dir, "etcd"), (PATHS.konnectivity_sock_dir, "konnectivity-server")}
    files = {f.path: f for f in plan.files}
    assert files[PATHS.etcd_pki("server.key")] == FileOwner(PATHS.etcd_pki("server.key"), "etcd")
    assert files[PATHS.pki("ca.key")] == FileOwner(PATHS.pki("ca.key"), "kube-apiserver")  # kube-controller-manager signs
    assert files[PATHS.pki("scheduler.conf")].user == "kube-scheduler" and files[PATHS.pki("scheduler.conf")].mode == 0o600
    # server.key: kube-apiserver and konnectivity-server -> owner + the other's group, 0640
    shared = files[PATHS.pki("server.key")]
    assert {shared.user, shared.group_of} == {"kube-apiserver", "konnectivity-server"} and shared.mode == 0o640
    assert not any(d.user in ("root",) for d in plan.dirs)
    etcd_binary = specs_for(ctx(Role.CONTROLLER))[0].binary
    assert ("etcd", "etcd", etcd_binary, "exec") in plan.reach and (etcd_binary, "etcd") in plan.binaries


def test_a_file_read_by_three_users_is_refused() -> None:
    f = Path("/x/shared.key")
    specs = [ComponentSpec(name=f"c{i}", binary=Path("/bin/true"), run_as=f"u{i}", reads=(f,)) for i in range(3)]
    with pytest.raises(ConfigError) as err:
        plan_ownership(specs)
    assert err.value.path == "spec.install.users" and "read by 3 different users" in err.value.what


def test_root_and_unset_users_need_nothing() -> None:
    specs = [ComponentSpec(name="a", binary=Path("/bin/true"), run_as="root", reads=(Path("/k"),)),
             ComponentSpec(name="b", binary=Path("/bin/true"), reads=(Path("/k"),), dirs=((Path("/d"), 0o700),))]
    plan = plan_ownership(specs)
    assert (plan.users, plan.dirs, plan.files, plan.reach) == ((), (), (), ())
