"""Edge. What the component specs need to know about this node beyond NodeFacts: the resolved
binaries, the containerd and etcd versions, the Go arch, the cluster CA (for the kubelet's
client CA file) and the resolv.conf the kubelet should use. Reads only; writes nothing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import platform
from pathlib import Path
from types import MappingProxyType
from typing import Callable

from kagent import bins, log
from kagent.components.context import go_arch, pick_resolv_conf
from kagent.node.model import Detected
from kagent.paths import Paths

# every binary a component module may name
COMPONENT_BINARIES = ("etcd", "kine", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                      "konnectivity-server", "containerd", "kubelet")


# the version assumed when a binary never answered ``--version``: the one whose flags and config
# every supported release accepts (etcd before 3.5.8 has no --tls-min-version; containerd 2.x
# still reads a version 2 config)
UNKNOWN_VERSION: dict[str, tuple[int, ...]] = {"etcd": (3, 4, 0), "containerd": (1, 7)}


def _version(name: str, path: Path | None, probe: Callable[[Path], tuple[int, ...] | None]) -> tuple[int, ...]:
    found = probe(path) if path is not None else None
    if found is None:
        found = UNKNOWN_VERSION[name]
        if path is not None:
            log.get().warning("binary_version_unknown", component=name, path=str(path),
                              assumed=".".join(map(str, found)), reason=f"{path} --version gave no version")
    return found


def detect_node(paths: Paths, *, containerd_version: tuple[int, int] | None = None,
                containerd_imports: Path | None = None) -> Detected:
    """Each binary's version is probed once per (path, mtime) (``bins.cached_major_minor``); a
    failed probe keeps the last answer, so it never changes a spec. ``containerd_imports``:
    the drop-in dir whose ``*.toml`` files are hashed into containerd's spec."""
    found = {name: bins.find_binary(name, paths) for name in COMPONENT_BINARIES}
    if containerd_version is None:
        c = _version("containerd", found.get("containerd"), bins.cached_major_minor)
        containerd_version = (c[0], c[1])
    # etcd's (major, minor, patch): its --tls-min-version arrived in a patch release (3.5.8)
    etcd_version = _version("etcd", found.get("etcd"), bins.cached_version_tuple)
    return Detected(
        bins=MappingProxyType({k: v for k, v in found.items() if v is not None}),
        containerd_version=containerd_version,
        etcd_version=etcd_version,
        arch=go_arch(platform.machine()),
        cluster_ca=cluster_ca(paths.pki("ca.crt"), paths.kubelet_conf),
        kagent_argv=bins.self_argv(),
        resolv_conf=pick_resolv_conf(_read(Path("/etc/resolv.conf"))),
        containerd_dropins=dropin_hashes(containerd_imports) if containerd_imports is not None else (),
    )


MAX_DROPIN_BYTES = 1024 * 1024


def dropin_hashes(directory: Path) -> tuple[tuple[str, str], ...]:
    """(path, sha256) of each ``*.toml`` in ``directory``, sorted; what containerd's
    ``imports`` glob reads. A file that cannot be read (or is not a regular file, or is larger
    than 1 MiB) is hashed as its error, so it still counts as a change when it appears or goes."""
    try:
        names = sorted(p for p in directory.glob("*.toml"))
    except OSError:
        return ()
    out = []
    for path in names:
        try:
            if not path.is_file():
                raise OSError(f"{path} is not a regular file")
            with path.open("rb") as fh:
                data = fh.read(MAX_DROPIN_BYTES + 1)
            digest = hashlib.sha256(data).hexdigest()
        except OSError as err:
            digest = f"unreadable: {err}"
        out.append((str(path), digest))
    return tuple(out)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cluster_ca(ca_file: Path, kubeconfig: Path) -> bytes:
    """The cluster CA PEM: pki/ca.crt on a controller, else the kubelet kubeconfig's
    certificate-authority-data; empty when neither is there yet."""
    try:
        return ca_file.read_bytes()
    except OSError:
        pass
    text = _read(kubeconfig)
    if not text:
        return b""
    import yaml

    try:
        doc = yaml.safe_load(text)
        return base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, binascii.Error):
        return b""
