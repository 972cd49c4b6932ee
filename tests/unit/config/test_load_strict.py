"""Config that cannot run is refused at load (exit 3 with the dotted path), not later as a crash
loop: IP-only fields, YAML 1.1 number traps, spec.containerd.extraConfig as TOML."""

from __future__ import annotations

import tomllib

import pytest

from kagent.config.load import load_config
from kagent.errors import ConfigError


def load(text: str):
    return load_config(text, host_address="10.0.0.5")


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load(text)
    return exc.value


# ---- fields that end up in argv as IPs ----------------------------------------------------

@pytest.mark.parametrize("text, path", [
    ("spec:\n  api:\n    address: api.example.com\n", "spec.api.address"),
    ("spec:\n  storage:\n    etcd:\n      peerAddress: etcd-1.example.com\n", "spec.storage.etcd.peerAddress"),
    ("spec:\n  api:\n    address: localhost\n", "spec.api.address"),
])
def test_ip_only_fields_refuse_names(text: str, path: str) -> None:
    err = refused(text)
    assert err.path == path
    assert "is not an IP address" in err.what and err.hint


def test_ip_fields_accept_and_normalise_ips() -> None:
    cfg = load("spec:\n  api:\n    address: 'fd00::0:5'\n  storage:\n    etcd:\n      peerAddress: 10.0.0.6\n")
    assert (cfg.api.address, cfg.storage.etcd.peer_address) == ("fd00::5", "10.0.0.6")


def test_external_address_and_sans_may_be_names() -> None:
    cfg = load("spec:\n  api:\n    externalAddress: api.example.com\n    sans: [k8s.example.com, 10.0.0.9]\n")
    assert cfg.api.external_address == "api.example.com" and cfg.api.sans == ("k8s.example.com", "10.0.0.9")


# ---- YAML 1.1 number traps ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["02370", "1:30:00", "0b101", "1_000", "0700"])
def test_number_traps_in_a_port_are_refused_not_converted(value: str) -> None:
    err = refused(f"spec:\n  api:\n    port: {value}\n")
    assert err.path == "spec.api.port"
    assert err.what == f"'{value}' is a string, expected a TCP port number (1-65535)"


@pytest.mark.parametrize("value", ["02370", "1:30:00", "0644"])
def test_number_traps_in_string_fields_are_read_as_written(value: str) -> None:
    cfg = load(f"spec:\n  api:\n    extraArgs:\n      v: {value}\n  workerProfiles:\n  - name: p\n    values:\n      x: {value}\n")
    assert cfg.api.extra_args["v"] == value
    assert cfg.worker_profiles[0].values["x"] == value


def test_a_sexagesimal_duration_is_refused() -> None:
    err = refused("spec:\n  pki:\n    renewBefore: 1:30:00\n")
    assert err.path == "spec.pki.renewBefore" and err.what == "'1:30:00' is not a duration"


@pytest.mark.parametrize("text, value", [("6443", 6443), ("0x1F", 31), ("-5", -5), ("0", 0), ("1.5", 1.5), ("1e3", 1000.0)])
def test_plain_numbers_still_are_numbers(text: str, value: object) -> None:
    cfg = load(f"spec:\n  workerProfiles:\n  - name: p\n    values:\n      x: {text}\n")
    assert cfg.worker_profiles[0].values["x"] == value


# ---- spec.containerd.extraConfig --------------------------------------------------------------

def extra(toml: str) -> str:
    body = "".join(f"      {line}\n" for line in toml.splitlines())
    return f"spec:\n  containerd:\n    extraConfig: |\n{body}"


@pytest.mark.parametrize("toml, what", [
    ('[plugins."x"\n', "is not valid TOML: "),
    ("oom_score = \n", "is not valid TOML: "),
    ('a = "1"\na = "2"\n', "is not valid TOML: "),
    ("version = 3\n", "sets 'version', which kagent renders"),
    ('imports = ["/x"]\n', "sets 'imports', which kagent renders"),
    ('[plugins."io.containerd.grpc.v1.cri"]\n  enable_selinux = true\n',
     'sets keys in [plugins."io.containerd.grpc.v1.cri"], a table kagent renders (config version 2)'),
    ('[plugins."io.containerd.grpc.v1.cri".registry]\n',
     'declares [plugins."io.containerd.grpc.v1.cri".registry], a table kagent renders (config version 2)'),
    ('[plugins]\n"io.containerd.cri.v1.images".registry.config_path = "/x"\n',
     'sets keys in [plugins."io.containerd.cri.v1.images".registry], a table kagent renders (config version 3)'),
    ('[plugins."io.containerd.grpc.v1.cri"]\n  registry = { config_path = "/x" }\n',
     'declares [plugins."io.containerd.grpc.v1.cri"], a table kagent renders (config version 2)'),
])
def test_bad_extra_config_is_refused(toml: str, what: str) -> None:
    err = refused(extra(toml))
    assert err.path == "spec.containerd.extraConfig"
    assert err.what.startswith(what), err.what
    assert err.hint


@pytest.mark.parametrize("toml", [
    'oom_score = -999\ndisabled_plugins = ["io.containerd.internal.v1.tracing"]\n',
    '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "native"\n',
    '[plugins."io.containerd.internal.v1.opt"]\n  path = "/srv/opt"\n',
    '[plugins."io.containerd.cri.v1.runtime"]\n  enable_cdi = true\n',
])
@pytest.mark.parametrize("version", [(1, 7), (2, 1)])
def test_good_extra_config_renders_a_valid_file_where_it_means_it(toml: str, version: tuple[int, int]) -> None:
    from kagent.components import containerd
    from kagent.components.context import Role
    from tests.unit.components.cases import PATHS, ctx

    cfg = load(extra(toml))
    spec = containerd.spec(ctx(Role.WORKER, config=cfg, containerd_version=version))
    rendered = tomllib.loads(next(f.data for f in spec.files if f.path == PATHS.containerd_config).decode())
    wanted = tomllib.loads(toml)
    for key, value in wanted.items():  # top-level keys stay top-level; tables keep their keys
        if isinstance(value, dict):
            for sub, inner in value.items():
                assert all(rendered[key][sub][k] == v for k, v in inner.items())
        else:
            assert rendered[key] == value
