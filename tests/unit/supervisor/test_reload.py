from pathlib import Path

import pytest

from kagent.components.spec import ComponentSpec, FileSpec, OnChange, TcpCheck
from kagent.errors import ConfigError
from kagent.supervisor.order import dependents, start_order
from kagent.supervisor.reload import diff


def spec(name: str, *args: str, **kw) -> ComponentSpec:
    return ComponentSpec(name=name, binary=Path("/bin/sleep"), args=args, **kw)


def names(specs) -> list[str]:
    return [s.name for s in specs]


def test_start_order_puts_dependencies_first_and_keeps_ties_stable():
    specs = [spec("kubelet", after=("containerd",)), spec("api", after=("etcd",)), spec("etcd"), spec("containerd")]
    assert names(start_order(specs)) == ["containerd", "kubelet", "etcd", "api"]


def test_start_order_names_a_cycle():
    with pytest.raises(ConfigError, match=r"dependency cycle: a -> b -> a"):
        start_order([spec("a", after=("b",)), spec("b", after=("a",))])


def test_unknown_dependency_and_duplicate_names_are_config_errors():
    with pytest.raises(ConfigError, match="'etcd' is not a component of this node") as e:
        start_order([spec("api", after=("etcd",))])
    assert e.value.path == "components.api.after"
    with pytest.raises(ConfigError, match="two components are named 'a'"):
        start_order([spec("a"), spec("a")])


def test_dependents():
    assert dependents([spec("a"), spec("b", after=("a",)), spec("c", after=("a",))]) == {"a": ("b", "c"), "b": (), "c": ()}


def test_diff_sorts_every_component_into_one_action():
    old = [spec("same"), spec("args", "1"), spec("gone"), spec("health"),
           spec("sig", on_change=OnChange.SIGNAL, files=(FileSpec(path=Path("/x"), data=b"1"),)),
           spec("sigargs", "1", on_change=OnChange.SIGNAL)]
    new = [spec("same"), spec("args", "2"), spec("health", health=TcpCheck(host="h", port=1)),
           spec("sig", on_change=OnChange.SIGNAL, files=(FileSpec(path=Path("/x"), data=b"2"),)),
           spec("sigargs", "2", on_change=OnChange.SIGNAL), spec("new")]
    plan = diff(old, new)
    assert plan.unchanged == ("same",)
    assert plan.restart == ("args", "sigargs")  # an argv change cannot be applied by a signal
    assert plan.signal == ("sig",)
    assert plan.update == ("health",)
    assert plan.added == ("new",) and plan.removed == ("gone",)
    assert not plan.is_noop
    assert diff(new, new).is_noop


def test_a_file_change_restarts_a_restart_component():
    old = [spec("a", files=(FileSpec(path=Path("/x"), data=b"1"),))]
    new = [spec("a", files=(FileSpec(path=Path("/x"), data=b"2"),))]
    assert diff(old, new).restart == ("a",)


def test_needing_is_the_names_and_everything_that_needs_them_in_start_order():
    from kagent.supervisor.order import needing

    specs = start_order([spec("etcd"), spec("control-api", after=("etcd",)), spec("containerd"),
                         spec("kube-apiserver", after=("etcd",)), spec("kube-scheduler", after=("kube-apiserver",)),
                         spec("kubelet", after=("containerd",))])
    assert needing(specs, ["etcd"]) == ("etcd", "control-api", "kube-apiserver", "kube-scheduler")
    assert needing(specs, ["containerd"]) == ("containerd", "kubelet")
    assert needing(specs, ["nothing-of-that-name"]) == ()
