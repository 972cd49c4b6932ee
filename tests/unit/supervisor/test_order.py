"""kagent.supervisor.order: the start order of specs and who needs whom."""

from pathlib import Path

import pytest

from kagent.components.spec import ComponentSpec
from kagent.errors import ConfigError
from kagent.supervisor.order import dependents, needing, start_order


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


def test_needing_is_the_names_and_everything_that_needs_them_in_start_order():
    specs = start_order([spec("etcd"), spec("control-api", after=("etcd",)), spec("containerd"),
                         spec("kube-apiserver", after=("etcd",)), spec("kube-scheduler", after=("kube-apiserver",)),
                         spec("kubelet", after=("containerd",))])
    assert needing(specs, ["etcd"]) == ("etcd", "control-api", "kube-apiserver", "kube-scheduler")
    assert needing(specs, ["containerd"]) == ("containerd", "kubelet")
    assert needing(specs, ["nothing-of-that-name"]) == ()
