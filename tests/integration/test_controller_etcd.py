"""``kagent controller --init`` in the etcd-only topology with the real etcd: it answers
etcdctl over mTLS, survives ``kill -9`` of the etcd child (respawned, data kept), is reported
by ``kagent status``, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal

from tests.conftest import mapped_cryptography
from tests.integration.conftest import KUBE_COMPONENTS, base_config, etcdctl


def test_etcd_only_controller_survives_kill_9_and_stops_cleanly(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    comps = n.wait_healthy(["etcd", "control-api"])
    assert set(comps) == {"etcd", "control-api"}  # the controller API is a child of its own
    found = [e for e in n.events() if e.get("event") == "component_binary" and e["component"] == "etcd"]
    assert [(e["component"], e["path"]) for e in found] == [("etcd", shutil.which("etcd"))]
    assert found[0]["version"] and found[0]["version"][0].isdigit()  # kagent names the version it found
    first_pid = comps["etcd"]["pid"]
    assert (n.run / "etcd.pid").read_text().split()[0] == str(first_pid)

    assert etcdctl(n, "put", "kagent-test", "kept").returncode == 0
    refused = etcdctl(n, "get", "kagent-test", cert=False)
    assert refused.returncode != 0  # client-cert-auth: no cert, no answer

    os.kill(first_pid, signal.SIGKILL)
    comps = n.wait_for(lambda c: c["etcd"]["pid"] not in (None, first_pid) and c["etcd"]["health"] == "healthy",
                       timeout=60, what="etcd respawned")
    assert comps["etcd"]["restarts"] >= 1
    assert comps["etcd"]["last_exit"]["signal"] in (signal.SIGKILL, "SIGKILL", "KILL", 9)
    got = etcdctl(n, "get", "kagent-test", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "kept"

    text = n.kagent("status").stdout
    assert "etcd" in text and "running" in text

    second_pid = comps["etcd"]["pid"]
    assert n.stop() == 0
    assert not (n.run / "etcd.pid").exists()
    assert not os.path.exists(f"/proc/{second_pid}") or open(f"/proc/{second_pid}/stat").read().split()[2] == "Z"
    assert n.kagent("status").returncode == 4


def test_second_run_reuses_the_pki_and_data(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd"])
    assert etcdctl(n, "put", "k", "v1").returncode == 0
    ca_before = (n.data / "pki" / "ca.crt").stat().st_mtime_ns
    server_before = (n.data / "pki" / "etcd" / "server.crt").read_bytes()
    assert n.stop() == 0

    # no --init needed once the data dir holds a cluster; nothing is reissued
    n.start("controller", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd"])
    assert (n.data / "pki" / "ca.crt").stat().st_mtime_ns == ca_before
    assert (n.data / "pki" / "etcd" / "server.crt").read_bytes() == server_before
    assert etcdctl(n, "get", "k", "--print-value-only").stdout.strip() == "v1"


def test_empty_data_dir_without_init_is_refused_and_writes_nothing(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    r = n.kagent("controller", "--disable-components", KUBE_COMPONENTS)
    assert r.returncode == 4
    assert f"error: {n.data}: holds no cluster" in r.stderr
    assert "hint: pass --init" in r.stderr
    assert not n.data.exists()


def test_second_agent_on_the_same_run_dir_exits_4(node_factory):
    n = node_factory()
    n.write_config(base_config(n))
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    n.wait_healthy(["etcd"])
    r = n.kagent("controller", "--disable-components", KUBE_COMPONENTS, timeout=60)
    assert r.returncode == 4
    assert "already running" in r.stderr


def test_bad_flag_and_bad_config_are_clear_and_change_nothing(node_factory):
    n = node_factory()
    r = n.kagent("controller", "--init", "--disable-components", "kube-apiservr")
    assert r.returncode == 2
    assert "'kube-apiservr' is not a controller component" in r.stderr
    n.config.write_text("spec:\n  api:\n    port: 70000\n")
    r = n.kagent("controller", "--init")
    assert r.returncode == 3
    assert r.stderr.splitlines()[:2] == [f"error: {n.config}: spec.api.port: 70000 is not a TCP port (1-65535)",
                                         "hint: use a whole number from 1 to 65535, unquoted"]
    assert not n.data.exists() and not n.run.exists()


def test_running_agent_renews_expiring_certs_and_restarts_only_their_readers(node_factory):
    """Leaves live 40 s and are renewed in their last 30 s: the agent (checking every 7.5 s)
    reissues etcd's certs while running and restarts etcd, with no signal from outside."""
    n = node_factory()
    cfg = base_config(n)
    cfg["spec"]["pki"].update({"certificatesExpireAfter": "40s", "renewBefore": "30s"})
    n.write_config(cfg)
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    first = n.wait_healthy(["etcd"])["etcd"]["pid"]
    server_crt = n.data / "pki" / "etcd" / "server.crt"
    before = server_crt.read_bytes()
    after = n.wait_for(lambda c: c["etcd"]["pid"] not in (None, first) and c["etcd"]["health"] == "healthy",
                       timeout=60, what="etcd restarted after renewal")
    assert server_crt.read_bytes() != before
    assert any(e.get("event") == "renewed_files_restart" and "etcd" in e.get("components", []) for e in n.events())
    assert etcdctl(n, "endpoint", "health").returncode == 0
    assert after["etcd"]["restarts"] >= 1
    # the initial issue and the renewal ran in the PKI child: the agent never loaded cryptography
    assert n.proc is not None and mapped_cryptography(n.proc.pid) == []
    assert any(e.get("event") == "pki_file_written" and e["path"] == str(server_crt) and "expires" in e["reason"]
               for e in n.events())  # the child's log lines reach the agent's log


def test_a_reload_applies_the_pki_in_a_child_and_survives_a_failing_child(node_factory):
    """A reload's PKI step (a SAN added) runs in the PKI child and is reported; when that child
    fails (a certificate path is a directory), the reload is rejected naming the file, every
    PID is kept, and the next reload repairs it. The agent never loads cryptography."""
    from kagent.pki import issue

    n = node_factory()
    cfg = base_config(n)
    n.write_config(cfg)
    n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
    pids = {name: c["pid"] for name, c in n.wait_healthy(["etcd", "control-api"]).items()}
    server_crt = n.data / "pki" / "server.crt"

    cfg["spec"]["api"]["sans"] = ["reload-one.example"]
    n.write_config(cfg)
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("rewritten: ") and str(server_crt) in line for line in r.stdout.splitlines()), r.stdout
    assert "reload-one.example" in issue.cert_sans(issue.load_cert(server_crt.read_bytes()))[0]
    assert n.components()["etcd"]["pid"] == pids["etcd"]  # etcd does not read server.crt

    pids = {name: c["pid"] for name, c in n.components().items()}
    server_crt.unlink()
    server_crt.mkdir()
    cfg["spec"]["api"]["sans"] = ["reload-two.example"]
    n.write_config(cfg)
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert f"pki: {server_crt}: Is a directory" in r.stderr and "nothing was changed" in r.stderr
    assert n.proc is not None and n.proc.poll() is None
    assert {name: c["pid"] for name, c in n.components().items()} == pids

    server_crt.rmdir()
    r = n.kagent("reload", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "reload-two.example" in issue.cert_sans(issue.load_cert(server_crt.read_bytes()))[0]
    assert mapped_cryptography(n.proc.pid) == []
