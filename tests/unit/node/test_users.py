"""kagent.node.users: system users created when missing (into a copy of the user database:
a test never adds a user to this host), ownership applied without following links, and the
reach check that names the dir a component user cannot get through."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from kagent.components.ownership import DirOwner, FileOwner, OwnershipPlan
from kagent.errors import PreconditionError
from kagent.node import users
from kagent.paths import Paths
from tests.conftest import traversable_tmpdir


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **kw: object) -> None:
        self.events.append((event, kw))


@pytest.fixture
def userdb(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    for f in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        shutil.copy2(Path("/etc") / f, tmp_path / "etc" / f)
    return tmp_path


def test_a_missing_user_is_created_as_a_system_user_without_home_or_login(userdb: Path) -> None:
    host_before = Path("/etc/passwd").read_text()
    name = f"kagent-t{os.getpid() % 100000}"
    log = Log()
    (acct,) = users.ensure_users([name], log, prefix=userdb)
    line = next(ln for ln in (userdb / "etc" / "passwd").read_text().splitlines() if ln.startswith(f"{name}:"))
    _, _, uid, gid, _, home, shell = line.split(":")
    assert (int(uid), int(gid)) == (acct.uid, acct.gid) and acct.uid < 1000  # a system uid
    assert home == "/nonexistent" and shell.endswith(("nologin", "false"))
    assert not Path(home).exists()
    assert any(ln.startswith(f"{name}:") for ln in (userdb / "etc" / "group").read_text().splitlines())
    assert log.events == [("system_user_created", {"user": name, "uid": acct.uid})]
    # existing: not created again
    again = users.ensure_users([name], Log(), prefix=userdb)
    assert again == [acct]
    assert Path("/etc/passwd").read_text() == host_before


def test_a_user_that_cannot_be_created_is_exit_4(userdb: Path) -> None:
    with pytest.raises(PreconditionError) as err:
        users.ensure_users(["-kagent"], Log(), prefix=userdb)  # useradd refuses the name
    assert err.value.where == "user -kagent" and "cannot be created" in err.value.what
    assert "spec.install.users" in (err.value.hint or "")


def test_useradd_argv() -> None:
    argv = users.useradd_argv("etcd", shell="/usr/sbin/nologin")
    assert argv[1:] == ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", "--comment", "kagent component user", "etcd"]


def test_apply_ownership_owns_dirs_and_private_files_and_never_follows_links(tmp_path: Path) -> None:
    etcd, nobody = users.lookup("etcd"), users.lookup("nobody")
    assert etcd and nobody
    paths = Paths.build(tmp_path / "data", tmp_path / "run", None)
    paths.etcd_pki_dir.mkdir(parents=True, mode=0o700)
    paths.pki_dir.chmod(0o700)
    outside = tmp_path / "outside"
    outside.write_text("root's")
    data = paths.etcd_data_dir
    (data / "member").mkdir(parents=True)
    (data / "member" / "db").write_text("x")
    (data / "link").symlink_to(outside)
    key, shared, cert = paths.etcd_pki("server.key"), paths.pki("server.key"), paths.pki("server.crt")
    for f, mode in ((key, 0o600), (shared, 0o600), (cert, 0o644)):
        f.write_text("pem")
        f.chmod(mode)
    plan = OwnershipPlan(users=("etcd", "nobody"), dirs=(DirOwner(data, 0o700, "etcd"),),
                         files=(FileOwner(key, "etcd"), FileOwner(shared, "nobody", group_of="etcd"), FileOwner(cert, "nobody")),
                         reach=())
    users.apply_ownership(plan, paths)

    def own(p: Path) -> tuple[int, int, int]:
        st = os.lstat(p)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert own(data) == (etcd.uid, etcd.gid, 0o700)
    assert own(data / "member" / "db")[:2] == (etcd.uid, etcd.gid)
    assert own(data / "link")[:2] == (etcd.uid, etcd.gid)  # the link itself
    assert own(outside)[:2] == (0, 0)  # its target untouched
    assert own(key) == (etcd.uid, etcd.gid, 0o600)
    assert own(shared) == (nobody.uid, etcd.gid, 0o640)
    assert own(cert) == (0, 0, 0o644)  # public: left alone
    assert own(paths.pki_dir)[2] == 0o711 and own(paths.etcd_pki_dir)[2] == 0o711


def test_check_reach_names_the_dir_a_user_cannot_pass_and_the_fix() -> None:
    etcd = users.lookup("etcd")
    base = traversable_tmpdir("kr")  # tmp_path's own parents are 0700 root: use a traversable tree
    try:
        locked = base / "locked"
        (locked / "data").mkdir(parents=True)
        locked.chmod(0o700)
        target = locked / "data" / "etcd"
        plan = OwnershipPlan(users=("etcd",), dirs=(), files=(), reach=(("etcd", "etcd", target, "read"),))
        with pytest.raises(PreconditionError) as err:
            users.check_reach(plan, accounts={"etcd": etcd})
        assert err.value.where == str(locked)
        assert "etcd runs as user etcd, who cannot reach" in err.value.what and "mode 0700" in err.value.what
        assert f"chmod o+x {locked}" in (err.value.hint or "")
        locked.chmod(0o711)
        users.check_reach(plan, accounts={"etcd": etcd})  # passes now
        users.check_reach(plan, accounts={"etcd": users.Account("root", 0, 0)})
        binary = base / "etcd-bin"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o750)
        with pytest.raises(PreconditionError) as err:
            users.check_reach(OwnershipPlan(users=("etcd",), dirs=(), files=(), reach=(("etcd", "etcd", binary, "exec"),)),
                              accounts={"etcd": etcd})
        assert err.value.where == str(binary) and "cannot execute it" in err.value.what
    finally:
        shutil.rmtree(base)


def test_a_staged_binary_gets_the_group_of_the_user_that_runs_it() -> None:
    etcd = users.lookup("etcd")
    assert etcd
    base = traversable_tmpdir("kb")
    try:
        paths = Paths.build(base / "data", base / "run", None)
        paths.bin_dir.mkdir(parents=True)
        staged, elsewhere = paths.bin_dir / "etcd", base / "etcd"
        for b in (staged, elsewhere):
            b.write_text("#!/bin/sh\n")
            b.chmod(0o750)  # as `kagent bins fetch` stages it
        plan = OwnershipPlan(users=("etcd",), dirs=(), files=(), reach=(("etcd", "etcd", staged, "exec"),),
                             binaries=((staged, "etcd"), (elsewhere, "etcd")))
        users.apply_ownership(plan, paths)
        st = staged.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, etcd.gid, 0o750)
        assert elsewhere.stat().st_gid == 0  # not kagent's: left alone (the reach check names it)
        users.check_reach(plan, accounts={"etcd": etcd})
    finally:
        shutil.rmtree(base)
