"""The joining controller's local side: member names, the member state file, the
validation of the shared CAs a controller API sends, and the refusals of a data dir whose
join did not complete or that left the cluster. Real files and real certificates."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kagent.errors import PreconditionError
from kagent.join import controller as cj
from kagent.join.etcdclient import Member
from kagent.join.membership import initial_cluster
from kagent.paths import Paths
from tests.fixtures.pki_env import build


def _paths(tmp_path: Path) -> Paths:
    return Paths.build(tmp_path / "data", tmp_path / "run")


def test_member_names_are_unique_per_data_dir_and_stable(tmp_path: Path):
    a, b = _paths(tmp_path / "a"), _paths(tmp_path / "b")
    na, nb = cj.ensure_member_name(a, "node-1").name, cj.ensure_member_name(b, "node-1").name
    assert na != nb and na.startswith("node-1-") and nb.startswith("node-1-")
    assert cj.ensure_member_name(a, "node-1").name == na  # kept in the data dir
    assert cj.state_path(a).stat().st_mode & 0o777 == 0o600
    assert len(cj.new_member_name("x" * 80)) <= 63


def test_an_etcd_made_before_member_ids_keeps_the_node_name(tmp_path: Path):
    p = _paths(tmp_path)
    (p.etcd_data_dir / "member").mkdir(parents=True)
    assert cj.ensure_member_name(p, "node-1").name == "node-1"


def test_an_unreadable_state_file_is_an_error_naming_it(tmp_path: Path):
    p = _paths(tmp_path)
    p.data_dir.mkdir(parents=True)
    cj.state_path(p).write_text("{not json")
    with pytest.raises(PreconditionError) as ei:
        cj.load_state(p)
    assert str(cj.state_path(p)) in ei.value.where


def test_a_pending_join_needs_the_token_again_and_a_left_member_a_reset(tmp_path: Path):
    p = _paths(tmp_path)
    cj.save_state(p, cj.MemberState(name="n-1", state="pending"))
    with pytest.raises(PreconditionError, match="did not complete"):
        cj.check_controller_join(p, None)
    cj.save_state(p, cj.MemberState(name="n-1", state="left"))
    with pytest.raises(PreconditionError, match="left the cluster") as ei:
        cj.check_controller_join(p, None)
    assert ei.value.hint and "reset" in ei.value.hint


def test_a_joined_member_ignores_its_token(tmp_path: Path):
    env = build(tmp_path, "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    cj.save_state(env.paths, cj.MemberState(name="n-1", state="joined"))
    garbage = tmp_path / "stale.token"
    garbage.write_text("not a token at all")
    assert cj.check_controller_join(env.paths, garbage) is None  # not even read


def test_reset_etcd_data_empties_the_dir_without_following_symlinks(tmp_path: Path):
    p = _paths(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (p.etcd_data_dir / "member" / "wal").mkdir(parents=True)
    (p.etcd_data_dir / "link").symlink_to(outside)
    cj.reset_etcd_data(p)
    assert list(p.etcd_data_dir.iterdir()) == [] and (outside / "keep").exists()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    env = build(tmp_path_factory.mktemp("shared"), "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    return env, cj.shared_material(env.paths)


def test_the_shared_material_validates_and_writes_every_ca_and_the_sa_pair(shared, tmp_path: Path):
    env, doc = shared
    files = cj.validate_shared(doc, env.paths.pki("ca.crt").read_bytes(), "api")
    p = _paths(tmp_path)
    cj.write_shared(p, files)
    for rel in ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub"):
        assert p.pki(rel).read_bytes() == env.paths.pki(rel).read_bytes(), rel
    assert p.pki("ca.key").stat().st_mode & 0o777 == 0o600 and p.pki("etcd/ca.key").stat().st_mode & 0o777 == 0o600
    assert p.pki_dir.stat().st_mode & 0o777 == 0o700 and p.etcd_pki_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mangle", ["swap_keys", "drop_sa", "garbage_cert", "leaf_as_ca", "other_cluster"])
def test_a_bad_answer_is_refused_before_anything_is_written(shared, tmp_path: Path, mangle: str):
    env, doc = shared
    bad = copy.deepcopy(doc)
    pinned = env.paths.pki("ca.crt").read_bytes()
    if mangle == "swap_keys":
        bad["ca"]["key"], bad["etcdCa"]["key"] = doc["etcdCa"]["key"], doc["ca"]["key"]
    elif mangle == "drop_sa":
        del bad["sa"]
    elif mangle == "garbage_cert":
        bad["frontProxyCa"]["cert"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    elif mangle == "leaf_as_ca":
        bad["ca"] = {"cert": env.paths.pki("admin.crt").read_text(), "key": env.paths.pki("admin.key").read_text()}
    else:
        pinned = build(tmp_path / "other", "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n").paths.pki("ca.crt").read_bytes()
    with pytest.raises(cj.JoinError):
        cj.validate_shared(bad, pinned, "api")


def test_a_data_dir_of_another_cluster_refuses_the_token(shared, tmp_path: Path):
    env, _doc = shared
    other = build(tmp_path, "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n")
    with pytest.raises(cj.JoinError, match="another cluster"):
        cj.check_same_cluster(other.paths, env.paths.pki("ca.crt").read_bytes())
    cj.check_same_cluster(env.paths, env.paths.pki("ca.crt").read_bytes())  # its own: fine


def test_initial_cluster_names_the_new_member_and_placeholders_others():
    members = [Member(id=1, name="a", peer_urls=("https://10.0.0.1:2380",), client_urls=()),
               Member(id=2, name="", peer_urls=("https://10.0.0.2:2380",), client_urls=(), is_learner=True),
               Member(id=3, name="", peer_urls=("https://10.0.0.3:2380",), client_urls=(), is_learner=True)]
    assert initial_cluster(members, 3, "c-1") == ["a=https://10.0.0.1:2380", "pending-2=https://10.0.0.2:2380",
                                                  "c-1=https://10.0.0.3:2380"]
