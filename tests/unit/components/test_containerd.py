"""kagent.components.containerd: config.toml v2/v3, hosts.toml mirrors, restart on change."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from types import MappingProxyType

import pytest

from kagent.components import containerd
from kagent.components.context import Role
from kagent.components.spec import OnChange, UnixSocketCheck, spec_hash
from tests.unit.components.cases import PATHS, ctx, default_config, overrides_config


def files(spec):
    return {f.path: f.data for f in spec.files}


@pytest.mark.parametrize("version,expected", [((1, 6), 2), ((1, 7), 2), ((2, 0), 3), ((2, 1), 3)])
def test_config_version_follows_containerd_version(version, expected):
    s = containerd.spec(ctx(Role.WORKER, config=overrides_config(), containerd_version=version))
    doc = tomllib.loads(files(s)[PATHS.containerd_config].decode())
    assert doc["version"] == expected
    assert doc["imports"] == ["/opt/kagent/containerd.d/*.toml"]
    if expected == 2:
        cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["sandbox_image"] == "registry.example.com:5000/pause:3.10"
        hosts = cri["registry"]["config_path"]
    else:
        images = doc["plugins"]["io.containerd.cri.v1.images"]
        assert images["pinned_images"]["sandbox"] == "registry.example.com:5000/pause:3.10"
        hosts = images["registry"]["config_path"]
    assert doc["plugins"]["io.containerd.internal.v1.opt"]["path"] == "/opt/kagent/containerd"  # extraConfig
    docker = tomllib.loads(files(s)[PATHS.run_dir / "containerd-hosts" / hosts.rsplit("/", 1)[1] / "docker.io" / "hosts.toml"].decode())
    assert docker["server"] == "https://registry-1.docker.io"
    assert list(docker["host"]) == ["https://mirror.example.com", "https://mirror2.example.com"]


def test_defaults_use_imports_dir_under_config_dir_and_pinned_pause():
    s = containerd.spec(ctx(Role.WORKER))
    doc = tomllib.loads(files(s)[PATHS.containerd_config].decode())
    assert doc["imports"] == [str(PATHS.containerd_imports_dir / "*.toml")]
    from kagent import versions

    assert doc["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == versions.PAUSE_IMAGE
    assert s.health == UnixSocketCheck(path=PATHS.containerd_sock)
    assert s.on_change == OnChange.RESTART


def test_changed_mirror_changes_hash_and_hosts_dir():
    cfg = default_config()
    a = containerd.spec(ctx(Role.WORKER, config=replace(cfg, containerd=replace(cfg.containerd, registry_mirrors=MappingProxyType({"docker.io": ("https://a.example",)})))))
    b = containerd.spec(ctx(Role.WORKER, config=replace(cfg, containerd=replace(cfg.containerd, registry_mirrors=MappingProxyType({"docker.io": ("https://b.example",)})))))
    assert spec_hash(a) != spec_hash(b)
    dirs_a = {f.path.parent.parent for f in a.files if f.path.name == "hosts.toml"}
    dirs_b = {f.path.parent.parent for f in b.files if f.path.name == "hosts.toml"}
    assert dirs_a.isdisjoint(dirs_b)  # a removed mirror cannot linger in a stale hosts.toml


def test_unrelated_options_do_not_change_containerd():
    assert spec_hash(containerd.spec(ctx(Role.WORKER))) == spec_hash(containerd.spec(ctx(Role.WORKER, labels=("a=b",))))


def test_drop_ins_are_part_of_the_spec_hash_and_the_hosts_dir_supersedes_its_siblings():
    from dataclasses import replace as dc_replace

    base = ctx(Role.WORKER)
    plain = containerd.spec(base)
    with_dropin = containerd.spec(dc_replace(base, options=dc_replace(base.options, containerd_dropins=(("/etc/kagent/containerd.d/a.toml", "1" * 64),))))
    changed = containerd.spec(dc_replace(base, options=dc_replace(base.options, containerd_dropins=(("/etc/kagent/containerd.d/a.toml", "2" * 64),))))
    assert len({spec_hash(plain), spec_hash(with_dropin), spec_hash(changed)}) == 3
    hosts_dir = tomllib.loads(files(plain)[PATHS.containerd_config].decode())["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"]
    assert plain.prune_siblings_of == (containerd.Path(hosts_dir),)
