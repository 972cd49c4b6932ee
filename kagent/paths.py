"""Pure. Every on-disk location kagent uses, derived from the data dir and the run dir.

Nothing here touches the disk; `Paths` is a frozen value built once per command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/kagent")
DEFAULT_RUN_DIR = Path("/run/kagent")
DEFAULT_CONFIG = Path("/etc/kagent/kagent.yaml")
DEFAULT_CONFIG_DIR = DEFAULT_CONFIG.parent


@dataclass(frozen=True, slots=True)
class Paths:
    data_dir: Path = DEFAULT_DATA_DIR
    run_dir: Path = DEFAULT_RUN_DIR
    # where /etc-like operator files live (containerd drop-ins); the config file's folder
    config_dir: Path = DEFAULT_CONFIG_DIR

    @classmethod
    def build(cls, data_dir: Path | str, run_dir: Path | str, config_dir: Path | str | None = None) -> Paths:
        return cls(
            data_dir=Path(data_dir).absolute(),
            run_dir=Path(run_dir).absolute(),
            config_dir=Path(config_dir).absolute() if config_dir else DEFAULT_CONFIG_DIR,
        )

    # ---- data dir ---------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return self.data_dir / "bin"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def etcd_pki_dir(self) -> Path:
        return self.pki_dir / "etcd"

    @property
    def etcd_data_dir(self) -> Path:
        return self.data_dir / "etcd"

    @property
    def kine_db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def kine_db(self) -> Path:
        return self.kine_db_dir / "state.db"

    @property
    def manifests_dir(self) -> Path:
        return self.data_dir / "manifests"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def containerd_root(self) -> Path:
        return self.data_dir / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.data_dir / "kubelet"

    @property
    def kubelet_cert_dir(self) -> Path:
        return self.kubelet_root / "pki"

    @property
    def kubelet_conf(self) -> Path:
        """The worker's kubelet kubeconfig (written by the join, or placed by the operator)."""
        return self.data_dir / "kubelet.conf"

    @property
    def egress_selector_conf(self) -> Path:
        return self.data_dir / "konnectivity.conf"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    def pki(self, name: str) -> Path:
        """``pki("admin.crt")`` -> ``<data>/pki/admin.crt``."""
        return self.pki_dir / name

    def etcd_pki(self, name: str) -> Path:
        return self.etcd_pki_dir / name

    @property
    def admin_conf(self) -> Path:
        return self.pki_dir / "admin.conf"

    # ---- run dir ----------------------------------------------------------------
    @property
    def agent_pidfile(self) -> Path:
        return self.run_dir / "kagent.pid"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "kagent.lock"

    @property
    def status_sock(self) -> Path:
        return self.run_dir / "status.sock"

    def pidfile(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    @property
    def containerd_sock(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.run_dir / "containerd.toml"

    @property
    def containerd_imports_dir(self) -> Path:
        return self.config_dir / "containerd.d"

    @property
    def kine_sock_dir(self) -> Path:
        return self.run_dir / "kine"

    @property
    def kine_sock(self) -> Path:
        return self.kine_sock_dir / "kine.sock"

    @property
    def konnectivity_sock_dir(self) -> Path:
        return self.run_dir / "konnectivity-server"

    @property
    def konnectivity_sock(self) -> Path:
        return self.konnectivity_sock_dir / "konnectivity-server.sock"

    @property
    def kubelet_run_dir(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.kubelet_run_dir / "config.yaml"

    @property
    def kubelet_ca(self) -> Path:
        return self.kubelet_run_dir / "ca.crt"

    @property
    def kubelet_direct_conf(self) -> Path:
        """controller+worker: kubelet talks to the local apiserver with this kubeconfig."""
        return self.run_dir / "kubelet-direct.conf"
