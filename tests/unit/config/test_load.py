"""The config loader: properties under hypothesis (anything in, only ConfigError out; dump and
reload gives the same config) and a few exact behaviours."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagent.config.load import dump_config, format_duration, load_config, parse_duration
from kagent.config.model import API_VERSION, K0S_API_VERSION, StorageType
from kagent.errors import ConfigError, ExitCode

HOST = "10.0.0.5"
FAST = settings(max_examples=int(__import__("os").environ.get("KAGENT_HYPOTHESIS_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every key the loader knows, so random documents hit real sections as well as unknown ones
KEYS = ["apiVersion", "kind", "metadata", "name", "spec", "api", "address", "port", "controlApiPort", "k0sApiPort", "sans",
        "externalAddress", "extraArgs", "rawArgs", "storage", "type", "etcd", "peerAddress", "clientPort", "peerPort", "kine",
        "dataSource", "network", "podCIDR", "serviceCIDR", "clusterDomain", "konnectivity", "agentPort", "adminPort",
        "controllerManager", "scheduler", "pki", "keyAlgorithm", "caExpiresAfter", "certificatesExpireAfter", "renewBefore",
        "containerd", "registryMirrors", "importsDir", "extraConfig", "sandboxImage", "workerProfiles", "values", "ca",
        "expiresAfter", "telemetry", "externalCluster"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["6443", "10.0.0.0/8", "10.96.0.0/12", "fd00::/64", "8760h", "1h30m", "0s", "-1h", "etcd", "kine",
                     "rsa-2048", "ecdsa-p256", API_VERSION, K0S_API_VERSION, "ClusterConfig", "https://m.example",
                     "/etc/x", "a.b", "2001-13-45", "~", "", "1e400h"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(), st.booleans())
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
                         max_leaves=30)


def skeleton() -> dict:
    return yaml.safe_load(dump_config(load_config(None, host_address=HOST)))


def set_path(doc: dict, path: tuple[str, ...], value: object) -> dict:
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node.get(k), dict) or k not in node else node[k]
    node[path[-1]] = value
    return doc


def leaf_paths(doc: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(doc, dict) and doc:
        return [p for k, v in doc.items() for p in leaf_paths(v, (*prefix, k))] + ([prefix] if prefix else [])
    return [prefix]


PATHS = sorted(set(leaf_paths(skeleton())) | {("spec", "api", "externalAddress"), ("spec", "containerd", "importsDir"),
                                              ("spec", "storage", "kine", "dataSource"), ("spec", "api", "k0sApiPort")})


def only_config_errors(text: str) -> None:
    try:
        load_config(text, host_address=HOST)
    except ConfigError as err:
        assert err.exit_code is ExitCode.CONFIG
        assert err.render().startswith("error: config")


@FAST
@given(st.text(max_size=200))
def test_random_text_raises_only_config_error(text: str) -> None:
    only_config_errors(text)


@FAST
@given(documents)
def test_random_yaml_documents_raise_only_config_error(doc: object) -> None:
    only_config_errors(yaml.safe_dump(doc))


@FAST
@given(documents, st.booleans())
def test_random_spec_sections_raise_only_config_error(spec: object, k0s: bool) -> None:
    only_config_errors(yaml.safe_dump({"apiVersion": K0S_API_VERSION if k0s else API_VERSION, "spec": spec}))


@FAST
@given(st.sampled_from(PATHS), documents)
def test_random_field_values_raise_only_config_error(path: tuple[str, ...], value: object) -> None:
    only_config_errors(yaml.safe_dump(set_path(skeleton(), path, value)))


@FAST
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#%@` \n\tab1?")), max_size=60))
def test_yaml_syntax_soup_raises_only_config_error(text: str) -> None:
    only_config_errors(text)


@FAST
@given(st.data())
def test_mutated_default_config_raises_only_config_error(data: st.DataObject) -> None:
    text = dump_config(load_config(None, host_address=HOST))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        text = text[:i] + data.draw(st.text(max_size=5)) + text[i + data.draw(st.integers(0, 5)):]
    only_config_errors(text)


RAW = st.one_of(
    st.sampled_from(["2001-13-45", "2024-02-30 10:00:00", "0x1F", "0o17", "1_000", ".inf", "-.nan", "!!binary AAAA",
                     "!!set {a, b}", "!!int abc", "!!float x", "!!timestamp nope", "!!bool maybe", "!!null x", "!!str",
                     "!!map [a]", "!!seq {a: b}", "!!omap [a]", "!!pairs {a: 1}", "!!binary ===", "&a x", "*a", "{a: *a}", "[1, [2, [3]]]",
                     "!!python/name:os.system", "|\n      text", "'unterminated", "{a: 1, a: 2}", "? [a]\n      : b"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=30),
)


@FAST
@given(st.sampled_from(PATHS), RAW)
def test_raw_scalar_text_in_any_field_raises_only_config_error(path: tuple[str, ...], raw: str) -> None:
    # written as text, not dumped, so tags, dates and aliases reach the YAML constructors as is
    lines = [f"{'  ' * i}{k}:" for i, k in enumerate(path[:-1])]
    lines.append(f"{'  ' * (len(path) - 1)}{path[-1]}: {raw}")
    only_config_errors("\n".join(lines) + "\n")


# ---- round trip: valid configs ------------------------------------------------------------

ports = st.integers(1, 65535)
units = st.sampled_from(["h", "m", "s", "ms", "us", "d"])
durations = st.lists(st.tuples(st.integers(1, 5000), units), min_size=1, max_size=3).map(lambda parts: "".join(f"{n}{u}" for n, u in parts))
arg_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z")
arg_maps = st.dictionaries(arg_names, st.text(max_size=12), max_size=3)
str_lists = st.lists(st.text(max_size=12), max_size=3)
ipv4 = st.ip_addresses(v=4).map(str)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                     st.floats(allow_nan=False)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict:
    api_port, control_port = draw(st.lists(ports, min_size=2, max_size=2, unique=True))
    client_port, peer_port = draw(st.lists(ports, min_size=2, max_size=2, unique=True))
    agent_port, admin_port = draw(st.lists(ports, min_size=2, max_size=2, unique=True))
    spec: dict = {
        "api": {"address": draw(ipv4), "port": api_port, "controlApiPort": control_port, "sans": draw(st.lists(ipv4, max_size=2)),
                "extraArgs": draw(arg_maps), "rawArgs": draw(str_lists)},
        "storage": {"type": draw(st.sampled_from(["etcd", "kine"])),
                    "etcd": {"clientPort": client_port, "peerPort": peer_port, "extraArgs": draw(arg_maps)},
                    "kine": {"rawArgs": draw(str_lists)}},
        "network": {"podCIDR": draw(st.sampled_from(["10.244.0.0/16", "192.168.0.0/16", "fd00:10:244::/56"])),
                    "serviceCIDR": draw(st.sampled_from(["10.96.0.0/12", "172.16.0.0/16", "fd00:10:96::/108"])),
                    "clusterDomain": draw(st.sampled_from(["cluster.local", "k8s.example.com"]))},
        "konnectivity": {"agentPort": agent_port, "adminPort": admin_port},
        "scheduler": {"extraArgs": draw(arg_maps)},
        "controllerManager": {"rawArgs": draw(str_lists)},
        "pki": {"keyAlgorithm": draw(st.sampled_from(["rsa-2048", "ecdsa-p256"])), "renewBefore": draw(durations)},
        "containerd": {"registryMirrors": draw(st.dictionaries(st.sampled_from(["docker.io", "quay.io", "r.example:5000"]),
                                                               st.lists(st.sampled_from(["https://m1.example", "http://10.0.0.9:5000"]), min_size=1, max_size=2),
                                                               max_size=2)),
                       "extraConfig": draw(st.sampled_from(["", "oom_score = -999\n", '[plugins."io.containerd.internal.v1.opt"]\n  path = "/x"\n',
                                                            '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "native"\n']))},
        "workerProfiles": [{"name": n, "values": draw(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3))}
                           for n in draw(st.lists(st.sampled_from(["default", "gpu", "small-1"]), unique=True, max_size=2))],
    }
    if draw(st.booleans()):
        spec["api"]["externalAddress"] = draw(st.sampled_from(["api.example.com", "203.0.113.7"]))
    if draw(st.booleans()):
        spec["storage"]["kine"]["dataSource"] = draw(st.sampled_from(["sqlite:///var/lib/x/state.db", "postgres://u:p@db/k"]))
    return {"apiVersion": API_VERSION, "kind": "ClusterConfig", "metadata": {"name": draw(st.sampled_from(["kagent", "prod"]))}, "spec": spec}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_dump_then_load_gives_an_equal_config(doc: dict) -> None:
    try:
        cfg = load_config(yaml.safe_dump(doc), host_address=HOST)
    except ConfigError as err:  # e.g. overlapping CIDRs or renewBefore too long: a valid refusal
        assert err.exit_code is ExitCode.CONFIG
        return
    again = load_config(dump_config(cfg), host_address="192.0.2.1")  # the address is in the dump, not re-derived
    assert again == cfg
    assert dump_config(again) == dump_config(cfg)


def test_k0s_config_round_trips_as_a_kagent_config() -> None:
    text = ("apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  api: {k0sApiPort: 9555}\n"
            "  telemetry: {enabled: true}\n")
    cfg = load_config(text, host_address=HOST)
    assert cfg.warnings == ("spec.telemetry: k0s setting not used by kagent, ignored",)
    again = load_config(dump_config(cfg), host_address=HOST)
    assert again == dataclasses.replace(cfg, api_version=API_VERSION, warnings=())
    assert again.api.control_api_port == 9555


# ---- exact behaviours ---------------------------------------------------------------------


def test_defaults_use_the_host_address() -> None:
    cfg = load_config(None, host_address="192.0.2.44")
    assert cfg.api.address == cfg.storage.etcd.peer_address == "192.0.2.44"
    assert (cfg.api.port, cfg.api.control_api_port, cfg.storage.etcd.client_port, cfg.storage.etcd.peer_port) == (6443, 9443, 2379, 2380)
    assert cfg.storage.type is StorageType.ETCD
    assert cfg.pki.renew_before == timedelta(days=30)


@pytest.mark.parametrize(("text", "delta"), [
    ("8760h", timedelta(hours=8760)), ("87600h0m0s", timedelta(hours=87600)), ("1h30m", timedelta(minutes=90)),
    ("500ms", timedelta(milliseconds=500)), ("30d", timedelta(days=30)), ("1.5h", timedelta(minutes=90)),
    ("2us", timedelta(microseconds=2)), ("1500ns", timedelta(microseconds=2)),
])
def test_parse_duration(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "10", "h", "10y", "1h 30m", "-1h", "1h-", "99999999999999999999999h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "spec.pki.renewBefore")


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**6)))
def test_format_duration_round_trips(d: timedelta) -> None:
    assert parse_duration(format_duration(d)) == d


def test_dates_stay_text_in_worker_profiles() -> None:
    cfg = load_config("spec:\n  workerProfiles:\n  - name: a\n    values: {since: 2024-01-02}\n", host_address=HOST)
    assert cfg.worker_profile("a").values["since"] == "2024-01-02"  # type: ignore[union-attr]


def test_self_referencing_alias_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("spec:\n  workerProfiles:\n  - name: a\n    values: &x {k: *x}\n", host_address=HOST)
    assert err.value.path == "spec.workerProfiles[0].values.k"


def test_alias_bomb_is_a_config_error() -> None:
    # seven levels of ten aliases each: 10^7 values if expanded; the loader stops at its bound
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    text = "spec:\n  workerProfiles:\n  - name: a\n    values:\n" + "".join(f"      {line}\n" for line in lines)
    with pytest.raises(ConfigError) as err:
        load_config(text, host_address=HOST)
    assert err.value.what == "expands to more than 100000 values"
