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


# (case id, file text, expected first stderr line after "error: <file>: ", expected hint).
# ``{f}`` stands for the file's absolute path. Every config error names its file and field and
# has a hint naming the fix.
PORT_HINT = "use a whole number from 1 to 65535, unquoted"
YAML_HINT = "indent with spaces (not tabs), quote values holding ': ' or ' #', and give each key once"
BAD = [
    ("not-yaml", "spec: [unclosed\n", "line 2, column 1: not valid YAML: expected ',' or ']', but got '<stream end>'", YAML_HINT),
    ("tab-indent", "spec:\n\tapi: {}\n", "line 2, column 1: not valid YAML: found character '\\t' that cannot start any token", YAML_HINT),
    ("empty", "", "holds no config (it is empty or only comments)", "run `kagent config create` for a complete example"),
    ("only-comments", "# nothing here\n\n", "holds no config (it is empty or only comments)", "run `kagent config create` for a complete example"),
    ("a-list", "- a\n- b\n", "expected a ClusterConfig mapping, got a list", "run `kagent config create` for a complete example"),
    ("a-string", "hello\n", "expected a ClusterConfig mapping, got a string", "run `kagent config create` for a complete example"),
    ("two-documents", "spec: {}\n---\nspec: {}\n", "holds 2 YAML documents, expected one ClusterConfig",
     "keep one document: remove the --- separators and the other documents"),
    ("unknown-field", "spec:\n  api:\n    prot: 6443\n", "spec.api.prot: unknown field",
     "fields allowed in spec.api: address, controlApiPort, externalAddress, extraArgs, port, rawArgs, sans"),
    ("unknown-top-level", "spce: {}\n", "spce: unknown field", "fields allowed in the document: apiVersion, kind, metadata, spec"),
    ("duplicate-key", "spec:\n  api:\n    port: 6443\n    port: 7443\n", "line 4, column 5: not valid YAML: found duplicate key 'port'", YAML_HINT),
    ("port-70000", "spec:\n  api:\n    port: 70000\n", "spec.api.port: 70000 is not a TCP port (1-65535)", PORT_HINT),
    ("port-0", "spec:\n  api:\n    port: 0\n", "spec.api.port: 0 is not a TCP port (1-65535)", PORT_HINT),
    ("port-abc", "spec:\n  api:\n    port: abc\n", "spec.api.port: 'abc' is a string, expected a TCP port number (1-65535)", PORT_HINT),
    ("port-negative", "spec:\n  konnectivity:\n    agentPort: -1\n", "spec.konnectivity.agentPort: -1 is not a TCP port (1-65535)", PORT_HINT),
    ("port-bool", "spec:\n  api:\n    controlApiPort: true\n",
     "spec.api.controlApiPort: True is a boolean, expected a TCP port number (1-65535)", PORT_HINT),
    ("port-string", "spec:\n  storage:\n    etcd:\n      clientPort: \"2379\"\n",
     "spec.storage.etcd.clientPort: '2379' is a string, expected a TCP port number (1-65535)", PORT_HINT),
    ("same-api-ports", "spec:\n  api:\n    port: 9443\n", "spec.api.controlApiPort: 9443 is also spec.api.port",
     "give the controller API its own port (default 9443)"),
    ("same-konnectivity-ports", "spec:\n  konnectivity:\n    adminPort: 8132\n",
     "spec.konnectivity.adminPort: 8132 is also spec.konnectivity.agentPort", "give each its own port (defaults 8133 and 8132)"),
    ("bad-cidr", "spec:\n  network:\n    podCIDR: 10.244.0.1/16\n",
     "spec.network.podCIDR: '10.244.0.1/16' is not a CIDR (10.244.0.1/16 has host bits set)", "write a network such as 10.244.0.0/16 (host bits zero)"),
    ("overlapping-cidrs", "spec:\n  network:\n    podCIDR: 10.0.0.0/8\n",
     "spec.network.serviceCIDR: 10.96.0.0/12 overlaps spec.network.podCIDR 10.0.0.0/8", "pick disjoint ranges (defaults 10.244.0.0/16 and 10.96.0.0/12)"),
    ("bad-duration", "spec:\n  pki:\n    caExpiresAfter: 10y\n", "spec.pki.caExpiresAfter: '10y' is not a duration",
     'use a Go duration such as "8760h", "720h" or "30d"'),
    ("duration-not-string", "spec:\n  pki:\n    renewBefore: 720\n", "spec.pki.renewBefore: 720 is an integer, expected a duration string",
     'quote it, e.g. "8760h"'),
    ("duration-zero", "spec:\n  pki:\n    renewBefore: 0s\n", "spec.pki.renewBefore: '0s' must be longer than zero",
     'use a positive duration such as "720h"'),
    ("duration-too-long", "spec:\n  pki:\n    caExpiresAfter: 99999999999h\n",
     "spec.pki.caExpiresAfter: '99999999999h' is too long (at most 999999999 days)", 'use a shorter duration such as "87600h" (10 years)'),
    ("cert-outlives-ca", "spec:\n  pki:\n    certificatesExpireAfter: 100000h\n",
     "spec.pki.certificatesExpireAfter: 100000h0m0s outlives caExpiresAfter 87600h0m0s",
     "make certificatesExpireAfter shorter than caExpiresAfter (defaults 8760h and 87600h)"),
    ("extra-args-int", "spec:\n  api:\n    extraArgs:\n      v: 2\n", "spec.api.extraArgs.v: 2 is an integer, expected a string", 'quote the value: v: "2"'),
    ("extra-args-dashes", "spec:\n  scheduler:\n    extraArgs:\n      --v: \"2\"\n", "spec.scheduler.extraArgs.--v: '--v' is not a flag name",
     'write the flag without leading dashes, e.g. v: "2"'),
    ("extra-args-list", "spec:\n  api:\n    extraArgs: [v]\n", "spec.api.extraArgs: expected a mapping of flag name to value, got a list",
     'write one flag per line without dashes, e.g. v: "2"'),
    ("sans-not-list", "spec:\n  api:\n    sans: a.example.com\n", "spec.api.sans: expected a list of addresses, got a string",
     "write a YAML list, e.g. [10.0.0.5, api.example.com]"),
    ("address-int", "spec:\n  api:\n    address: 5\n", "spec.api.address: 5 is an integer, expected a string", 'quote it: "5"'),
    ("api-version", "apiVersion: v1\nkind: ClusterConfig\n", "apiVersion: 'v1' is not supported",
     "use kagent.dev/v1beta1 (or a k0s k0s.k0sproject.io/v1beta1 file)"),
    ("kind", "kind: Pod\n", "kind: 'Pod' is not supported", "use kind: ClusterConfig"),
    ("storage-type", "spec:\n  storage:\n    type: mysql\n", "spec.storage.type: 'mysql' is not one of: etcd, kine", "use one of: etcd, kine"),
    ("section-is-list", "spec:\n  network: [a]\n", "spec.network: expected a mapping, got a list",
     "write spec.network as key: value lines (see kagent config create)"),
    ("key-not-string", "spec:\n  1: x\n", "spec: key 1 is not a string",
     "field names are words such as port; quote a key that YAML reads as a number or boolean"),
    ("user-empty", "spec:\n  install:\n    users:\n      etcdUser: ''\n", "spec.install.users.etcdUser: must not be empty",
     "give it a value, or remove the field for its default"),
    ("profile-no-name", "spec:\n  workerProfiles: [{values: {}}]\n", "spec.workerProfiles[0].name: is required",
     "name the profile, e.g. name: custom"),
    ("profile-twice", "spec:\n  workerProfiles: [{name: a}, {name: a}]\n", "spec.workerProfiles[1].name: 'a' is defined twice",
     "give each profile its own name"),
    ("profiles-not-list", "spec:\n  workerProfiles: {name: a}\n", "spec.workerProfiles: expected a list of {name, values}, got a mapping",
     "write e.g. [{name: custom, values: {maxPods: 50}}]"),
    ("profile-values-list", "spec:\n  workerProfiles: [{name: a, values: [x]}]\n",
     "spec.workerProfiles[0].values: expected a KubeletConfiguration mapping, got a list", "write e.g. values: {maxPods: 50}"),
    ("imports-dir-relative", "spec:\n  containerd:\n    importsDir: containerd.d\n",
     "spec.containerd.importsDir: 'containerd.d' is not an absolute path", "write an absolute path, e.g. /etc/kagent/containerd.d"),
    ("mirrors-list", "spec:\n  containerd:\n    registryMirrors: [a]\n",
     "spec.containerd.registryMirrors: expected a mapping of registry to endpoint list, got a list", 'write e.g. docker.io: ["https://mirror.example.com"]'),
    ("k0s-external-etcd", "apiVersion: k0s.k0sproject.io/v1beta1\nspec:\n  storage:\n    etcd:\n      externalCluster: {endpoints: [http://e:2379]}\n",
     "spec.storage.etcd.externalCluster: an external etcd cluster is not supported by kagent", "remove it: kagent runs etcd (or kine) itself"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("text", "first", "hint"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_exact_error_lines_and_nothing_written(tmp_path: Path, text: str | bytes, first: str, hint: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    data, run = tmp_path / "data", tmp_path / "run"
    before = snapshot(tmp_path)
    for cmd in (["config", "validate"], ["sysinfo"]):
        r = run_kagent("-c", str(cfg), "--data-dir", str(data), "--run-dir", str(run), *cmd)
        assert r.returncode == 3, (cmd, r.stderr)
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert lines[0] == f"error: {cfg}: " + first
        assert lines[1:] == [f"hint: {hint}"]
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
    assert bad.stderr.splitlines() == ["error: stdin: spec.api.port: 0 is not a TCP port (1-65535)", f"hint: {PORT_HINT}"]


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


def test_unreadable_config_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    """Errors before YAML (not UTF-8, a directory) name the file and have a hint too."""
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"spec: {api: {address: \xff}}\n")
    for arg, first, hint in ((bad, f"error: config: {bad} is not UTF-8 text", "hint: save the config as UTF-8 (YAML is text)"),
                             (tmp_path, f"error: config: {tmp_path} is a directory, not a config file",
                              "hint: pass the file inside it with -c, e.g. -c DIR/kagent.yaml")):
        r = run_kagent("-c", str(arg), "config", "validate")
        assert (r.returncode, r.stderr.splitlines()) == (3, [first, hint])
