"""kagent config print-args: the exact argv, one item per line, binary first."""

from __future__ import annotations

from tests.conftest import run_kagent


def _cfg(tmp_path, body: str = "") -> str:
    f = tmp_path / "kagent.yaml"
    f.write_text("apiVersion: kagent.dev/v1beta1\nkind: ClusterConfig\nspec:\n  api: {address: 10.0.0.5}\n" + body)
    return str(f)


def test_prints_argv_with_binary_first(tmp_path, kdirs):
    bin_dir = kdirs.data / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "kube-scheduler"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o750)
    r = run_kagent("-c", _cfg(tmp_path), *kdirs.flags(), "config", "print-args", "kube-scheduler", "--single")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(fake)
    assert f"--kubeconfig={kdirs.data}/pki/scheduler.conf" in lines
    assert "--leader-elect=false" in lines
    assert lines[1:] == sorted(lines[1:])


def test_extra_args_override_is_noted_on_stderr(tmp_path, kdirs):
    cfg = _cfg(tmp_path, "  storage:\n    etcd:\n      extraArgs: {log-level: debug}\n      rawArgs: [--foo=bar]\n")
    r = run_kagent("-c", cfg, *kdirs.flags(), "config", "print-args", "etcd")
    assert r.returncode == 0, r.stderr
    assert "--log-level=debug" in r.stdout.splitlines()
    assert r.stdout.splitlines()[-1] == "--foo=bar"
    assert "spec.storage.etcd.extraArgs overrides --log-level" in r.stderr


def test_worker_components_default_to_worker_role(tmp_path, kdirs):
    r = run_kagent("-c", _cfg(tmp_path), *kdirs.flags(), "config", "print-args", "kubelet", "--labels", "a=b")
    assert r.returncode == 0, r.stderr
    assert f"--kubeconfig={kdirs.data}/kubelet.conf" in r.stdout.splitlines()
    assert "--node-labels=a=b" in r.stdout.splitlines()


def test_unknown_component_and_bad_flags_are_usage_errors(tmp_path, kdirs):
    cfg = _cfg(tmp_path)
    r = run_kagent("-c", cfg, *kdirs.flags(), "config", "print-args", "kube-proxy")
    assert r.returncode == 2 and "error: print-args: 'kube-proxy' is not a component" in r.stderr
    r = run_kagent("-c", cfg, *kdirs.flags(), "config", "print-args", "etcd", "--disable-components", "etcd-ish")
    assert r.returncode == 2 and "valid names: kube-apiserver" in r.stderr
    r = run_kagent("-c", cfg, *kdirs.flags(), "config", "print-args", "kine")
    assert r.returncode == 2 and "--single" in r.stderr
    assert not kdirs.data.exists()  # print-args writes nothing
