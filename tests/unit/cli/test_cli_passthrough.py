from kagent.cli import _multicall_argv
from tests.conftest import run_kagent


def test_kubectl_without_admin_conf_is_refused_with_a_hint(tmp_path):
    r = run_kagent("--data-dir", str(tmp_path / "d"), "kubectl", "get", "pods")
    assert r.returncode == 4
    assert r.stderr.splitlines() == [
        f"error: {tmp_path / 'd' / 'pki' / 'admin.conf'}: no admin kubeconfig in this data dir",
        "hint: run this on a controller (kagent controller --init), or pass --kubeconfig",
    ]
    assert not (tmp_path / "d").exists()


def test_links_named_kubectl_or_ctr_become_the_subcommand():
    assert _multicall_argv(["/usr/local/bin/kubectl", "get", "pods"]) == ["kubectl", "get", "pods"]
    assert _multicall_argv(["ctr", "images", "ls"]) == ["ctr", "images", "ls"]
    assert _multicall_argv(["/usr/bin/kagent", "status"]) == ["status"]


# ---- a kubectl/ctr that is kagent again never makes kagent exec itself in a loop ------------

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import kagent_env

KAGENT = Path(sys.executable).parent / "kagent"  # the venv's console script


def _real_tool(d: Path, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    tool = d / name
    tool.write_text(f'#!/bin/sh\necho "real {name}: $*"\n')
    tool.chmod(0o755)
    return tool


def _first_on_path(d: Path, name: str, kind: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    link = d / name
    if kind == "symlink":
        link.symlink_to(KAGENT)
    else:
        # a wrapper that execs kagent, or one that forks it (no exec)
        link.write_text(f'#!/bin/sh\n{"exec " if kind == "exec-wrapper" else ""}{KAGENT} {name} "$@"\n')
        link.chmod(0o755)
    return link


def _run(argv: list[str], tmp_path: Path, path_dirs: list[Path]) -> subprocess.CompletedProcess[str]:
    env = kagent_env({"PATH": os.pathsep.join(map(str, path_dirs)),  # not /usr/bin: the host has a kubectl
                      "KAGENT_DATA_DIR": str(tmp_path / "d")})
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("kind", ["symlink", "exec-wrapper", "fork-wrapper"])
def test_a_kubectl_that_is_kagent_first_on_path_is_passed_over(tmp_path: Path, kind: str) -> None:
    assert KAGENT.exists()
    first = _first_on_path(tmp_path / "a", "kubectl", kind)
    _real_tool(tmp_path / "b", "kubectl")
    r = _run([str(first), "--kubeconfig", "/dev/null", "get", "pods"], tmp_path, [tmp_path / "a", tmp_path / "b"])
    assert (r.returncode, r.stdout) == (0, "real kubectl: --kubeconfig /dev/null get pods\n"), r.stderr


def test_kagent_ctr_passes_over_a_ctr_link_to_itself(tmp_path: Path) -> None:
    _first_on_path(tmp_path / "a", "ctr", "symlink")
    _real_tool(tmp_path / "b", "ctr")
    r = _run([str(KAGENT), "ctr", "--address", "/x.sock", "images", "ls"], tmp_path, [tmp_path / "a", tmp_path / "b"])
    assert (r.returncode, r.stdout) == (0, "real ctr: --namespace k8s.io --address /x.sock images ls\n"), r.stderr


@pytest.mark.parametrize("kind", ["symlink", "exec-wrapper"])
def test_when_only_kagent_itself_is_there_it_is_exit_4(tmp_path: Path, kind: str) -> None:
    first = _first_on_path(tmp_path / "a", "kubectl", kind)
    r = _run([str(first), "--kubeconfig", "/dev/null", "get", "pods"], tmp_path, [tmp_path / "a"])
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stderr.splitlines()[0].startswith("error: kubectl: not found in <data>/bin or PATH")


def test_a_plugin_calling_kagent_kubectl_with_other_arguments_is_not_a_loop(tmp_path: Path) -> None:
    # the real kubectl (exec'd by kagent, same pid) runs `kagent kubectl version` as a plugin would
    b = tmp_path / "b"
    b.mkdir()
    real = b / "kubectl"
    real.write_text(f'#!/bin/sh\nif [ "$3" = plugin ]; then exec {KAGENT} kubectl --kubeconfig /dev/null inner; fi\n'
                    'echo "real kubectl: $*"\n')
    real.chmod(0o755)
    r = _run([str(KAGENT), "kubectl", "--kubeconfig", "/dev/null", "plugin"], tmp_path, [b])
    assert (r.returncode, r.stdout) == (0, "real kubectl: --kubeconfig /dev/null inner\n"), r.stderr
