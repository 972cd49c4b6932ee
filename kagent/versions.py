"""Pure. The component versions this kagent release targets, pinned in one place."""

from __future__ import annotations

KUBERNETES = "1.34.2"
ETCD = "3.5.21"
KINE = "0.14.2"
CONTAINERD = "1.7.28"
RUNC = "1.3.3"
KONNECTIVITY = "0.34.0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

COMPONENTS: dict[str, str] = {
    "kubernetes": KUBERNETES,
    "etcd": ETCD,
    "kine": KINE,
    "containerd": CONTAINERD,
    "runc": RUNC,
    "konnectivity": KONNECTIVITY,
}
