"""``kagent etcd leave`` while the agent is still starting: the instance lock is held but the
status socket is not up yet (PKI, specs). The leave waits briefly, then says who holds the run
dir and to retry (exit 4), instead of "no kagent is running"; a stale socket file of an agent
killed before does not count as up."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import kagent_env, run_kagent

HOLD = """
import sys, time
from kagent.node.lock import InstanceLock
InstanceLock(__import__("pathlib").Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _controller_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A controller's data dir with its real PKI (``--init --init-only``: nothing started)."""
    data, run = tmp_path / "data", tmp_path / "run"
    config = tmp_path / "kagent.yaml"
    config.write_text("apiVersion: kagent.dev/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    address: 127.0.0.1\n"
                      "  storage:\n    type: etcd\n    etcd:\n      peerAddress: 127.0.0.1\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    r = run_kagent("-c", str(config), "--data-dir", str(data), "--run-dir", str(run), "controller", "--init", "--init-only")
    assert r.returncode == 0, r.stderr
    return data, run, config


def test_leave_while_the_agent_is_starting_names_it_and_says_to_retry(tmp_path: Path):
    data, run, config = _controller_dirs(tmp_path)
    # a stale socket file: bound once, its process gone
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run / "status.sock"))
    stale.close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / "kagent.lock")], stdout=subprocess.PIPE,
                              text=True, env=kagent_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        r = run_kagent("-c", str(config), "--data-dir", str(data), "--run-dir", str(run), "etcd", "leave")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert r.returncode == 4, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"error: {run / 'kagent.lock'}: kagent (pid {holder.pid}) holds this run dir but its status socket"), r.stderr
    assert "still starting" in lines[0] and "no kagent is running" not in r.stderr, r.stderr
    assert lines[1].startswith("hint: retry kagent etcd leave"), r.stderr
    assert waited >= 5.0  # it waited for the socket before giving up
    assert r.stdout == ""
