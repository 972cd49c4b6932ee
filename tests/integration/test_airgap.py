"""The airgap importer against a real containerd: tarballs present at start are imported,
a tarball dropped in later is imported through the inotify watcher, a broken one is
reported and skipped, and nothing is imported twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kagent.airgap import DirWatcher, ImageImporter
from tests.fixtures.oci import build_oci_tarball

CTR = shutil.which("ctr")
CONTAINERD = shutil.which("containerd")
assert CTR and CONTAINERD, "containerd and ctr are installed by scripts/setup.sh"


@pytest.fixture
def containerd(tmp_path, procs):
    root = tmp_path / "ctd"
    root.mkdir()
    sock = root / "containerd.sock"
    cfg = root / "config.toml"
    cfg.write_text(f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n[grpc]\n  address = "{sock}"\n'
                   '[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n'
                   f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root}/opt"\n')
    log = (root / "log").open("wb")
    procs.popen([CONTAINERD, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if subprocess.run([CTR, "--address", str(sock), "version"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        pytest.fail("containerd did not come up: " + (root / "log").read_text()[-2000:])
    yield sock


def _images(sock: Path) -> set[str]:
    out = subprocess.run([CTR, "--address", str(sock), "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_at_start_then_watch_new_and_skip_broken(tmp_path, containerd):
    images = tmp_path / "images"
    images.mkdir()
    build_oci_tarball(images / "one.tar", "docker.io/library/kagent-one:1")
    (images / "broken.tar").write_bytes(b"this is not a tarball")
    state = tmp_path / "state.json"
    imp = ImageImporter(images_dir=images, ctr=Path(CTR), socket=containerd, state_file=state)

    results = {r.path.name: r for r in imp.sync()}
    assert results["one.tar"].ok
    assert not results["broken.tar"].ok and results["broken.tar"].detail
    assert "docker.io/library/kagent-one:1" in _images(containerd)
    # nothing is imported (or retried) twice while the bytes are unchanged
    assert imp.sync() == []
    recorded = json.loads(state.read_text())
    assert recorded["broken.tar"].startswith("failed:")

    seen = threading.Event()
    watcher = DirWatcher(images, lambda name: (imp.sync(), seen.set()))
    try:
        tmp = tmp_path / "two.tar"
        build_oci_tarball(tmp, "docker.io/library/kagent-two:1")
        shutil.move(str(tmp), images / "two.tar")  # a rename into the folder, as an operator's mv
        assert seen.wait(30), "watcher did not fire"
        assert "docker.io/library/kagent-two:1" in _images(containerd)
    finally:
        watcher.close()
