"""``kagent reset``: a pure plan (what to stop, unmount, remove) built from facts gathered by
the edge, and an edge that executes it step by step, collecting every failure.

Safety rules (DESIGN §8, anchors §5):

- a process is stopped only when it is provably this instance's: it carries
  ``KAGENT_MANAGED=<instance_id(run dir)>`` in its environment, or it is a containerd shim
  whose ``-address`` names this run dir's containerd socket, or it descends from such a shim
  (the containers); nothing else is ever signalled, and every signal goes through a pidfd
  opened before the ownership is re-checked (no PID reuse race);
- mounts below the data dir, the kubelet root and the run dir are unmounted deepest first
  (``UMOUNT_NOFOLLOW``; a lazy ``MNT_DETACH`` only when a plain unmount fails); the data dir's
  and the run dir's own mount points are never unmounted, only emptied;
- removal walks directories through file descriptors (``O_NOFOLLOW|O_DIRECTORY``,
  ``unlink``/``rmdir`` with ``dir_fd``): a symlink is removed as a link and never followed, and
  a directory that is still a mount point (or on another device) is left alone and reported.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import re
import select
import shlex
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from kagent.errors import KagentError, PreconditionError
from kagent.node.lock import refuse_if_running
from kagent.paths import DEFAULT_DATA_DIR, Paths

if TYPE_CHECKING:
    from kagent.join.controller import MemberState

UMOUNT_NOFOLLOW = 8
MNT_DETACH = 2
SHIM_PREFIX = "containerd-shim"
TERM_GRACE = 10.0  # seconds a stopped process gets before SIGKILL
MAX_DEPTH = 256  # deeper directory trees are reported, not walked
_OCTAL = re.compile(r"\\([0-3][0-7]{2})")


# ---- pure: facts ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mount:
    mount_id: int
    parent_id: int
    point: str
    fstype: str
    source: str


def unescape_mount_path(text: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\040``-style octal."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """``/proc/self/mountinfo`` lines -> mounts, in mount order (proc(5))."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        try:
            mounts.append(Mount(mount_id=int(fields[0]), parent_id=int(fields[1]), point=unescape_mount_path(fields[4]),
                                fstype=fields[sep + 1], source=unescape_mount_path(fields[sep + 2])))
        except (ValueError, IndexError):
            continue
    return mounts


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]
    marker: str | None  # the value of KAGENT_MANAGED in its environment, if any
    component: str | None = None  # KAGENT_COMPONENT

    @property
    def name(self) -> str:
        return self.component or (Path(self.argv[0]).name if self.argv else f"pid {self.pid}")


@dataclass(frozen=True, slots=True)
class Target:
    """A process to stop, why it is ours, and in which wave (containers, shims, the rest)."""

    pid: int
    name: str
    reason: str
    wave: int  # 0 containers, 1 shims, 2 marked children


def _is_shim_of(p: Proc, containerd_sock: str) -> bool:
    if not p.argv or not Path(p.argv[0]).name.startswith(SHIM_PREFIX):
        return False
    args = list(p.argv[1:])
    for i, a in enumerate(args):
        if a in ("-address", "--address") and i + 1 < len(args) and args[i + 1] == containerd_sock:
            return True
        if a in (f"-address={containerd_sock}", f"--address={containerd_sock}"):
            return True
    return False


def owned_processes(procs: Iterable[Proc], *, instance: str, containerd_sock: str, self_pid: int) -> list[Target]:
    """Pure. The processes reset may stop: marked ones, shims of this instance's containerd and
    everything below those shims. Never ``self_pid`` or pid 1."""
    by_pid = {p.pid: p for p in procs}
    children: dict[int, list[int]] = {}
    for p in by_pid.values():
        children.setdefault(p.ppid, []).append(p.pid)
    targets: dict[int, Target] = {}
    for p in by_pid.values():
        if p.pid in (self_pid, 1):
            continue
        if _is_shim_of(p, containerd_sock):
            targets[p.pid] = Target(p.pid, p.name, f"containerd shim on {containerd_sock}", 1)
        elif p.marker == instance:
            targets[p.pid] = Target(p.pid, p.name, "KAGENT_MANAGED marker of this run dir", 2)
    for shim in [t for t in targets.values() if t.wave == 1]:
        stack = list(children.get(shim.pid, ()))
        while stack:
            pid = stack.pop()
            if pid in (self_pid, 1) or (pid in targets and targets[pid].wave != 2):
                continue
            targets[pid] = Target(pid, by_pid[pid].name, f"container process under shim {shim.pid}", 0)
            stack.extend(children.get(pid, ()))
    return sorted(targets.values(), key=lambda t: (t.wave, t.pid))


def _below(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


def mounts_below(mounts: Sequence[Mount], roots: Iterable[str]) -> list[str]:
    """Pure. Mount points strictly below any root, deepest first and, on one point, the last
    mounted first. A root's own mount point is never in the list."""
    roots = [r for r in roots]
    picked = [(m.point.count("/"), i, m.point) for i, m in enumerate(mounts)
              if any(_below(m.point, r) for r in roots) and m.point not in roots]
    return [point for _, _, point in sorted(picked, reverse=True)]


# ---- pure: the plan -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ResetPlan:
    roots: tuple[str, ...]
    stop: tuple[Target, ...]
    unmount: tuple[str, ...]
    remove: tuple[str, ...]  # top-level entries of the data dir and the run dir
    keep_mounted: tuple[str, ...]  # roots that are mount points: emptied, not removed
    notes: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # installed unit files that run this data dir
    leave: tuple[str, ...] = ()  # what is left first (the etcd cluster, the worker's node record)

    @property
    def empty(self) -> bool:
        return not (self.stop or self.unmount or self.remove or self.services)


def roots_of(paths: Paths) -> tuple[str, ...]:
    """The trees reset empties: data dir, kubelet root (when it lives elsewhere), run dir."""
    out: list[str] = []
    for p in (paths.data_dir, paths.kubelet_root, paths.run_dir):
        real = os.path.realpath(p)
        if real not in out and not any(_below(real, r) for r in out):
            out.append(real)
    return tuple(out)


def plan_reset(*, roots: Sequence[str], mounts: Sequence[Mount], targets: Sequence[Target],
               entries: dict[str, Sequence[str]], notes: Sequence[str] = (), services: Sequence[str] = ()) -> ResetPlan:
    """Pure. ``entries``: each existing root -> its entry names. A root that is a mount point
    is emptied and kept; any other root is removed with its contents."""
    points = {m.point for m in mounts}
    remove: list[str] = []
    for root in roots:
        if root in entries:
            remove.extend(os.path.join(root, name) for name in sorted(entries[root]))
            if root not in points:
                remove.append(root)
    return ResetPlan(roots=tuple(roots), stop=tuple(targets), unmount=tuple(mounts_below(mounts, roots)),
                     remove=tuple(remove), keep_mounted=tuple(r for r in roots if r in points and r in entries),
                     notes=tuple(notes), services=tuple(services))


# ---- edge: gathering ------------------------------------------------------------------------

def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        return parse_mountinfo(fh.read())


def _read_proc(pid: int) -> Proc | None:
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat", "rb") as fh:
            statline = fh.read()
        ppid = int(statline[statline.rindex(b")") + 2:].split()[1])
        with open(f"{base}/cmdline", "rb") as fh:
            argv = tuple(a.decode(errors="replace") for a in fh.read().split(b"\0") if a)
        with open(f"{base}/environ", "rb") as fh:
            env = fh.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    marker = component = None
    for item in env:
        if item.startswith(b"KAGENT_MANAGED="):
            marker = item.split(b"=", 1)[1].decode(errors="replace")
        elif item.startswith(b"KAGENT_COMPONENT="):
            component = item.split(b"=", 1)[1].decode(errors="replace")
    return Proc(pid=pid, ppid=ppid, argv=argv, marker=marker, component=component)


def read_procs() -> list[Proc]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _read_proc(int(name))
            if p is not None:
                out.append(p)
    return out


def _list_entries(root: str) -> list[str] | None:
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def build_plan(paths: Paths, service_root: Path = Path("/")) -> ResetPlan:
    from kagent.supervisor.process import instance_id

    roots = roots_of(paths)
    targets = owned_processes(read_procs(), instance=instance_id(paths.run_dir),
                              containerd_sock=str(paths.containerd_sock), self_pid=os.getpid())
    entries: dict[str, Sequence[str]] = {}
    for r in roots:
        listed = _list_entries(r)
        if listed is not None:
            entries[r] = listed
    notes: list[str] = []
    from kagent.join.worker import joined_control_api

    leave: list[str] = []
    url = joined_control_api(paths)
    if url is not None:
        leave.append(f"the node record of this worker is removed through the controller API {url}")
    member = etcd_membership(paths)
    if member is not None:
        leave.append(f"the etcd cluster, as member {member.name}, through one of {', '.join(member.api_urls)} "
                     "(not with --force)")
    units = _our_units(paths, service_root)
    services = tuple(str(p) for p, mine in units if mine)
    notes.extend(f"service {p} runs another data dir: left installed" for p, mine in units if not mine)
    plan = plan_reset(roots=roots, mounts=read_mounts(), targets=targets, entries=entries, notes=notes, services=services)
    return dataclasses.replace(plan, leave=tuple(leave))


def unit_data_dir(text: str) -> str:
    """Pure. The ``--data-dir`` a rendered kagent unit (systemd ``ExecStart=``) or OpenRC script
    (``command_args=``) runs with; the default data dir when it names none."""
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key not in ("ExecStart", "command_args"):
            continue
        try:
            words = shlex.split(value)
            if key == "command_args" and len(words) == 1:
                words = shlex.split(words[0])  # OpenRC: one double-quoted string of single-quoted words
        except ValueError:
            continue
        for i, w in enumerate(words):
            if w.startswith("--data-dir="):
                return w.split("=", 1)[1]
            if w == "--data-dir" and i + 1 < len(words):
                return words[i + 1]
        return str(DEFAULT_DATA_DIR)
    return str(DEFAULT_DATA_DIR)


def _our_units(paths: Paths, root: Path) -> list[tuple[Path, bool]]:
    """The installed kagent units under ``root``: (path, runs this data dir)."""
    from kagent.service.install import find_installed

    ours = os.path.realpath(paths.data_dir)
    out = []
    for u in find_installed(root):
        try:
            text = u.path.read_text(errors="replace")
        except OSError:
            continue
        out.append((u.path, os.path.realpath(unit_data_dir(text)) == ours))
    return out


def remove_service(paths: Paths, root: Path, report: ResetReport) -> None:
    """Disable and delete the installed unit(s) whose ExecStart runs this data dir; a unit of
    another data dir is left alone (and mentioned)."""
    from kagent.service.install import remove_installed

    mine = {path for path, is_mine in _our_units(paths, root) if is_mine}
    try:
        removed = remove_installed(root, only=lambda u: u.path in mine)
    except KagentError as err:
        report.failures.append(Failure(err.where, err.what))
        return
    except OSError as err:
        report.failures.append(Failure(str(err.filename or root), f"cannot remove the service: {err.strerror or err}"))
        return
    for u in removed:
        report.done.append(f"removed service {u.name} ({u.path})")


# ---- edge: executing --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Failure:
    path: str
    what: str


@dataclass
class ResetReport:
    plan: ResetPlan
    done: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _still_ours(t: Target, instance: str, containerd_sock: str, shim_pids: set[int]) -> bool:
    p = _read_proc(t.pid)
    if p is None:
        return False
    if t.wave == 2:
        return p.marker == instance
    if t.wave == 1:
        return _is_shim_of(p, containerd_sock)
    for _ in range(64):  # a container process: some ancestor is one of this instance's shims
        if p.ppid in shim_pids:
            return True
        parent = _read_proc(p.ppid) if p.ppid > 1 else None
        if parent is None:
            return False
        p = parent
    return False


def _stop_wave(targets: Sequence[Target], *, instance: str, containerd_sock: str, shim_pids: set[int],
               first: int, grace: float, report: ResetReport) -> None:
    pidfds: dict[int, tuple[int, Target]] = {}
    for t in targets:
        try:
            fd = os.pidfd_open(t.pid)
        except ProcessLookupError:
            continue
        except OSError as err:
            report.failures.append(Failure(f"pid {t.pid}", f"cannot open a pidfd: {err.strerror}"))
            continue
        # the pidfd pins the process; only now is ownership checked again (no PID reuse race)
        if not _still_ours(t, instance, containerd_sock, shim_pids):
            os.close(fd)
            continue
        pidfds[fd] = (fd, t)
    try:
        for fd, t in pidfds.values():
            try:
                signal.pidfd_send_signal(fd, first)
            except ProcessLookupError:
                pass
        pending = set(pidfds)
        deadline = time.monotonic() + grace
        for sig in (None, signal.SIGKILL):
            if sig is not None:
                for fd in pending:
                    try:
                        signal.pidfd_send_signal(fd, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 5.0
            while pending and time.monotonic() < deadline:
                ready, _, _ = select.select(list(pending), [], [], max(0.0, deadline - time.monotonic()))
                pending -= set(ready)
            if not pending:
                break
        for fd, t in pidfds.values():
            if fd in pending:
                report.failures.append(Failure(f"pid {t.pid}", f"{t.name} did not exit after SIGKILL"))
            else:
                report.done.append(f"stopped pid {t.pid} ({t.name})")
    finally:
        for fd in pidfds:
            os.close(fd)


def stop_processes(plan: ResetPlan, paths: Paths, report: ResetReport, *, grace: float = TERM_GRACE) -> None:
    from kagent.supervisor.process import instance_id

    instance, sock = instance_id(paths.run_dir), str(paths.containerd_sock)
    shim_pids = {t.pid for t in plan.stop if t.wave == 1}
    waves = (
        (0, signal.SIGTERM, grace / 2),   # containers: their shims are still up to reap them
        (1, signal.SIGKILL, 5.0),         # shims hold nothing once their containers are gone
        (2, signal.SIGTERM, grace),       # containerd, etcd, kubelet, ...
    )
    for wave, sig, wait in waves:
        group = [t for t in plan.stop if t.wave == wave]
        if group:
            _stop_wave(group, instance=instance, containerd_sock=sock, shim_pids=shim_pids, first=sig, grace=wait,
                       report=report)


_libc: ctypes.CDLL | None = None


def _umount2(path: str, flags: int) -> int:
    """0, or the errno."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.umount2(os.fsencode(path), ctypes.c_int(flags))
    return 0 if rc == 0 else ctypes.get_errno()


def unmount_all(plan: ResetPlan, report: ResetReport) -> None:
    for point in plan.unmount:
        err = _umount2(point, UMOUNT_NOFOLLOW)
        if err == errno.EBUSY:
            time.sleep(0.2)  # a process that was just killed may still be releasing it
            err = _umount2(point, UMOUNT_NOFOLLOW)
        if err == 0:
            report.done.append(f"unmounted {point}")
        elif err in (errno.EINVAL, errno.ENOENT):
            report.done.append(f"unmounted {point} (already gone)")
        else:
            lazy = _umount2(point, UMOUNT_NOFOLLOW | MNT_DETACH)
            if lazy == 0:
                report.done.append(f"detached {point} (lazy unmount: it was busy: {os.strerror(err)})")
            else:
                report.failures.append(Failure(point, f"cannot unmount: {os.strerror(err)}; lazy detach: {os.strerror(lazy)}"))


class _Remover:
    """Deletes below an open directory without following symlinks or crossing mounts."""

    def __init__(self, fences: set[str], report: ResetReport) -> None:
        self.fences = fences
        self.report = report

    def empty(self, fd: int, path: str, dev: int, depth: int = 0) -> bool:
        """Remove everything below ``fd``; True when it is now empty."""
        ok = True
        try:
            names = os.listdir(fd)
        except OSError as err:
            self.report.failures.append(Failure(path, f"cannot list: {err.strerror}"))
            return False
        for name in names:
            ok = self.remove(fd, name, os.path.join(path, name), dev, depth) and ok
        return ok

    def remove(self, dir_fd: int, name: str, path: str, dev: int, depth: int) -> bool:
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return True
        except OSError as err:
            self.report.failures.append(Failure(path, f"cannot stat: {err.strerror}"))
            return False
        try:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dir_fd)  # a symlink goes as a link: its target is untouched
                return True
            if path in self.fences or st.st_dev != dev:
                self.report.failures.append(Failure(path, "is still a mount point; not removed"))
                return False
            if depth >= MAX_DEPTH:
                self.report.failures.append(Failure(path, f"nested deeper than {MAX_DEPTH} levels; not removed"))
                return False
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                cst = os.fstat(child)
                if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
                    self.report.failures.append(Failure(path, "changed while being removed; not removed"))
                    return False
                if not self.empty(child, path, dev, depth + 1):
                    return False
            finally:
                os.close(child)
            os.rmdir(name, dir_fd=dir_fd)
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            self.report.failures.append(Failure(path, f"cannot remove: {err.strerror}"))
            return False


def remove_trees(plan: ResetPlan, report: ResetReport) -> None:
    fences = {m.point for m in read_mounts()}  # what is still mounted after unmount_all
    remover = _Remover(fences, report)
    for root in plan.roots:
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as err:
            report.failures.append(Failure(root, f"cannot open: {err.strerror}"))
            continue
        try:
            emptied = remover.empty(fd, root, os.fstat(fd).st_dev)
        finally:
            os.close(fd)
        if not emptied:
            continue
        if root in plan.remove:
            try:
                os.rmdir(root)
                report.done.append(f"removed {root}")
            except FileNotFoundError:
                pass
            except OSError as err:
                report.failures.append(Failure(root, f"cannot remove: {err.strerror}"))
        else:
            report.done.append(f"emptied {root} (a mount point: kept)")


def etcd_membership(paths: Paths) -> MemberState | None:
    """This controller's etcd member state when it is (or is joining) one member of a
    multi-member cluster: it knows other controllers' APIs. None for a single controller, a
    member that left, and a data dir without etcd."""
    from kagent.join.controller import load_state

    if not paths.etcd_data_dir.is_dir():
        return None
    st = load_state(paths)
    if st is None or st.state not in ("initial", "joined", "pending") or not st.api_urls:
        return None
    return st


def leave_etcd(paths: Paths, report: ResetReport, *, force: bool) -> None:
    """A controller that is one member of a multi-member etcd cluster leaves it first, through
    another controller's API (its own etcd is stopped), so the survivors never carry a dead
    member. Refused (exit 4, nothing changed) when no other controller removes it, unless
    ``force``."""
    from kagent.join.controller import leave_through_api

    st = etcd_membership(paths)
    if st is None:
        return
    if force:
        report.notes.append(f"etcd member {st.name} did not leave its cluster (--force): remove it on a survivor with "
                            "`kagent etcd leave --peer-address <this node's peer address>`")
        return
    try:
        through = leave_through_api(paths, name=st.name, api_urls=list(st.api_urls))
    except KagentError as err:
        raise PreconditionError(f"etcd member {st.name}", f"cannot leave the etcd cluster: {err.what}",
                                hint="start another controller of the cluster and run kagent reset again, or pass "
                                     "--force to reset without leaving (then remove the member on a survivor with "
                                     "kagent etcd leave --peer-address <this node's peer address>)") from None
    report.done.append(f"etcd member {st.name} left the cluster (through {through})")


def leave_as_worker(paths: Paths, report: ResetReport) -> None:
    """A worker joined with a token removes its node record through the controller API (so
    its name may join again); an unreachable controller is a note, not a failure."""
    from kagent.join.worker import joined_control_api

    if joined_control_api(paths) is None:
        return
    from kagent.join.worker_leave import leave

    try:
        left = leave(paths)
    except KagentError as err:
        report.notes.append(f"node record not removed: {err.where}: {err.what}" + (f" ({err.hint})" if err.hint else ""))
        return
    if left is not None:
        report.done.append(f"removed node record {left[0]} through {left[1]}")


def reset(paths: Paths, *, dry_run: bool = False, force: bool = False, grace: float = TERM_GRACE,
          service_root: Path = Path("/")) -> ResetReport:
    """Plan, then (unless ``dry_run``) stop, unmount and remove. Holds the instance lock
    throughout (when the run dir exists), so no agent can start in the middle."""
    from kagent.node.lock import InstanceLock

    refuse_if_running(paths, "reset")
    lock: InstanceLock | None = None
    if not dry_run and paths.run_dir.is_dir():
        try:
            lock = InstanceLock(paths.lock_file).acquire()
        except KagentError:
            refuse_if_running(paths, "reset")
            raise
    try:
        plan = build_plan(paths, service_root)
        report = ResetReport(plan=plan)
        if dry_run or plan.empty:
            return report
        leave_etcd(paths, report, force=force)  # before anything is touched: a refusal changes nothing
        leave_as_worker(paths, report)
        if plan.services:
            remove_service(paths, service_root, report)  # first: the init system must not restart the agent
        stop_processes(plan, paths, report, grace=grace)
        unmount_all(plan, report)
        remove_trees(plan, report)
        return report
    finally:
        if lock is not None:
            lock.release()
