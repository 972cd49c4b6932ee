"""Fixed inputs for the component tests and golden files: a node ``node-1`` at 10.0.0.5 with
kagent's default paths (pure rendering: nothing is written there), the default config, and a
config with every override."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kagent.components.context import Context, NodeOptions, Role, Taint
from kagent.config.load import load_config
from kagent.config.model import ClusterConfig
from kagent.node.facts import NodeFacts
from kagent.paths import Paths

FACTS = NodeFacts(hostname="node-1", addresses=("10.0.0.5",))
PATHS = Paths(data_dir=Path("/var/lib/kagent"), run_dir=Path("/run/kagent"), config_dir=Path("/etc/kagent"))
CA_PEM = b"-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"

OVERRIDES_YAML = """\
apiVersion: kagent.dev/v1beta1
kind: ClusterConfig
metadata: {name: lab}
spec:
  api:
    address: 10.0.0.5
    port: 7443
    controlApiPort: 9444
    sans: [api.example.com, 10.0.0.100]
    externalAddress: api.example.com
    extraArgs: {v: "4", audit-log-path: /var/log/kagent/audit.log}
    rawArgs: ["--feature-gates=Foo=true"]
  storage:
    type: etcd
    etcd:
      peerAddress: 10.0.0.6
      clientPort: 12379
      peerPort: 12380
      extraArgs: {log-level: debug, quota-backend-bytes: "8589934592"}
      rawArgs: ["--experimental-initial-corrupt-check=true"]
    kine:
      dataSource: "postgres://kine:secret@db.example.com:5432/kine"
      extraArgs: {compact-interval: 5m}
      rawArgs: ["--debug"]
  network: {podCIDR: 10.200.0.0/16, serviceCIDR: 10.100.0.0/16, clusterDomain: lab.local}
  konnectivity: {agentPort: 18132, adminPort: 18133}
  controllerManager:
    extraArgs: {leader-elect: "false", node-monitor-grace-period: 20s}
    rawArgs: ["--kube-api-qps=50"]
  scheduler:
    extraArgs: {v: "3", secure-port: "10359"}
    rawArgs: ["--kube-api-burst=100"]
  pki: {keyAlgorithm: ecdsa-p256}
  containerd:
    registryMirrors:
      docker.io: [https://mirror.example.com, https://mirror2.example.com]
      registry.example.com:5000: [http://10.0.0.9:5000]
    importsDir: /opt/kagent/containerd.d
    extraConfig: |
      [plugins."io.containerd.internal.v1.opt"]
        path = "/opt/kagent/containerd"
    sandboxImage: registry.example.com:5000/pause:3.10
  workerProfiles:
  - name: big
    values:
      maxPods: 250
      healthzPort: 10348
      authentication: {anonymous: {enabled: false}}
      clusterDNS: [10.100.0.53]
"""


def default_config() -> ClusterConfig:
    return load_config(None, host_address=FACTS.default_address)


def overrides_config() -> ClusterConfig:
    return load_config(OVERRIDES_YAML, host_address=FACTS.default_address)


def ctx(role: Role = Role.CONTROLLER, config: ClusterConfig | None = None, **options) -> Context:
    options.setdefault("cluster_ca", CA_PEM)
    return Context(config=config or default_config(), paths=PATHS, facts=FACTS, role=role, options=NodeOptions(**options))


OVERRIDE_OPTIONS = dict(
    labels=("env=lab", "example.com/tier=db"),
    taints=(Taint(key="dedicated", value="db", effect="NoSchedule"),),
    profile="big",
    kubelet_extra_args=(("v", "2"), ("max-pods", "300"), ("hostname-override", "other")),
    containerd_version=(1, 6),
    join=True,
    initial_cluster=("node-0=https://10.0.0.4:12380", "node-1=https://10.0.0.6:12380"),
)


@dataclass(frozen=True)
class Case:
    component: str
    role: Role
    variant: str  # default | overrides | v3.default ...
    context: Context

    @property
    def stem(self) -> str:
        return f"{self.component}.{self.role}.{self.variant}"


def golden_cases() -> list[Case]:
    out: list[Case] = []
    controller_parts = ["etcd", "control-api", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server"]
    for comp in controller_parts:
        out.append(Case(comp, Role.CONTROLLER, "default", ctx()))
        out.append(Case(comp, Role.CONTROLLER, "overrides", ctx(config=overrides_config(), **OVERRIDE_OPTIONS)))
    out.append(Case("kine", Role.CONTROLLER, "default", ctx(single=True)))
    out.append(Case("kine", Role.CONTROLLER, "overrides", ctx(config=overrides_config(), single=True, **OVERRIDE_OPTIONS)))
    for comp in ("containerd", "kubelet"):
        out.append(Case(comp, Role.WORKER, "default", ctx(Role.WORKER)))
        out.append(Case(comp, Role.WORKER, "overrides", ctx(Role.WORKER, config=overrides_config(), **OVERRIDE_OPTIONS)))
        out.append(Case(comp, Role.CONTROLLER, "default", ctx(enable_worker=True)))
        out.append(Case(comp, Role.CONTROLLER, "overrides", ctx(config=overrides_config(), enable_worker=True, **OVERRIDE_OPTIONS)))
    out.append(Case("containerd", Role.WORKER, "v3.default", ctx(Role.WORKER, containerd_version=(2, 1))))
    out.append(Case("containerd", Role.WORKER, "v3.overrides",
                    ctx(Role.WORKER, config=overrides_config(), **{**OVERRIDE_OPTIONS, "containerd_version": (2, 1)})))
    return out
