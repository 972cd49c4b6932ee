"""``kagent controller --init --init-only`` prepares the data dir without demanding binaries
it never starts (each missing one is a warning); ``-v`` (also after the subcommand) shows the
debug-level events, and without it there are none."""

from __future__ import annotations

import json

from tests.integration.conftest import base_config


def _events(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_init_only_warns_about_missing_binaries_and_verbose_shows_debug_events(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    # kube-apiserver & co. do not exist on this host (no test doubles installed)
    r = n.kagent("controller", "--init", "--init-only", "--log-format", "json", "-v", timeout=120)
    assert r.returncode == 0, r.stderr
    events = _events(r.stderr)
    missing = {e["component"] for e in events if e.get("event") == "binary_missing"}
    assert {"kube-apiserver", "kube-scheduler", "kube-controller-manager"} <= missing
    assert all(e["level"] == "warning" for e in events if e.get("event") == "binary_missing")
    assert (n.data / "pki" / "ca.crt").exists() and (n.data / "pki" / "admin.conf").exists()
    debug = [e for e in events if e.get("level") == "debug"]
    assert {"config_loaded", "component_spec"} <= {e["event"] for e in debug}
    assert not list(n.run.glob("*.pid"))

    quiet = n.kagent("controller", "--init", "--init-only", "--log-format", "json", timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert [e for e in _events(quiet.stderr) if e.get("level") == "debug"] == []


def test_without_init_only_a_missing_binary_is_exit_4_and_nothing_is_written(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    r = n.kagent("controller", "--init", timeout=120)
    assert r.returncode == 4
    assert "error: binaries: not found or not executable: " in r.stderr and "kube-apiserver" in r.stderr
    assert not n.data.exists()


def test_init_only_creates_no_user_and_demands_no_reach(tmp_path):
    """Nothing starts: default users that do not exist are not created (a warning each), a data
    dir the users could not reach (pytest's 0700 tmp dirs) is no reason to refuse, and the
    files of a user that exists (etcd) are already its own."""
    import pwd

    from tests.conftest import run_kagent

    before = open("/etc/passwd").read()
    cfg = tmp_path / "k.yaml"
    cfg.write_text("spec:\n  api:\n    address: 127.0.0.1\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    r = run_kagent("controller", "--init", "--init-only", "-c", str(cfg), "--data-dir", str(tmp_path / "d"),
                   "--run-dir", str(tmp_path / "r"), "--log-format", "json", timeout=120)
    assert r.returncode == 0, r.stderr
    missing = {e["user"] for e in _events(r.stderr) if e.get("event") == "system_user_missing"}
    known = {p.pw_name for p in pwd.getpwall()}
    assert missing == {"kube-apiserver", "kube-scheduler", "konnectivity-server"} - known
    assert open("/etc/passwd").read() == before
    assert (tmp_path / "d" / "pki" / "etcd" / "server.key").stat().st_uid == pwd.getpwnam("etcd").pw_uid
