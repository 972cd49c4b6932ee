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
