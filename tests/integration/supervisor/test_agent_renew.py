"""The engine in-process: renewed files restart only their readers; a bad start-up config is
the loader's exit code."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from kagent.components.spec import ComponentSpec
from kagent.errors import ConfigError
from kagent.paths import Paths
from kagent.supervisor.manager import run_agent
from tests.integration.supervisor.conftest import ENTRY, alive


def test_renewed_files_restart_only_the_components_that_read_them(tmp_path):
    paths = Paths.build(tmp_path / "data", tmp_path / "run")
    cert = tmp_path / "pki" / "etcd.crt"
    specs = [ComponentSpec(name="etcd", binary=Path("/bin/sleep"), args=("60",), reads=(cert,)),
             ComponentSpec(name="kubelet", binary=Path("/bin/sleep"), args=("60",))]
    calls: list[int] = []

    def renew() -> list[Path]:
        calls.append(1)
        return [cert] if len(calls) == 1 else []

    async def main() -> tuple[int, dict[str, int], dict[str, int]]:
        ready = asyncio.Event()
        task = asyncio.ensure_future(run_agent(paths=paths, role="controller", load_specs=lambda: specs,
                                               renew=renew, renew_interval=0.2, on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        first = {s.name: int(paths.pidfile(s.name).read_text()) for s in specs}
        for _ in range(300):
            await asyncio.sleep(0.01)
            now = {s.name: int(t) for s in specs if (t := _read(paths.pidfile(s.name)))}
            if len(now) == 2 and now["etcd"] != first["etcd"] and len(calls) >= 2:
                break
        os.kill(os.getpid(), signal.SIGTERM)
        return await task, first, now

    rc, first, now = asyncio.run(main())
    assert rc == 0
    assert now["etcd"] != first["etcd"] and not alive(first["etcd"])
    assert now["kubelet"] == first["kubelet"]
    assert len(calls) >= 2


def test_a_loader_error_at_start_is_its_exit_code(tmp_path, procs):
    import subprocess
    import sys

    bad = tmp_path / "specs.json"
    bad.write_text("[]")  # no "components" key
    r = subprocess.run([sys.executable, str(ENTRY), "--run-dir", str(tmp_path / "run"), "--specs", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == int(ConfigError.exit_code) == 3
    assert f"error: config: {bad}: TypeError" in r.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["kagent.lock"]


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip() or None
    except FileNotFoundError:
        return None
