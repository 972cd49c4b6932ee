"""``kagent reset`` of a worker that joined with a token removes its node record through the
controller API (mTLS with its kubelet certificate; ``POST /v1beta1/worker/leave``), so the
name may join again; with no controller reachable the reset still completes and says so.
Another node's certificate cannot remove a record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from kagent import log
from kagent.config.model import KeyAlgorithm
from kagent.join.token import decode_token
from kagent.join.worker import join
from kagent.paths import Paths
from tests.conftest import run_kagent
from tests.integration.join.api_fixtures import api_call, controller  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


def _nodes(n) -> set[str]:
    r = n.kagent("node", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    return {row["name"] for row in json.loads(r.stdout)}


def _joined_worker(ctl, root, name: str) -> Paths:
    made = ctl.kagent("token", "create", "--role", "worker")
    assert made.returncode == 0, made.stderr
    paths = Paths.build(root / f"{name}-data", root / f"{name}-run")
    paths.data_dir.mkdir(parents=True)
    join(paths, decode_token(made.stdout.strip(), "stdout"), node=name, key_algorithm=KeyAlgorithm.ECDSA_P256,
         log=log.get(), now=datetime.now(timezone.utc))
    return paths


def test_worker_reset_removes_its_node_record_and_only_its_own(controller, tmp_path):  # noqa: F811
    ctl = controller
    a = _joined_worker(ctl, tmp_path, "leaver-a")
    b = _joined_worker(ctl, tmp_path, "leaver-b")
    assert {"leaver-a", "leaver-b"} <= _nodes(ctl)

    dry = run_kagent("--data-dir", str(a.data_dir), "--run-dir", str(a.run_dir), "reset", "--dry-run")
    assert "would leave: the node record of this worker is removed through the controller API https://" in dry.stdout
    assert "leaver-a" in _nodes(ctl)

    r = run_kagent("--data-dir", str(a.data_dir), "--run-dir", str(a.run_dir), "reset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed node record leaver-a through https://" in r.stdout
    nodes = _nodes(ctl)
    assert "leaver-a" not in nodes and "leaver-b" in nodes
    assert not a.data_dir.exists()

    # the route takes no other node's certificate, and none at all
    ca = ctl.data / "pki" / "ca.crt"
    assert api_call(ctl.ports["control"], "POST", "/v1beta1/worker/leave", {}, ca=ca).status == 401
    assert api_call(ctl.ports["control"], "POST", "/v1beta1/worker/leave", {}, ca=ca,
                    cert=ctl.data / "pki" / "admin.crt", key=ctl.data / "pki" / "admin.key").status == 401
    assert "leaver-b" in _nodes(ctl)


def test_worker_reset_without_a_reachable_controller_still_resets(tmp_path, controller):  # noqa: F811
    paths = _joined_worker(controller, tmp_path, "leaver-c")
    state = paths.data_dir / "join.json"
    doc = json.loads(state.read_text())
    doc["controlApi"] = "https://127.0.0.1:9"  # nothing listens there
    state.write_text(json.dumps(doc))
    r = run_kagent("--data-dir", str(paths.data_dir), "--run-dir", str(paths.run_dir), "reset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: node record not removed: controller API https://127.0.0.1:9: cannot be reached" in r.stdout
    assert "kagent node remove leaver-c" in r.stdout
    assert not paths.data_dir.exists()
