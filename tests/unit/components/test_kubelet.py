"""kagent.components.kubelet: KubeletConfiguration from the worker profile, args, taints."""

from __future__ import annotations

import pytest
import yaml

from kagent.components import kubelet
from kagent.components.context import Role
from kagent.errors import UsageError
from tests.unit.components.cases import CA_PEM, PATHS, ctx, overrides_config


def config_of(spec):
    return yaml.safe_load({f.path: f.data for f in spec.files}[PATHS.kubelet_config])


def test_profile_values_merge_over_defaults_and_node_local_wins():
    s = kubelet.spec(ctx(Role.WORKER, config=overrides_config(), profile="big"))
    cfg = config_of(s)
    assert cfg["maxPods"] == 250 and cfg["clusterDNS"] == ["10.100.0.53"]
    assert cfg["authentication"] == {"anonymous": {"enabled": False}, "x509": {"clientCAFile": str(PATHS.kubelet_ca)}}
    assert cfg["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_sock}"
    assert cfg["failSwapOn"] is False and cfg["clusterDomain"] == "lab.local"
    assert s.health.url == "http://127.0.0.1:10348/healthz"
    modes = {f.path: f.mode for f in s.files}
    assert modes[PATHS.kubelet_config] == 0o600 and modes[PATHS.kubelet_ca] == 0o644
    assert {f.path: f.data for f in s.files}[PATHS.kubelet_ca] == CA_PEM


def test_default_profile_uses_k0s_defaults():
    cfg = config_of(kubelet.spec(ctx(Role.WORKER)))
    assert cfg["clusterDNS"] == ["10.96.0.10"]
    assert cfg["kind"] == "KubeletConfiguration"
    assert "registerWithTaints" not in cfg


def test_unknown_profile_is_a_usage_error_naming_known_ones():
    with pytest.raises(UsageError, match="'nope' is not in spec.workerProfiles \\(big\\)"):
        kubelet.spec(ctx(Role.WORKER, config=overrides_config(), profile="nope"))


def test_controller_worker_gets_control_plane_taint_unless_no_taints():
    assert config_of(kubelet.spec(ctx(enable_worker=True)))["registerWithTaints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert "registerWithTaints" not in config_of(kubelet.spec(ctx(enable_worker=True, no_taints=True)))


def test_worker_uses_kubelet_conf_and_controller_worker_the_direct_one():
    assert f"--kubeconfig={PATHS.kubelet_conf}" in kubelet.spec(ctx(Role.WORKER)).args
    s = kubelet.spec(ctx(enable_worker=True))
    assert f"--kubeconfig={PATHS.kubelet_direct_conf}" in s.args
    assert s.reads == (PATHS.kubelet_direct_conf,)


def test_extra_args_cannot_change_the_node_name():
    s = kubelet.spec(ctx(Role.WORKER, kubelet_extra_args=(("hostname-override", "x"), ("v", "4"))))
    assert "--hostname-override=node-1" in s.args and "--v=4" in s.args
    assert any("hostname-override" in n and "ignored" in n for n in s.notes)


def test_no_ca_file_spec_until_the_edge_knows_the_ca():
    s = kubelet.spec(ctx(Role.WORKER, cluster_ca=b""))
    assert [f.path for f in s.files] == [PATHS.kubelet_config]


@pytest.mark.parametrize("cidr,dns", [("10.96.0.0/12", "10.96.0.10"), ("10.0.0.0/29", "10.0.0.2")])
def test_cluster_dns(cidr, dns):
    assert kubelet.cluster_dns(cidr) == dns
