"""kagent.components.common: argv precedence defaults < derived < extraArgs < forced < rawArgs."""

from __future__ import annotations

from types import MappingProxyType

from kagent.components import specs_for
from kagent.components.common import assemble, flag_value, url_host
from kagent.config.model import ComponentOverrides
from dataclasses import replace
from tests.unit.components.cases import ctx, default_config


def test_extra_args_override_is_reported_and_raw_comes_last():
    args, notes = assemble({"b": "1", "a": "2"}, extra={"a": "9", "c": "3"}, extra_source="spec.x.extraArgs", raw=("--z=0", "--a=raw"))
    assert args == ("--a=9", "--b=1", "--c=3", "--z=0", "--a=raw")
    assert notes == ("spec.x.extraArgs overrides --a (default '2', now '9')",)


def test_extra_equal_to_default_is_not_an_override():
    _, notes = assemble({"a": "1"}, extra={"a": "1"})
    assert notes == ()


def test_forced_beats_extra_and_says_why():
    args, notes = assemble({"leader-elect": "true"}, extra={"leader-elect": "true"}, extra_source="E",
                           forced={"leader-elect": "false"}, forced_reason="single controller")
    assert args == ("--leader-elect=false",)
    assert notes == ("E sets --leader-elect='true', ignored: single controller",)


def test_flag_value_takes_the_last_occurrence():
    assert flag_value(("--p=1", "--q=2", "--p=3"), "p", "0") == "3"
    assert flag_value(("--q=2",), "p", "0") == "0"


def test_url_host_brackets_ipv6():
    assert url_host("fd00::1") == "[fd00::1]"
    assert url_host("10.0.0.1") == "10.0.0.1"
    assert url_host("etcd.example.com") == "etcd.example.com"


def test_scheduler_extra_args_cannot_turn_leader_election_on_for_single():
    cfg = replace(default_config(), scheduler=ComponentOverrides(extra_args=MappingProxyType({"leader-elect": "true"}), raw_args=("--x=1",)))
    sched = {s.name: s for s in specs_for(ctx(config=cfg, single=True))}["kube-scheduler"]
    assert "--leader-elect=false" in sched.args
    assert sched.args[-1] == "--x=1"
    assert any("ignored" in n and "leader-elect" in n for n in sched.notes)


def test_apiserver_extra_args_override_reported_in_notes():
    cfg = replace(default_config(), api=replace(default_config().api, extra_args=MappingProxyType({"v": "5", "secure-port": "7000"})))
    api = {s.name: s for s in specs_for(ctx(config=cfg))}["kube-apiserver"]
    assert "--v=5" in api.args and "--v=1" not in api.args
    assert any(n.startswith("spec.api.extraArgs overrides --v ") for n in api.notes)
    # the health check follows the port the apiserver really listens on
    assert api.health.url == "https://localhost:7000/readyz"
