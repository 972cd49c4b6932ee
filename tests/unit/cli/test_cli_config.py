"""``kagent config create | validate`` through the CLI: the golden default config, the exact
error lines for bad files, k0s files, and nothing written anywhere for a bad config."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagent.config.load import dump_config, load_config
from kagent.node.facts import gather
from tests.conftest import TESTS, run_kagent

GOLDEN = TESTS / "golden" / "config-create.yaml"
GOLDEN_ADDRESS = "10.0.0.5"


def test_config_create_golden_via_the_pure_api() -> None:
    assert dump_config(load_config(None, host_address=GOLDEN_ADDRESS)) == GOLDEN.read_text()


def test_config_create_cli_prints_the_golden_with_this_hosts_address() -> None:
    r = run_kagent("config", "create")
    assert r.returncode == 0, r.stderr
    address = gather().default_address
    expected = GOLDEN.read_text().replace(f"address: {GOLDEN_ADDRESS}\n", f"address: {address}\n") \
        .replace(f"peerAddress: {GOLDEN_ADDRESS}\n", f"peerAddress: {address}\n")
    assert r.stdout == expected
    assert r.stderr == ""


def test_config_create_output_validates(tmp_path: Path) -> None:
    r = run_kagent("config", "create")
    cfg = tmp_path / "kagent.yaml"
    cfg.write_text(r.stdout)
    v = run_kagent("-c", str(cfg), "config", "validate")
    assert (v.returncode, v.stdout, v.stderr) == (0, f"{cfg}: valid\n", "")


# (case id, file text, expected first stderr line after "error: config ", expected hint or None)
# ``{f}`` stands for the file's absolute path.
BAD = [
    ("not-yaml", "spec: [unclosed\n", "line 2, column 1: {f} is not valid YAML: expected ',' or ']', but got '<stream end>'", None),
    ("tab-indent", "spec:\n\tapi: {}\n", "line 2, column 1: {f} is not valid YAML: found character '\\t' that cannot start any token", None),
    ("empty", "", "(document): {f} is empty", "run `kagent config create` for a complete example"),
    ("only-comments", "# nothing here\n\n", "(document): {f} is empty", "run `kagent config create` for a complete example"),
    ("a-list", "- a\n- b\n", "(document): expected a ClusterConfig mapping, got a list", "run `kagent config create` for a complete example"),
    ("a-string", "hello\n", "(document): expected a ClusterConfig mapping, got a string", "run `kagent config create` for a complete example"),
    ("two-documents", "spec: {}\n---\nspec: {}\n", "(document): {f} holds 2 YAML documents, expected one ClusterConfig", None),
    ("unknown-field", "spec:\n  api:\n    prot: 6443\n", "spec.api.prot: unknown field",
     "fields allowed in spec.api: address, controlApiPort, externalAddress, extraArgs, port, rawArgs, sans"),
    ("unknown-top-level", "spce: {}\n", "spce: unknown field", "fields allowed in the document: apiVersion, kind, metadata, spec"),
    ("duplicate-key", "spec:\n  api:\n    port: 6443\n    port: 7443\n", "line 4, column 5: {f} is not valid YAML: found duplicate key 'port'", None),
    ("port-70000", "spec:\n  api:\n    port: 70000\n", "spec.api.port: 70000 is not a TCP port (1-65535)", None),
    ("port-string", "spec:\n  storage:\n    etcd:\n      clientPort: \"2379\"\n",
     "spec.storage.etcd.clientPort: '2379' is a string, expected a TCP port number (1-65535)", None),
    ("same-api-ports", "spec:\n  api:\n    port: 9443\n", "spec.api.controlApiPort: 9443 is also spec.api.port",
     "give the controller API its own port (default 9443)"),
    ("bad-cidr", "spec:\n  network:\n    podCIDR: 10.244.0.1/16\n",
     "spec.network.podCIDR: '10.244.0.1/16' is not a CIDR (10.244.0.1/16 has host bits set)", "write a network such as 10.244.0.0/16 (host bits zero)"),
    ("overlapping-cidrs", "spec:\n  network:\n    podCIDR: 10.0.0.0/8\n",
     "spec.network.serviceCIDR: 10.96.0.0/12 overlaps spec.network.podCIDR 10.0.0.0/8", "pick disjoint ranges (defaults 10.244.0.0/16 and 10.96.0.0/12)"),
    ("bad-duration", "spec:\n  pki:\n    caExpiresAfter: 10y\n", "spec.pki.caExpiresAfter: '10y' is not a duration",
     'use a Go duration such as "8760h", "720h" or "30d"'),
    ("duration-not-string", "spec:\n  pki:\n    renewBefore: 720\n", "spec.pki.renewBefore: 720 is an integer, expected a duration string",
     'quote it, e.g. "8760h"'),
    ("extra-args-int", "spec:\n  api:\n    extraArgs:\n      v: 2\n", "spec.api.extraArgs.v: 2 is an integer, expected a string", 'quote the value: v: "2"'),
    ("extra-args-dashes", "spec:\n  scheduler:\n    extraArgs:\n      --v: \"2\"\n", "spec.scheduler.extraArgs.--v: '--v' is not a flag name",
     'write the flag without leading dashes, e.g. v: "2"'),
    ("api-version", "apiVersion: v1\nkind: ClusterConfig\n", "apiVersion: 'v1' is not supported",
     "use kagent.dev/v1beta1 (or a k0s k0s.k0sproject.io/v1beta1 file)"),
    ("kind", "kind: Pod\n", "kind: 'Pod' is not supported", "use kind: ClusterConfig"),
    ("storage-type", "spec:\n  storage:\n    type: mysql\n", "spec.storage.type: 'mysql' is not one of: etcd, kine", None),
    ("section-is-list", "spec:\n  network: [a]\n", "spec.network: expected a mapping, got a list", None),
    ("k0s-external-etcd", "apiVersion: k0s.k0sproject.io/v1beta1\nspec:\n  storage:\n    etcd:\n      externalCluster: {endpoints: [http://e:2379]}\n",
     "spec.storage.etcd.externalCluster: an external etcd cluster is not supported by kagent", "remove it: kagent runs etcd (or kine) itself"),
    ("not-utf8", b"spec: {api: {address: \xff}}\n", "{f} is not UTF-8 text", None),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("text", "first", "hint"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_exact_error_lines_and_nothing_written(tmp_path: Path, text: str | bytes, first: str, hint: str | None) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    data, run = tmp_path / "data", tmp_path / "run"
    before = snapshot(tmp_path)
    for cmd in (["config", "validate"], ["sysinfo"]):
        r = run_kagent("-c", str(cfg), "--data-dir", str(data), "--run-dir", str(run), *cmd)
        assert r.returncode == 3, (cmd, r.stderr)
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        where = "error: config: " if first.startswith("{f}") else "error: config "
        assert lines[0] == where + first.format(f=cfg)
        assert lines[1:] == ([f"hint: {hint}"] if hint else [])
    assert snapshot(tmp_path) == before
    assert not data.exists() and not run.exists()


def test_validate_without_a_config_is_a_usage_error() -> None:
    r = run_kagent("config", "validate")
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: config validate: no config given", "hint: pass it with -c FILE (or -c - for stdin)"]


def test_validate_reads_stdin() -> None:
    ok = run_kagent("-c", "-", "config", "validate", input="spec:\n  api: {port: 7443}\n")
    assert (ok.returncode, ok.stdout) == (0, "stdin: valid\n")
    bad = run_kagent("-c", "-", "config", "validate", input="spec:\n  api: {port: 0}\n")
    assert bad.returncode == 3
    assert bad.stderr.splitlines()[0] == "error: config spec.api.port: 0 is not a TCP port (1-65535)"


K0S_FILE = """\
apiVersion: k0s.k0sproject.io/v1beta1
kind: ClusterConfig
metadata: {name: k0s, namespace: kube-system}
spec:
  api: {address: 192.168.1.10, ca: {certificatesExpireAfter: 4380h0m0s, expiresAfter: 87600h0m0s}, k0sApiPort: 9444, port: 6443}
  controllerManager: {}
  extensions: {helm: {concurrencyLevel: 5}}
  installConfig: {users: {etcdUser: etcd}}
  konnectivity: {adminPort: 8133, agentPort: 8132}
  network:
    clusterDomain: cluster.local
    dualStack: {enabled: false}
    kubeProxy: {mode: iptables}
    kuberouter: {autoMTU: true}
    nodeLocalLoadBalancing: {enabled: false}
    podCIDR: 10.244.0.0/16
    provider: kuberouter
    serviceCIDR: 10.96.0.0/12
  scheduler: {}
  storage: {etcd: {ca: {certificatesExpireAfter: 8760h0m0s, expiresAfter: 87600h0m0s}, peerAddress: 192.168.1.10}, type: etcd}
  telemetry: {enabled: false}
"""


def test_k0s_file_is_accepted_with_warnings_for_ignored_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "k0s.yaml"
    cfg.write_text(K0S_FILE)
    r = run_kagent("-c", str(cfg), "config", "validate")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{cfg}: valid\n"
    assert r.stderr.splitlines() == [
        "warning: spec.storage.etcd.ca: k0s setting not used by kagent, ignored",
        "warning: spec.network.dualStack: k0s setting not used by kagent, ignored",
        "warning: spec.network.kubeProxy: k0s setting not used by kagent, ignored",
        "warning: spec.network.kuberouter: k0s setting not used by kagent, ignored",
        "warning: spec.network.nodeLocalLoadBalancing: k0s setting not used by kagent, ignored",
        "warning: spec.network.provider: k0s setting not used by kagent, ignored",
        "warning: metadata.namespace: k0s setting not used by kagent, ignored",
        "warning: spec.extensions: k0s setting not used by kagent, ignored",
        "warning: spec.telemetry: k0s setting not used by kagent, ignored",
    ]


def test_k0s_file_values_are_read(tmp_path: Path) -> None:
    cfg = load_config(K0S_FILE, host_address="10.0.0.5")
    assert cfg.api.control_api_port == 9444  # k0sApiPort
    assert cfg.api.address == "192.168.1.10" and cfg.storage.etcd.peer_address == "192.168.1.10"
    assert cfg.pki.certificates_expire_after.total_seconds() == 4380 * 3600  # from spec.api.ca
    assert cfg.name == "k0s"


def test_k0s_only_fields_are_unknown_in_a_kagent_file() -> None:
    from kagent.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config("spec:\n  telemetry: {enabled: false}\n", host_address="10.0.0.5")
    assert err.value.render().splitlines()[0] == "error: config spec.telemetry: unknown field"
    with pytest.raises(ConfigError) as err:
        load_config("spec:\n  api: {k0sApiPort: 9443}\n", host_address="10.0.0.5")
    assert err.value.path == "spec.api.k0sApiPort"
