"""kagent/pki/store.py against a temp data dir: modes, idempotence, exactly-what-changed
reissues, repairs, logs, the CA for one-off kubeconfigs, and the certificate check."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from kagent import log
from kagent.errors import PreconditionError
from kagent.kubeconfig import parse_kubeconfig
from kagent.node.facts import NodeFacts
from kagent.pki import issue
from kagent.pki.check import CertState
from kagent.pki.plan import Reason
from kagent.pki.store import (
    apply_pki,
    check_certs,
    issue_client_cert,
    issue_client_kubeconfig,
    load_ca,
    read_admin_kubeconfig,
    renew_pki,
)
from tests.fixtures.pki_env import FACTS, PkiEnv, build, replan, restarted, snapshot, utcnow

EC = "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n"


@pytest.fixture
def env(tmp_path: Path) -> PkiEnv:
    return build(tmp_path, EC)


def _cert(path: Path):
    cert = issue.load_cert(path.read_bytes())
    assert cert is not None
    return cert


def test_first_run_writes_the_whole_set_with_modes(env: PkiEnv):
    files = set(env.plan.files())
    assert set(env.result.written) == files
    assert set(env.result.reasons.values()) == {str(Reason.MISSING)}
    for d in env.plan.dirs:
        assert d.stat().st_mode & 0o7777 == 0o700
    for p in files:
        mode = p.stat().st_mode & 0o7777
        expected = 0o600 if p.suffix in (".key", ".conf") else 0o644
        assert mode == expected, p
    assert restarted(env, env.result.written) == ("control-api", "etcd", "konnectivity-server", "kube-apiserver",
                                                  "kube-controller-manager", "kube-scheduler")


def test_second_run_writes_nothing_same_bytes_same_mtime(env: PkiEnv):
    before = snapshot(env.paths.data_dir)
    again = apply_pki(env.plan, now=utcnow())
    assert again.written == () and restarted(env, again.written) == ()
    assert snapshot(env.paths.data_dir) == before


def test_changing_api_sans_reissues_exactly_the_certs_carrying_them(env: PkiEnv):
    before = snapshot(env.paths.data_dir)
    after = replan(env, EC + "  api:\n    sans: [203.0.113.7, api.example.com]\n")
    assert set(after.result.written) == {env.paths.pki("server.crt"), env.paths.pki("control-api.crt")}
    assert set(after.result.reasons.values()) == {str(Reason.SANS_CHANGED)}
    assert restarted(after, after.result.written) == ("control-api", "konnectivity-server", "kube-apiserver")
    dns, ips = issue.cert_sans(_cert(env.paths.pki("server.crt")))
    assert "api.example.com" in dns and "203.0.113.7" in ips
    # keys are kept: only the certificates changed
    assert env.paths.pki("server.key").read_bytes() == before[env.paths.pki("server.key")][0]
    assert replan(env, EC + "  api:\n    sans: [api.example.com, 203.0.113.7]\n").result.written == ()


def test_a_new_host_address_reissues_the_server_certs_only(env: PkiEnv):
    facts = NodeFacts(hostname=FACTS.hostname, addresses=FACTS.addresses + ("198.51.100.3",))
    after = replan(env, EC, facts=facts)
    assert {p.name for p in after.result.written} == {"server.crt", "control-api.crt"}


def test_expiring_leaves_are_renewed_cas_and_key_pairs_are_kept(env: PkiEnv):
    before = snapshot(env.paths.data_dir)
    later = utcnow() + env.config.pki.certificates_expire_after - env.config.pki.renew_before + timedelta(hours=1)
    written = renew_pki(env.plan, now=later)
    leaf_certs = {leaf.cert for leaf in env.plan.leaves}
    kubeconfigs = {kc.path for kc in env.plan.kubeconfigs}
    assert set(written) == leaf_certs | kubeconfigs
    for leaf in env.plan.leaves:
        assert _cert(leaf.cert).not_valid_after_utc > later + timedelta(days=300)
        assert leaf.key.read_bytes() == before[leaf.key][0]
    for ca in env.plan.cas:
        assert ca.cert.read_bytes() == before[ca.cert][0]
    assert apply_pki(env.plan, now=later).written == ()


def test_ca_key_missing_makes_a_new_ca_and_reissues_every_leaf_under_it(env: PkiEnv):
    before = snapshot(env.paths.data_dir)
    env.paths.pki("ca.key").unlink()
    log.get()
    with structlog.testing.capture_logs() as logs:
        result = apply_pki(env.plan, now=utcnow())
    assert [(e["ca"], e["log_level"]) for e in logs if e["event"] == "pki_ca_regenerated"] == [("ca", "warning")]
    under_ca = {leaf.cert for leaf in env.plan.leaves if leaf.signer == "ca"}
    assert under_ca and set(result.written) == {env.paths.pki("ca.key"), env.paths.pki("ca.crt")} | under_ca | {
        kc.path for kc in env.plan.kubeconfigs}
    assert result.reasons[env.paths.pki("ca.crt")] == str(Reason.KEY_MISSING)
    assert {result.reasons[p] for p in under_ca} == {str(Reason.WRONG_ISSUER)}
    new_ca = _cert(env.paths.pki("ca.crt"))
    assert new_ca.public_bytes != before[env.paths.pki("ca.crt")][0]
    for p in under_ca:
        assert issue.signed_by(_cert(p), new_ca)
    assert env.paths.pki("front-proxy-client.crt").read_bytes() == before[env.paths.pki("front-proxy-client.crt")][0]


def test_ca_cert_missing_is_remade_from_the_same_key_and_leaves_stay(env: PkiEnv):
    key_before = env.paths.pki("ca.key").read_bytes()
    env.paths.pki("ca.crt").unlink()
    result = apply_pki(env.plan, now=utcnow())
    assert set(result.written) == {env.paths.pki("ca.crt")} | {kc.path for kc in env.plan.kubeconfigs}
    assert env.paths.pki("ca.key").read_bytes() == key_before
    assert issue.signed_by(_cert(env.paths.pki("server.crt")), _cert(env.paths.pki("ca.crt")))


def test_a_cert_that_no_longer_matches_its_key_is_reissued_for_the_key_on_disk(env: PkiEnv):
    # what a kill between writing a new key and its certificate leaves behind
    new_key = issue.key_pem(issue.new_key(env.config.pki.key_algorithm))
    env.paths.pki("scheduler.key").write_bytes(new_key)
    result = apply_pki(env.plan, now=utcnow())
    assert set(result.written) == {env.paths.pki("scheduler.crt"), env.paths.pki("scheduler.conf")}
    assert result.reasons[env.paths.pki("scheduler.crt")] == str(Reason.KEY_MISMATCH)
    assert restarted(env, result.written) == ("kube-scheduler",)
    assert env.paths.pki("scheduler.key").read_bytes() == new_key
    assert issue.same_public_key(_cert(env.paths.pki("scheduler.crt")).public_key(), issue.load_key(new_key))


def test_a_missing_leaf_key_gets_a_new_key_pair(env: PkiEnv):
    old_cert = env.paths.pki("admin.crt").read_bytes()
    env.paths.pki("admin.key").unlink()
    result = apply_pki(env.plan, now=utcnow())
    assert set(result.written) == {env.paths.pki("admin.key"), env.paths.pki("admin.crt"), env.paths.admin_conf}
    assert env.paths.pki("admin.crt").read_bytes() != old_cert
    assert env.paths.pki("admin.key").stat().st_mode & 0o777 == 0o600


def test_a_missing_public_key_is_derived_from_the_private_key(env: PkiEnv):
    private = env.paths.pki("sa.key").read_bytes()
    pub = env.paths.pki("sa.pub").read_bytes()
    env.paths.pki("sa.pub").unlink()
    result = apply_pki(env.plan, now=utcnow())
    assert result.written == (env.paths.pki("sa.pub"),)
    assert env.paths.pki("sa.pub").read_bytes() == pub and env.paths.pki("sa.key").read_bytes() == private


def _alg(path: Path) -> str:
    return issue.key_algorithm_of(issue.load_key(path.read_bytes())).value


def test_switching_key_algorithm_rekeys_leaves_and_jwt_but_keeps_cas_and_sa(env: PkiEnv):
    assert {_alg(env.paths.pki("sa.key")), _alg(env.paths.etcd_pki("jwt.key")), _alg(env.paths.pki("server.key"))} == {"ecdsa-p256"}
    keep = {p: p.read_bytes() for p in (env.paths.pki("ca.crt"), env.paths.pki("ca.key"), env.paths.pki("sa.key"), env.paths.pki("sa.pub"))}
    after = replan(env, "")
    leaves = {leaf.key for leaf in env.plan.leaves} | {leaf.cert for leaf in env.plan.leaves}
    jwt = {env.paths.etcd_pki("jwt.key"), env.paths.etcd_pki("jwt.pub")}
    assert set(after.result.written) == leaves | jwt | {kc.path for kc in env.plan.kubeconfigs}
    assert {after.result.reasons[p] for p in leaves | jwt} == {str(Reason.KEY_ALGORITHM_CHANGED)}
    assert {p: p.read_bytes() for p in keep} == keep
    assert _alg(env.paths.pki("admin.key")) == _alg(env.paths.etcd_pki("jwt.key")) == "rsa-2048"
    assert _alg(env.paths.pki("sa.key")) == "ecdsa-p256"
    assert replan(env, "").result.written == ()


def test_stale_temp_files_of_planned_files_are_removed_and_no_others(tmp_path: Path):
    env = build(tmp_path, EC, kubelet_node="node-a")
    junk = [env.paths.pki(".ca.key.abc123.tmp"), env.paths.etcd_pki(".peer.crt.x_1.tmp"),
            env.paths.run_dir / ".kubelet-direct.conf.y.tmp"]
    others = [env.paths.run_dir / ".containerd.toml.zz.tmp", env.paths.pki("notes.tmp")]
    for j in junk + others:
        j.write_bytes(b"half")
    assert apply_pki(env.plan, now=utcnow()).written == ()
    assert not any(j.exists() for j in junk)
    assert all(o.exists() for o in others)


def test_each_written_file_is_logged_with_its_reason_and_no_key_material(tmp_path: Path):
    log.get()  # configure once, so capture_logs is not replaced by the default setup
    with structlog.testing.capture_logs() as logs:
        env = build(tmp_path, EC)
    written = [e for e in logs if e["event"] == "pki_file_written"]
    assert {Path(e["path"]) for e in written} == set(env.result.written)
    assert all(e["reason"] == "missing" for e in written)
    assert not any("PRIVATE KEY" in str(v) or "LS0t" in str(v) for e in logs for v in e.values())
    with structlog.testing.capture_logs() as logs:
        apply_pki(env.plan, now=utcnow())
    assert logs == []


def test_kubeconfigs_embed_the_ca_and_the_client_pair(env: PkiEnv):
    kc = parse_kubeconfig(env.paths.pki("ccm.conf").read_text())
    assert kc.server == "https://localhost:6443" and (kc.cluster, kc.context, kc.user) == ("local", "Default", "user")
    assert kc.ca_pem == env.paths.pki("ca.crt").read_bytes()
    assert kc.cert_pem == env.paths.pki("ccm.crt").read_bytes() and kc.key_pem == env.paths.pki("ccm.key").read_bytes()


def test_kubelet_node_writes_the_direct_kubeconfig_in_the_run_dir(tmp_path: Path):
    env = build(tmp_path, EC, kubelet_node="node-a")
    assert not env.paths.kubelet_conf.exists()
    kc = parse_kubeconfig(env.paths.kubelet_direct_conf.read_text())
    assert _cert(env.paths.pki("kubelet-client.crt")).subject.rfc4514_string() == "CN=system:node:node-a,O=system:nodes"
    assert kc.cert_pem == env.paths.pki("kubelet-client.crt").read_bytes()
    assert env.paths.kubelet_direct_conf.stat().st_mode & 0o777 == 0o600


# ---- one-off clients --------------------------------------------------------------------


def test_load_ca_refuses_without_a_ca(tmp_path: Path):
    from kagent.paths import Paths

    paths = Paths.build(tmp_path / "d", tmp_path / "r")
    with pytest.raises(PreconditionError) as err:
        load_ca(paths)
    assert err.value.exit_code == 4 and "ca.key does not exist" in err.value.what


def test_load_ca_refuses_a_key_that_does_not_match(env: PkiEnv):
    env.paths.pki("ca.key").write_bytes(issue.key_pem(issue.new_key(env.config.pki.key_algorithm)))
    with pytest.raises(PreconditionError, match="does not match"):
        load_ca(env.paths)


def test_client_kubeconfig_has_a_fresh_cert_and_leaves_nothing_behind(env: PkiEnv):
    before = snapshot(env.paths.data_dir)
    now = utcnow()
    text = issue_client_kubeconfig(env.paths, env.config, user="jane", groups=["dev", "ops"], expires_after=timedelta(hours=48),
                                   context_name="mine", server="https://10.0.0.1:6443", now=now)
    kc = parse_kubeconfig(text)
    cert = issue.load_cert(kc.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=jane,O=ops,O=dev"
    assert issue.signed_by(cert, _cert(env.paths.pki("ca.crt")))
    assert issue.same_public_key(cert.public_key(), issue.load_key(kc.key_pem))
    assert timedelta(hours=47) < cert.not_valid_after_utc - now <= timedelta(hours=48)
    assert (kc.cluster, kc.context, kc.user, kc.server) == ("mine", "mine", "jane", "https://10.0.0.1:6443")
    assert snapshot(env.paths.data_dir) == before


def test_admin_kubeconfig_is_admin_conf_with_another_server(env: PkiEnv):
    kc = parse_kubeconfig(read_admin_kubeconfig(env.paths, "https://192.0.2.10:6443"))
    admin = parse_kubeconfig(env.paths.admin_conf.read_text())
    assert kc.server == "https://192.0.2.10:6443"
    assert (kc.ca_pem, kc.cert_pem, kc.key_pem) == (admin.ca_pem, admin.cert_pem, admin.key_pem)


# ---- check ------------------------------------------------------------------------------


def test_check_lists_every_cert_and_flags_expiry(env: PkiEnv):
    now = utcnow()
    found = check_certs(env.paths, now=now, renew_before=timedelta(days=30))
    assert {c.file for c in found} == {leaf.cert for leaf in env.plan.leaves} | {ca.cert for ca in env.plan.cas}
    assert all(c.state is CertState.OK for c in found)
    server = next(c for c in found if c.file.name == "server.crt" and "etcd" not in str(c.file))
    assert server.subject == "CN=kubernetes,O=kubernetes" and server.issuer == "CN=kubernetes-ca"
    assert "kubernetes.default.svc.cluster.local" in server.sans and server.days_left in (364, 365)
    later = check_certs(env.paths, now=now + timedelta(days=340), renew_before=timedelta(days=30))
    states = {c.file.name: c.state for c in later}
    assert states["admin.crt"] is CertState.EXPIRING and states["ca.crt"] is CertState.OK
    expired = check_certs(env.paths, now=now + timedelta(days=400), renew_before=timedelta(days=30))
    assert {c.file.name: c.state for c in expired}["admin.crt"] is CertState.EXPIRED


def test_check_reports_unreadable_certs_and_refuses_an_empty_dir(env: PkiEnv, tmp_path: Path):
    env.paths.pki("broken.crt").write_bytes(b"garbage")
    found = check_certs(env.paths, now=utcnow(), renew_before=timedelta(days=30))
    assert next(c for c in found if c.file.name == "broken.crt").state is CertState.UNREADABLE
    from kagent.paths import Paths

    with pytest.raises(PreconditionError, match="no certificates"):
        check_certs(Paths.build(tmp_path / "empty", tmp_path / "run"), now=utcnow(), renew_before=timedelta(days=1))


def test_files_are_replaced_not_rewritten_in_place(env: PkiEnv):
    # a reader holding the old file open keeps reading the old bytes: atomic replace
    path = env.paths.pki("server.crt")
    with open(path, "rb") as fh:
        old_inode = os.fstat(fh.fileno()).st_ino
        replan(env, EC + "  api:\n    sans: [api2.example.com]\n")
        assert fh.read() != path.read_bytes()
    assert path.stat().st_ino != old_inode


def test_a_ca_near_expiry_is_recertified_with_its_key_and_old_copies_still_verify(tmp_path: Path):
    text = EC + '    caExpiresAfter: "2000h"\n    certificatesExpireAfter: "1000h"\n    renewBefore: "100h"\n'
    t0 = utcnow()
    env = build(tmp_path, text, now=t0)
    old_ca = _cert(env.paths.pki("ca.crt"))
    key_before = env.paths.pki("ca.key").read_bytes()
    later = t0 + timedelta(hours=1950)
    result = apply_pki(env.plan, now=later)
    assert result.reasons[env.paths.pki("ca.crt")] == str(Reason.EXPIRING)
    assert env.paths.pki("ca.key") not in result.written and env.paths.pki("ca.key").read_bytes() == key_before
    new_ca = _cert(env.paths.pki("ca.crt"))
    assert new_ca.not_valid_after_utc > later + timedelta(hours=1900)
    server = _cert(env.paths.pki("server.crt"))
    # a client still holding the old CA certificate (same key, same name) verifies the new leaves
    assert issue.signed_by(server, new_ca) and issue.signed_by(server, old_ca)


def test_written_certificates_are_logged_with_their_fingerprint(tmp_path: Path):
    log.get()
    with structlog.testing.capture_logs() as logs:
        env = build(tmp_path, EC)
    fp = {Path(e["path"]).name: e.get("sha256") for e in logs if e["event"] == "pki_file_written"}
    assert fp["admin.crt"] == issue.fingerprint(_cert(env.paths.pki("admin.crt")))
    assert fp["admin.key"] is None


def test_issue_client_cert_for_a_joining_kubelet(env: PkiEnv):
    pair = issue_client_cert(env.paths, env.config, user="system:node:w1", groups=["system:nodes"],
                             expires_after=timedelta(days=365), now=utcnow())
    cert = issue.load_cert(pair.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=system:node:w1,O=system:nodes"
    assert pair.ca_pem == env.paths.pki("ca.crt").read_bytes() and issue.signed_by(cert, _cert(env.paths.pki("ca.crt")))
    assert not env.paths.pki("system:node:w1.crt").exists()


def test_wrong_modes_on_kept_files_are_fixed_without_a_rewrite(env: PkiEnv):
    key = env.paths.pki("admin.key")
    os.chmod(key, 0o640)
    os.chmod(env.paths.pki("ca.crt"), 0o600)
    data = key.read_bytes()
    log.get()
    with structlog.testing.capture_logs() as logs:
        result = apply_pki(env.plan, now=utcnow())
    assert result.written == ()
    assert key.stat().st_mode & 0o777 == 0o600 and env.paths.pki("ca.crt").stat().st_mode & 0o777 == 0o644
    assert key.read_bytes() == data
    assert {Path(e["path"]).name for e in logs if e["event"] == "pki_mode_fixed"} == {"admin.key", "ca.crt"}


def test_a_key_the_ownership_step_shares_with_a_second_reader_keeps_its_0640(env: PkiEnv):
    """server.key is read by konnectivity-server and kube-apiserver (two users): the ownership
    step makes it 0640 with the second one's group. A PKI run (every renewal check) used to make
    it 0600 again, and kube-apiserver could no longer read it until the next reload."""
    key = env.paths.pki("server.key")
    os.chown(key, 0, 65534)  # a component user's group (nogroup here)
    os.chmod(key, 0o640)
    assert apply_pki(env.plan, now=utcnow()).written == ()
    assert key.stat().st_mode & 0o777 == 0o640


# ---- staged runs (a reload's or a renewal's PKI step: nothing in place until the commit) ----


def _hashes(folder: Path) -> dict[Path, bytes]:
    """Every entry under ``folder`` (temp files too) with its bytes: what a rejected reload keeps."""
    import hashlib

    return {p: hashlib.sha256(p.read_bytes()).digest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_staged_run_changes_no_file_in_place_until_it_is_committed(env: PkiEnv):
    from kagent import fsutil
    from kagent.pki.store import stage_pki

    before = _hashes(env.paths.pki_dir)
    plan = replan_plan(env, EC + "  api:\n    sans: [203.0.113.7]\n")
    staged = stage_pki(plan, now=utcnow())
    server, api = env.paths.pki("server.crt"), env.paths.pki("control-api.crt")
    assert set(staged.written) == set(staged.staged) == {server, api}
    for target, tmp in staged.staged.items():
        assert tmp.parent == target.parent and tmp.name.startswith(f".{target.name}.") and tmp.name.endswith(".tmp")
        assert tmp.stat().st_mode & 0o7777 == 0o644
    assert {p: h for p, h in _hashes(env.paths.pki_dir).items() if p not in staged.staged.values()} == before
    # discarded: byte-identical, no temp file left
    fsutil.discard_staged(staged.staged.items())
    assert _hashes(env.paths.pki_dir) == before
    # staged again and committed: the same files as an in-place run, and a second run writes nothing
    staged = stage_pki(plan, now=utcnow())
    fsutil.commit_staged(tuple(staged.staged.items()))
    assert "203.0.113.7" in issue.cert_sans(_cert(server))[1]
    assert not [p for p in env.paths.pki_dir.rglob(".*.tmp")]
    assert apply_pki(plan, now=utcnow()).written == ()


def test_staged_keys_are_private_from_the_start(tmp_path: Path):
    from kagent.pki.store import stage_pki

    plan = plan_for(tmp_path, EC)
    staged = stage_pki(plan, now=utcnow())
    assert set(staged.staged) == set(plan.files()) and not any(p.exists() for p in plan.files())
    for target, tmp in staged.staged.items():
        want = 0o600 if target.suffix in (".key", ".conf") else 0o644
        assert tmp.stat().st_mode & 0o7777 == want, target
    for d in plan.dirs:
        assert d.stat().st_mode & 0o7777 == 0o700


def test_a_staged_run_that_fails_halfway_removes_what_it_staged(env: PkiEnv):
    """A file of the plan that cannot be read (here a directory where etcd's member cert goes):
    the run fails after it staged the CA-signed leaves before it; none of them stays."""
    from kagent.pki.store import stage_pki

    member = env.paths.etcd_pki("member.crt")
    plan = replan_plan(env, EC + "  api:\n    sans: [203.0.113.7]\n", etcd_member="node-a-1")
    member.mkdir()
    before = _hashes(env.paths.pki_dir)
    with pytest.raises(IsADirectoryError):
        stage_pki(plan, now=utcnow())
    assert _hashes(env.paths.pki_dir) == before
    assert not [p for p in env.paths.data_dir.rglob(".*.tmp")]


def test_temp_files_a_killed_stage_left_are_removed_but_not_through_a_symlinked_folder(tmp_path: Path):
    from kagent.pki.store import stage_pki

    env = build(tmp_path, EC)
    left = env.paths.pki(".server.crt.k1ll3d.tmp")
    left.write_bytes(b"staged, never committed")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ".ca.crt.abc.tmp"
    victim.write_bytes(b"not ours")
    etcd = env.paths.etcd_pki_dir
    moved = tmp_path / "etcd-real"
    etcd.rename(moved)
    etcd.symlink_to(outside)  # a hostile link where a PKI folder was
    plan = replan_plan(env, EC)
    try:
        stage_pki(plan, now=utcnow())
    except OSError:
        pass  # what the run does with the linked folder is not the point; its cleaning is
    assert not left.exists()
    assert victim.read_bytes() == b"not ours"


def test_an_existing_pki_dir_keeps_the_0711_the_ownership_step_gave_it(env: PkiEnv):
    """Component users (etcd) get through pki/ and pki/etcd/ only while they are 0711: a PKI run
    (every reload and renewal check) must not make them 0700 behind the running components."""
    for d in env.plan.dirs:
        os.chmod(d, 0o711)
    apply_pki(env.plan, now=utcnow())
    assert all(d.stat().st_mode & 0o7777 == 0o711 for d in env.plan.dirs)
    for d in env.plan.dirs:
        os.chmod(d, 0o755)  # anything else is made private again
    apply_pki(env.plan, now=utcnow())
    assert all(d.stat().st_mode & 0o7777 == 0o700 for d in env.plan.dirs)


def plan_for(base: Path, text: str, **kw: object):
    from tests.fixtures.pki_env import make_config
    from kagent.paths import Paths
    from kagent.pki.plan import plan_pki

    return plan_pki(make_config(text), Paths.build(base / "data", base / "run"), FACTS, **kw)  # type: ignore[arg-type]


def replan_plan(env: PkiEnv, text: str, **kw: object):
    from tests.fixtures.pki_env import make_config
    from kagent.pki.plan import plan_pki

    return plan_pki(make_config(text), env.paths, FACTS, **kw)  # type: ignore[arg-type]
