"""kagent.components: registries, specs_for per role/mode, start_order, --disable-components."""

from __future__ import annotations

import pytest

from kagent.components import (
    CONTROLLER_REGISTRY,
    NAMES,
    WORKER_REGISTRY,
    all_modules,
    module_of,
    CONTROLLER_COMPONENTS,
    WORKER_COMPONENTS,
    parse_disabled,
    specs_for,
    start_order,
)
from kagent.components.context import Role
from kagent.components.spec import ComponentSpec, spec_hash
from kagent.errors import UsageError
from tests.unit.components.cases import PATHS, ctx, overrides_config

MODES = {
    "controller": dict(role=Role.CONTROLLER),
    "controller+worker": dict(role=Role.CONTROLLER, enable_worker=True),
    "single": dict(role=Role.CONTROLLER, single=True),
    "worker": dict(role=Role.WORKER),
}
EXPECTED = {
    "controller": ["etcd", "control-api", "konnectivity-server", "kube-apiserver", "kube-scheduler", "kube-controller-manager"],
    "controller+worker": ["etcd", "control-api", "konnectivity-server", "kube-apiserver", "kube-scheduler", "kube-controller-manager",
                          "containerd", "kubelet"],
    "single": ["kine", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "containerd", "kubelet"],
    "worker": ["containerd", "kubelet"],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", ["default", "overrides"])
def test_every_component_yields_a_valid_spec(mode, config):
    kw = dict(MODES[mode])
    role = kw.pop("role")
    cfg = overrides_config() if config == "overrides" else None
    if cfg is not None:
        kw["profile"] = "big"
    specs = specs_for(ctx(role, config=cfg, **kw))
    assert [s.name for s in specs] == EXPECTED[mode]
    names = {s.name for s in specs}
    for s in specs:
        if s.name == "control-api":  # kagent itself: `kagent --data-dir=.. --run-dir=.. api --flags..`
            assert s.binary == PATHS.bin_dir.parent.parent.parent / "usr/local/bin/kagent" or s.binary.name == "kagent"
            assert s.args[2] == "api" and all(a.startswith("--") for a in s.args[:2] + s.args[3:])
        else:
            assert s.binary == PATHS.bin_dir / s.name
            assert s.args and all(a.startswith("--") for a in s.args), s.name
        assert s.health is not None, s.name
        assert set(s.after) <= names, f"{s.name} waits for a component that does not run"
        assert s.stop_timeout == (20.0 if s.name == "kube-apiserver" else 5.0)
        for f in s.files:
            assert f.path.is_absolute() and f.data
        for path in s.reads:
            assert path.is_relative_to(PATHS.data_dir) or path.is_relative_to(PATHS.run_dir)
        assert len(spec_hash(s)) == 64


def test_etcd_first_and_kubelet_after_containerd_and_apiserver():
    specs = specs_for(ctx(enable_worker=True))
    order = [s.name for s in specs]
    assert order[0] == "etcd"
    assert order.index("kubelet") > order.index("containerd")
    assert order.index("kubelet") > order.index("kube-apiserver")
    assert order.index("kube-apiserver") > order.index("konnectivity-server")
    assert dict((s.name, s.after) for s in specs)["kubelet"] == ("containerd", "kube-apiserver")


def test_specs_are_deterministic():
    a = [spec_hash(s) for s in specs_for(ctx(enable_worker=True))]
    b = [spec_hash(s) for s in specs_for(ctx(enable_worker=True))]
    assert a == b


def test_etcd_only_topology_drops_missing_dependencies():
    c = ctx(disabled=frozenset({"kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server"}))
    specs = specs_for(c)
    assert [s.name for s in specs] == ["etcd", "control-api"]
    assert specs[0].after == () and specs[1].after == ("etcd",)


def test_disabled_apiserver_prunes_dependents_after():
    specs = specs_for(ctx(disabled=frozenset({"kube-apiserver"})))
    by = {s.name: s for s in specs}
    assert "kube-apiserver" not in by
    assert by["kube-scheduler"].after == () and by["kube-controller-manager"].after == ()


def test_worker_with_kubelet_disabled_runs_containerd_alone():
    specs = specs_for(ctx(Role.WORKER, disabled=frozenset({"kubelet"})))
    assert [s.name for s in specs] == ["containerd"]


def test_single_mode_uses_kine_without_konnectivity_and_leader_election():
    specs = {s.name: s for s in specs_for(ctx(single=True))}
    assert "etcd" not in specs and "konnectivity-server" not in specs
    api = specs["kube-apiserver"]
    assert api.after == ("kine",)
    assert "--etcd-servers=unix:/run/kagent/kine/kine.sock" in api.args
    assert not any(a.startswith("--egress-selector-config-file") for a in api.args)
    assert "--api-audiences=https://kubernetes.default.svc" in api.args
    assert api.files == ()
    assert "--leader-elect=false" in specs["kube-scheduler"].args
    assert "--leader-elect=false" in specs["kube-controller-manager"].args
    # single: a worker too, but no control-plane taint
    assert b"registerWithTaints" not in specs["kubelet"].files[0].data


def test_start_order_is_stable_topological():
    a = ComponentSpec(name="a", binary=PATHS.bin_dir / "a", after=("c",))
    b = ComponentSpec(name="b", binary=PATHS.bin_dir / "b")
    c = ComponentSpec(name="c", binary=PATHS.bin_dir / "c", after=("b", "gone"))
    order = start_order([a, b, c])
    assert [s.name for s in order] == ["b", "c", "a"]
    assert order[1].after == ("b",)  # the missing "gone" is dropped


def test_start_order_detects_a_cycle():
    a = ComponentSpec(name="a", binary=PATHS.bin_dir / "a", after=("b",))
    b = ComponentSpec(name="b", binary=PATHS.bin_dir / "b", after=("a",))
    with pytest.raises(ValueError, match="cycle"):
        start_order([a, b])


def test_registry_has_no_cycle_with_every_component_forced_on():
    specs = [m.spec(ctx(enable_worker=True)) for m in all_modules()]
    assert len(start_order(specs)) == len(all_modules())


def test_each_registry_entry_names_its_module_and_roles():
    # the registry names modules without importing them: each name must be the module's NAME
    for name, _ in CONTROLLER_REGISTRY + WORKER_REGISTRY:
        mod = module_of(name)
        assert mod is not None and mod.NAME == name
    assert {n for n, _ in WORKER_REGISTRY} == set(WORKER_COMPONENTS)
    assert all(Role.WORKER in module_of(n).ROLES for n, _ in WORKER_REGISTRY)
    assert NAMES == tuple(m.NAME for m in all_modules())
    assert module_of("kube-proxy") is None


def test_importing_the_spec_module_loads_no_component_module_nor_the_config_loader():
    import ast
    import subprocess
    import sys

    code = ("import sys, kagent.components.spec, kagent.supervisor.manager; "
            "print(sorted(m for m in sys.modules if m.startswith(('kagent.components.', 'kagent.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out) == ["kagent.components.spec"]


def test_parse_disabled_accepts_valid_names():
    assert parse_disabled("kube-apiserver, kube-scheduler", Role.CONTROLLER) == {"kube-apiserver", "kube-scheduler"}
    assert parse_disabled("kubelet", Role.CONTROLLER, enable_worker=True) == {"kubelet"}
    assert parse_disabled("kubelet", Role.WORKER) == {"kubelet"}
    assert parse_disabled(None, Role.WORKER) == frozenset()
    assert set(CONTROLLER_COMPONENTS) >= {"control-api", "konnectivity-server"}
    assert set(WORKER_COMPONENTS) == {"containerd", "kubelet"}


@pytest.mark.parametrize("role,text,enable_worker", [
    (Role.CONTROLLER, "kube-apiserver,nope", False),
    (Role.CONTROLLER, "kubelet", False),
    (Role.WORKER, "kube-apiserver", False),
    (Role.WORKER, "etcd", False),
])
def test_parse_disabled_rejects_unknown_names_listing_valid_ones(role, text, enable_worker):
    with pytest.raises(UsageError) as err:
        parse_disabled(text, role, enable_worker=enable_worker)
    assert err.value.where == "--disable-components"
    assert "valid names:" in (err.value.hint or "")
    assert err.value.exit_code == 2
