"""Edge. The control-plane components' system users (``spec.install.users``): created on first
start when missing (``useradd --system``, no login shell, no home), the ownership plan of
``components/ownership.py`` applied (chown/chmod, never through a symlink), and the check that
each user can reach what it runs and reads (exit 4 naming the path and the fix)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kagent.components.ownership import OwnershipPlan, plan_ownership
from kagent.components.spec import ComponentSpec
from kagent.errors import PreconditionError
from kagent.paths import Paths

_NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
NO_HOME = "/nonexistent"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int


def lookup(name: str, *, prefix: Path | None = None) -> Account | None:
    """The account from the user database (or ``<prefix>/etc/passwd``); None when absent."""
    if prefix is None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return Account(name, pw.pw_uid, pw.pw_gid)
    try:
        lines = (prefix / "etc" / "passwd").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split(":")
        if len(f) >= 4 and f[0] == name and f[2].isdigit() and f[3].isdigit():
            return Account(name, int(f[2]), int(f[3]))
    return None


def useradd_argv(name: str, *, shell: str, prefix: Path | None = None) -> list[str]:
    """A system account with its own group, no home dir and no login shell."""
    argv = [shutil.which("useradd") or "/usr/sbin/useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", NO_HOME, "--shell", shell, "--comment", "kagent component user"]
    if prefix is not None:
        argv += ["--prefix", str(prefix)]
    return [*argv, name]


def ensure_users(names: Iterable[str], log: Any, *, prefix: Path | None = None) -> list[Account]:
    """Each named account, created when missing. PreconditionError (exit 4) when one cannot be."""
    out = []
    for name in names:
        acct = lookup(name, prefix=prefix)
        if acct is None:
            shell = next((s for s in _NOLOGIN if os.path.exists(s)), "/bin/false")
            try:
                r = subprocess.run(useradd_argv(name, shell=shell, prefix=prefix), capture_output=True, text=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
                failure = (r.stderr.strip() or f"useradd exited {r.returncode}") if r.returncode else None
            except (OSError, subprocess.TimeoutExpired) as err:
                failure = str(err)
            acct = lookup(name, prefix=prefix)
            if failure or acct is None:
                raise PreconditionError(f"user {name}", f"the system user does not exist and cannot be created: {failure}",
                                        hint=f"create it (useradd --system --user-group --no-create-home --shell {shell} {name}), "
                                             "or name an existing user in spec.install.users")
            log.info("system_user_created", user=name, uid=acct.uid)
        out.append(acct)
    return out


def _chown(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """chown ``top`` and everything below it; links are changed themselves, never followed."""
    _chown(top, uid, gid)
    for root, dirnames, filenames in os.walk(top, followlinks=False):
        for name in (*dirnames, *filenames):
            _chown(Path(root) / name, uid, gid)


def apply_ownership(plan: OwnershipPlan, paths: Paths, *, accounts: dict[str, Account] | None = None,
                    staged: Mapping[Path, Path] | None = None) -> None:
    """Dirs (made when missing) owned recursively by their component's user; private files
    (not world-readable) owned by their reader, 0600, or 0640 with the second reader's group;
    a binary in ``<data>/bin`` that others cannot execute gets its user's group (g+x);
    kagent's private PKI dirs become traversable (0711: no one but root can list them).
    ``staged``: file -> the staged temp file that will replace it (the PKI of a reload not yet
    accepted): the temp file gets the owner and mode, the file in place is left as it is.
    An OSError (EPERM on an immutable file, EROFS, ENOSPC) is a PreconditionError naming the path."""
    try:
        _apply_ownership(plan, paths, accounts, staged or {})
    except OSError as e:
        where = str(e.filename) if e.filename else "ownership"
        raise PreconditionError(where, f"cannot give it to its component user: {e.strerror or e}",
                                hint="check the file and its file system (lsattr: immutable? read-only? full?), then retry") from None


def _apply_ownership(plan: OwnershipPlan, paths: Paths, accounts: dict[str, Account] | None,
                     redirect: Mapping[Path, Path]) -> None:
    from kagent import fsutil

    acct = accounts if accounts is not None else {u: a for u in plan.users if (a := lookup(u)) is not None}
    for d in plan.dirs:
        a = acct[d.user]
        fsutil.ensure_dir(d.path, d.mode)
        _chown_tree(d.path, a.uid, a.gid)
    for f in plan.files:
        path = redirect.get(f.path, f.path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_mode & stat.S_IROTH:
            continue  # a link, or public (a certificate): nothing to hide
        owner = acct[f.user]
        gid = acct[f.group_of].gid if f.group_of else owner.gid
        _chown(path, owner.uid, gid)
        os.chmod(path, f.mode)
    for binary, user in plan.binaries:
        if binary.parent != paths.bin_dir or user not in acct:
            continue  # only kagent's own staged binaries (bins fetch: 0750 root)
        try:
            st = os.lstat(binary)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            os.chown(binary, -1, acct[user].gid, follow_symlinks=False)
            os.chmod(binary, stat.S_IMODE(st.st_mode) | stat.S_IXGRP)
    if plan.users:
        for private in (paths.pki_dir, paths.etcd_pki_dir):
            if private.is_dir() and not private.is_symlink():
                os.chmod(private, fsutil.MODE_TRAVERSABLE_DIR)


def _can(st: os.stat_result, acct: Account | None, bits: tuple[int, int, int]) -> bool:
    """Permission check as the kernel does it for a child with only its primary group."""
    owner_bit, group_bit, other_bit = bits
    if acct is not None and acct.uid == 0:
        return True
    if acct is not None and st.st_uid == acct.uid:
        return bool(st.st_mode & owner_bit)
    if acct is not None and st.st_gid == acct.gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


_X = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_R = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _describe(path: Path, st: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid} gid {st.st_gid}"


def check_reach(plan: OwnershipPlan, *, accounts: dict[str, Account | None] | None = None,
                skip: Sequence[Path] = (), files: bool = True, own_bin_dir: Path | None = None,
                staged: Mapping[Path, Path] | None = None) -> None:
    """PreconditionError (exit 4) naming the first dir a component's user cannot traverse, or
    the binary it cannot execute, or (``files``) the file it cannot read. Paths that do not
    exist yet are judged by their existing ancestors; ``skip``: dirs kagent itself will make
    traversable; a binary in ``own_bin_dir`` is not judged (kagent gives it the user's group).
    A user that does not exist yet counts as "other". ``staged``: a file's staged replacement
    is judged in its place."""
    acct = accounts if accounts is not None else {u: lookup(u) for u in plan.users}
    redirect = staged or {}
    for user, component, path, kind in plan.reach:
        a = acct.get(user)
        for parent in reversed(path.parents):
            if parent in skip:
                continue
            try:
                st = os.stat(parent)
            except OSError:
                break
            if not _can(st, a, _X):
                raise PreconditionError(
                    str(parent), f"{component} runs as user {user}, who cannot reach {path} through it ({_describe(parent, st)})",
                    hint=f"let it pass: chmod o+x {parent} (or a+x); or put kagent's data and run dirs where {user} can reach "
                         "them; or run the component as another user (spec.install.users)")
        if (kind == "read" and not files) or (kind == "exec" and path.parent == own_bin_dir):
            continue
        try:
            st = os.stat(redirect.get(path, path))
        except OSError:
            continue
        need, what, bit = (_X, "execute", "x") if kind == "exec" else (_R, "read", "r")
        if stat.S_ISREG(st.st_mode) and not _can(st, a, need):
            raise PreconditionError(str(path), f"{component} runs as user {user}, who cannot {what} it ({_describe(path, st)})",
                                    hint=f"chmod o+{bit} {path}, or run the component as another user (spec.install.users)")


def prepare(specs: Sequence[ComponentSpec], paths: Paths, log: Any, *, will_run: bool = True,
            staged: Mapping[Path, Path] | None = None) -> OwnershipPlan:
    """Before the specs start: create the missing users, apply the ownership, check reach.
    ``will_run`` False (``--init-only``: nothing starts): no user is created and nothing is
    demanded; the files of users that exist already are owned by them, the rest stay root's
    until the first start. ``staged``: the PKI files staged to replace files in place (see
    ``apply_ownership``)."""
    plan = plan_ownership(specs)
    if not plan.users:
        return plan
    if not will_run:
        existing = {u: a for u in plan.users if (a := lookup(u)) is not None}
        for u in plan.users:
            if u not in existing:
                log.warning("system_user_missing", user=u, reason="--init-only creates no user; the first start does")
        apply_ownership(_only(plan, set(existing)), paths, accounts=existing, staged=staged)
        return plan
    accounts = {a.name: a for a in ensure_users(plan.users, log)}
    apply_ownership(plan, paths, accounts=accounts, staged=staged)
    check_reach(plan, accounts={**accounts}, staged=staged)
    return plan


def _only(plan: OwnershipPlan, users: set[str]) -> OwnershipPlan:
    """The part of ``plan`` that concerns ``users`` (a shared file needs both of its users)."""
    return OwnershipPlan(users=tuple(u for u in plan.users if u in users),
                         dirs=tuple(d for d in plan.dirs if d.user in users),
                         files=tuple(f for f in plan.files if f.user in users and (f.group_of is None or f.group_of in users)),
                         reach=tuple(r for r in plan.reach if r[0] in users))


def preflight(specs: Sequence[ComponentSpec], paths: Paths) -> None:
    """Before anything is written: each component user can get through the dirs above its
    binary and files (kagent's own PKI dirs excepted: it makes them traversable) and execute
    its binary."""
    check_reach(plan_ownership(specs), skip=(paths.pki_dir, paths.etcd_pki_dir), files=False, own_bin_dir=paths.bin_dir)
