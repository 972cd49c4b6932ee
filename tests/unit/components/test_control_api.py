"""control-api: kagent itself running `kagent api`, after etcd, probed over TLS; and the
stale-child check recognises it (the interpreter or the frozen single file is its binary)."""

from __future__ import annotations

import os
import subprocess
import sys

from kagent import bins
from kagent.components import specs_for
from kagent.components.context import Role
from kagent.config.load import load_config
from kagent.supervisor.process import build_env, instance_id, is_ours
from tests.unit.components.cases import PATHS, ctx


def _spec(**kw):
    return next(s for s in specs_for(ctx(**kw)) if s.name == "control-api")


def test_argv_is_kagent_itself_with_the_api_subcommand():
    s = _spec(kagent_argv=("/usr/bin/python3", "-m", "kagent"))
    assert str(s.binary) == "/usr/bin/python3"
    assert s.args[:5] == ("-m", "kagent", f"--data-dir={PATHS.data_dir}", f"--run-dir={PATHS.run_dir}", "api")
    assert "--port=9443" in s.args and "--etcd-endpoint=https://127.0.0.1:2379" in s.args
    assert s.after == ("etcd",)
    assert s.health is not None and s.health.url == "https://127.0.0.1:9443/healthz"
    assert s.health.ca_file == PATHS.pki("ca.crt")
    assert PATHS.pki("control-api.crt") in s.reads and PATHS.pki("ca.key") in s.reads


def test_bind_address_from_extra_args_as_k0s():
    cfg = load_config("spec:\n  api:\n    address: 10.0.0.5\n    extraArgs: {bind-address: 10.0.0.5}\n", host_address="10.0.0.5")
    s = next(x for x in specs_for(ctx(config=cfg)) if x.name == "control-api")
    assert "--bind-address=10.0.0.5" in s.args and s.health.url == "https://10.0.0.5:9443/healthz"


def test_not_run_when_disabled_with_kine_or_on_a_worker():
    assert "control-api" not in {s.name for s in specs_for(ctx(disabled=frozenset({"control-api"})))}
    assert "control-api" not in {s.name for s in specs_for(ctx(single=True))}
    assert "control-api" not in {s.name for s in specs_for(ctx(Role.WORKER))}


def test_self_argv_runs_this_kagent():
    argv = bins.self_argv()
    assert argv == (sys.executable, "-P", "-m", "kagent")
    r = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "kagent" in r.stdout


def test_self_argv_never_runs_a_kagent_from_the_current_directory(tmp_path):
    planted = tmp_path / "kagent"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    (planted / "__main__.py").write_text("print('planted code ran')\n")
    r = subprocess.run([*bins.self_argv(), "version"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "planted" not in r.stdout and r.returncode == 0 and "kagent" in r.stdout, r.stdout + r.stderr


def test_stale_child_check_accepts_the_control_api_child(tmp_path):
    spec = _spec(kagent_argv=bins.self_argv())
    inst = instance_id(tmp_path)
    env = build_env(spec, inst, os.environ)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        assert is_ours(p.pid, spec, inst)
        assert not is_ours(p.pid, spec, instance_id(tmp_path / "other"))
    finally:
        p.kill()
        p.wait()
