"""Pure. The frozen config model (DESIGN §4). YAML keys are camelCase; fields here are
snake_case; the two are mapped only in ``config/load.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Mapping

API_VERSION = "kagent.dev/v1beta1"
K0S_API_VERSION = "k0s.k0sproject.io/v1beta1"
KIND = "ClusterConfig"


def _frozen_map(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


class StorageType(StrEnum):
    ETCD = "etcd"
    KINE = "kine"


class KeyAlgorithm(StrEnum):
    RSA_2048 = "rsa-2048"
    ECDSA_P256 = "ecdsa-p256"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSpec:
    address: str
    port: int = 6443
    control_api_port: int = 9443
    sans: tuple[str, ...] = ()
    external_address: str | None = None
    extra_args: Mapping[str, str] = field(default_factory=_frozen_map)
    raw_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcdSpec:
    peer_address: str
    client_port: int = 2379
    peer_port: int = 2380
    extra_args: Mapping[str, str] = field(default_factory=_frozen_map)
    raw_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class KineSpec:
    # None: sqlite under <data>/db (derived from Paths by the component)
    data_source: str | None = None
    extra_args: Mapping[str, str] = field(default_factory=_frozen_map)
    raw_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSpec:
    type: StorageType = StorageType.ETCD
    etcd: EtcdSpec
    kine: KineSpec = field(default_factory=KineSpec)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSpec:
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True, slots=True, kw_only=True)
class KonnectivitySpec:
    agent_port: int = 8132
    admin_port: int = 8133


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentOverrides:
    extra_args: Mapping[str, str] = field(default_factory=_frozen_map)
    raw_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiSpec:
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA_2048
    ca_expires_after: timedelta = timedelta(hours=87600)
    certificates_expire_after: timedelta = timedelta(hours=8760)
    renew_before: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerdSpec:
    # registry host -> endpoints, in file order
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen_map)
    # None: <config dir>/containerd.d
    imports_dir: str | None = None
    # TOML text appended verbatim to the rendered config.toml
    extra_config: str = ""
    sandbox_image: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallUsers:
    """``spec.install.users`` (k0s's field names and defaults): the system users the
    control-plane components run as. kube-controller-manager runs as the apiserver user."""

    etcd_user: str = "etcd"
    kine_user: str = "kube-apiserver"
    konnectivity_user: str = "konnectivity-server"
    kube_apiserver_user: str = "kube-apiserver"
    kube_scheduler_user: str = "kube-scheduler"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerProfile:
    name: str
    # a KubeletConfiguration fragment, merged over the defaults
    values: Mapping[str, Any] = field(default_factory=_frozen_map)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupSpec:
    """Scheduled backups taken by a running controller (``spec.backup``)."""

    schedule: timedelta
    directory: str  # absolute
    retention: int = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    api_version: str = API_VERSION
    name: str = "kagent"
    api: ApiSpec
    storage: StorageSpec
    network: NetworkSpec = field(default_factory=NetworkSpec)
    konnectivity: KonnectivitySpec = field(default_factory=KonnectivitySpec)
    controller_manager: ComponentOverrides = field(default_factory=ComponentOverrides)
    scheduler: ComponentOverrides = field(default_factory=ComponentOverrides)
    pki: PkiSpec = field(default_factory=PkiSpec)
    containerd: ContainerdSpec = field(default_factory=ContainerdSpec)
    worker_profiles: tuple[WorkerProfile, ...] = ()
    backup: BackupSpec | None = None
    users: InstallUsers = field(default_factory=InstallUsers)
    # notes for the operator (e.g. k0s-only fields that were ignored); logged by the edge
    warnings: tuple[str, ...] = ()

    def worker_profile(self, name: str) -> WorkerProfile | None:
        for p in self.worker_profiles:
            if p.name == name:
                return p
        return None
