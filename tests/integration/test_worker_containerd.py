"""``kagent worker`` with the real containerd (kubelet disabled): airgap tarballs in
<data>/images are imported into k8s.io at start and when a new one appears while the worker
runs; ``kagent ctr run`` runs a container from the imported image."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import kagent_env
from tests.fixtures.oci import build_oci_tarball
from tests.integration.conftest import base_config


def _images(n) -> set[str]:
    r = n.kagent("ctr", "images", "ls", "-q")
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_worker_imports_airgap_images_and_runs_a_container(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    (n.data / "images").mkdir(parents=True)
    build_oci_tarball(n.data / "images" / "busybox.tar", "docker.io/library/kagent-busybox:1")
    (n.data / "images" / "broken.tar").write_bytes(b"not an image")
    n.start("worker", "--disable-components", "kubelet")
    comps = n.wait_healthy(["containerd"], timeout=90)
    assert set(comps) == {"containerd"}

    deadline = time.monotonic() + 60
    while "docker.io/library/kagent-busybox:1" not in _images(n):
        assert time.monotonic() < deadline, n.log_text()[-3000:]
        time.sleep(0.3)
    failed = [e for e in n.events() if e.get("event") == "image_import_failed"]
    assert failed and failed[0]["path"].endswith("broken.tar")

    run = n.kagent("ctr", "run", "--rm", "docker.io/library/kagent-busybox:1", "kagent-t1", "/bin/echo", "hello-kagent",
                   timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello-kagent"

    # kagent invoked through a link named ctr behaves as `kagent ctr` (data/run dirs from the env)
    link = n.root / "ctr"
    link.symlink_to(Path(sys.executable).parent / "kagent")
    via_link = subprocess.run([str(link), "images", "ls", "-q"], capture_output=True, text=True, timeout=60,
                              env=kagent_env({"KAGENT_DATA_DIR": str(n.data), "KAGENT_RUN_DIR": str(n.run)}))
    assert via_link.returncode == 0, via_link.stderr
    assert "docker.io/library/kagent-busybox:1" in via_link.stdout.split()

    # a tarball dropped in while the worker runs is imported, the worker keeps running
    pid = comps["containerd"]["pid"]
    tmp = n.root / "late.tar"
    build_oci_tarball(tmp, "docker.io/library/kagent-late:2")
    shutil.move(str(tmp), n.data / "images" / "late.tar")
    deadline = time.monotonic() + 60
    while "docker.io/library/kagent-late:2" not in _images(n):
        assert time.monotonic() < deadline, n.log_text()[-3000:]
        time.sleep(0.3)
    assert n.components()["containerd"]["pid"] == pid
    assert n.stop() == 0


def test_worker_without_kubelet_kubeconfig_is_refused(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    r = n.kagent("worker")
    assert r.returncode == 4
    assert "kubelet.conf: no kubelet kubeconfig" in r.stderr
    assert "--disable-components kubelet" in r.stderr
