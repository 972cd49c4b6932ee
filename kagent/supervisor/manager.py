"""Edge (the composition of the supervisor). One asyncio loop runs every component:

- one runner task per component: wait for its dependencies' health, write its files, spawn,
  gate on its health check, wait for the exit event, ask the pure policy what next;
- a command queue fed by the signal handlers and the status socket (stop, reload, renew), so
  a signal takes the same path as ``kagent reload`` and handlers never do work themselves;
- the status socket, served from before the first spawn until after the last stop.

Nothing wakes up while every child is up and has no health check: exits arrive as pidfd
events, output as pipe events, commands as socket or signal events.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Collection, Coroutine, Iterable, Mapping, Sequence

import kagent
from kagent import fsutil, log
from kagent.node import files
from kagent.components.spec import ComponentSpec
from kagent.errors import ComponentError, ExitCode, KagentError
from kagent.node.lock import InstanceLock
from kagent.paths import Paths
from kagent.service.notify import Readiness
from kagent.supervisor import health as health_mod
from kagent.supervisor import process, status
from kagent.supervisor.policy import ExitStatus, Health, RestartPolicy, State, decide_restart
from kagent.supervisor.reload import diff, start_order

HEALTH_FIRST_PROBE = 0.02  # start-up gate: first probe after 20 ms, doubling to HEALTH_GATE_MAX
HEALTH_GATE_MAX = 1.0
DRAIN_TIMEOUT = 0.5
LOG_LINES_PER_S = 1000  # child output lines per second per component that reach the structured log
LOG_LINES_BURST = 5000  # how long a failed child's output may take to reach EOF before we quote it


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(eq=False)
class Unit:
    """The manager's record of one component (mutable; owned by the loop's thread)."""

    spec: ComponentSpec
    state: State = State.STARTING
    health: Health = Health.UNKNOWN
    child: process.Child | None = None
    restarts: int = 0
    spawns: int = 0
    failures: int = 0
    last_exit: tuple[ExitStatus, str] | None = None
    strict: bool = False  # initial start: any failure is fatal instead of a restart
    healthy: asyncio.Event = field(default_factory=asyncio.Event)
    stop_req: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    log_file: IO[str] | None = None


@dataclass(frozen=True, slots=True)
class _Cmd:
    kind: str  # "stop" | "reload" | "renew"
    reply: asyncio.Future[dict[str, Any]] | None = None
    paths: frozenset[Path] = frozenset()


class Manager:
    def __init__(self, *, paths: Paths, role: str, version: str, log_dir: Path | None,
                 policy: RestartPolicy, load_specs: Callable[[], Sequence[ComponentSpec]]) -> None:
        self.paths = paths
        self.role = role
        self.version = version
        self.log_dir = log_dir
        self.policy = policy
        self.load_specs = load_specs
        self.instance = process.instance_id(paths.run_dir)
        self.units: dict[str, Unit] = {}
        self.queue: asyncio.Queue[_Cmd] = asyncio.Queue()
        self.phase = "loading"  # loading | starting | running | stopping
        self.started_mono = time.monotonic()
        self.log = log.get()
        self._failure: asyncio.Future[ComponentError] | None = None
        self.stop_requested = False
        self.stop_event = asyncio.Event()  # set as soon as a stop is queued: long waits give way
        self.extra_status: dict[str, Callable[[], Any]] = {}  # more top-level fields of GET /status (backup)
        self.readiness = Readiness(None)  # sd_notify; run_agent sets the real one

    def changed(self) -> None:
        """A component's state or health changed: the one-line STATUS= follows it."""
        if self.readiness.enabled:
            self.readiness.status(self.phase, self.status_doc()["components"])

    def request(self, cmd: _Cmd) -> None:
        """Enqueue a command (what signal handlers and the socket do, and nothing more)."""
        self.queue.put_nowait(cmd)
        if cmd.kind == "stop":
            self.stop_event.set()

    # ---- status --------------------------------------------------------------------------
    def status_doc(self) -> dict[str, Any]:
        now = time.monotonic()
        comps = []
        for u in self.units.values():
            alive = u.child is not None and u.child.alive
            last = None
            if u.last_exit is not None:
                ex, at = u.last_exit
                last = {"signal": ex.signal, "at": at} if ex.signal is not None else {"code": ex.code, "at": at}
            comps.append({
                "name": u.spec.name,
                "state": str(u.state),
                "pid": u.child.pid if alive and u.child else None,
                "restarts": u.restarts,
                "health": str(u.health),
                "uptime_s": round(now - u.child.started_at, 3) if alive and u.child else None,
                "last_exit": last,
            })
        return {"agent": {"pid": os.getpid(), "role": self.role, "version": self.version,
                          "uptime_s": round(now - self.started_mono, 3)},
                "components": comps, **{k: f() for k, f in self.extra_status.items()}}

    async def handle_http(self, method: str, target: str) -> tuple[int, Any]:
        if method == "GET" and target == "/status":
            return 200, self.status_doc()
        if method == "GET" and target == "/components":
            return 200, self.status_doc()["components"]
        if method == "POST" and target == "/reload":
            if self.phase != "running":
                return 409, _plan_doc(error=f"agent is {self.phase}; try again when it is running", rejected=True)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.request(_Cmd("reload", reply=fut))
            return 200, await fut
        return 404, {"error": f"no route {method} {target}"}

    # ---- one component ---------------------------------------------------------------------
    def _sink(self, u: Unit) -> process.LineSink:
        """Each line to the structured log (at most LOG_LINES_PER_S per component, bursts of
        LOG_LINES_BURST; the rest is counted and reported, so a flooding child cannot eat the
        agent's CPU or the journal) and, unthrottled, to the component's log file."""
        name = u.spec.name
        logger = self.log
        budget = {"tokens": float(LOG_LINES_BURST), "at": time.monotonic(), "dropped": 0}

        def sink(stream: str, line: str) -> None:
            if u.log_file is not None:
                u.log_file.write(f"{stream}: {line}\n")
            now = time.monotonic()
            budget["tokens"] = min(LOG_LINES_BURST, budget["tokens"] + (now - budget["at"]) * LOG_LINES_PER_S)
            budget["at"] = now
            if budget["tokens"] < 1:
                budget["dropped"] += 1
                return
            budget["tokens"] -= 1
            if budget["dropped"]:
                logger.warning("child_output_dropped", component=name, lines=budget["dropped"],
                               reason=f"more than {LOG_LINES_PER_S} lines/s")
                budget["dropped"] = 0
            logger.info("child_output", component=name, stream=stream, line=line)

        return sink

    def _prepare(self, spec: ComponentSpec) -> None:
        for d, mode in spec.dirs:
            fsutil.ensure_dir(d, mode)
        for f in spec.files:
            fsutil.write_atomic(f.path, f.data, mode=f.mode)

    def _fail(self, u: Unit, what: str, tail: Iterable[str] = ()) -> None:
        lines = [ln for ln in tail if ln.strip()]
        msg = what + ("; last output:\n  " + "\n  ".join(lines) if lines else "; it printed nothing")
        u.state = State.FAILED
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(ComponentError(f"component {u.spec.name}", msg,
                                                    hint=f"see the log lines with component={u.spec.name}"))

    async def _wait_deps(self, u: Unit) -> bool:
        """Until every dependency is healthy; False when a stop came first."""
        pending = [self.units[d].healthy for d in u.spec.after if d in self.units and not self.units[d].healthy.is_set()]
        if not pending:
            return not u.stop_req.is_set()
        waits = {asyncio.ensure_future(e.wait()) for e in pending}
        stop = asyncio.ensure_future(u.stop_req.wait())
        try:
            while waits and not stop.done():
                done, _ = await asyncio.wait(waits | {stop}, return_when=asyncio.FIRST_COMPLETED)
                waits -= done
        finally:
            for t in (*waits, stop):
                t.cancel()
        return not u.stop_req.is_set()

    async def _run_guarded(self, u: Unit) -> None:
        """A bug in a runner must not leave a component silently unsupervised."""
        try:
            await self._run(u)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - logged with its traceback, then fatal or visible
            self.log.exception("runner_crashed", component=u.spec.name, reason=repr(err))
            self._fail(u, f"internal error: {err!r}")
            u.state = State.FAILED

    async def _run(self, u: Unit) -> None:
        """The runner: spawn, watch, restart per policy, until a stop is requested."""
        spec_log = self.log.bind(component=u.spec.name)
        pid, outcome = await process.terminate_stale(self.paths.pidfile(u.spec.name), u.spec, self.instance)
        if outcome in ("terminated", "killed"):
            spec_log.warning("stale_child_stopped", pid=pid, how=outcome)
        elif outcome == "not_ours":
            spec_log.info("stale_pidfile_ignored", pid=pid, reason="process is not a child of this kagent")
        while await self._wait_deps(u):
            spec = u.spec
            u.state, u.health = State.STARTING, Health.UNKNOWN
            now = time.monotonic()
            try:
                self._prepare(spec)
                child = process.spawn(spec, instance=self.instance, sink=self._sink(u), now=now,
                                      loop=asyncio.get_running_loop())
            except (KagentError, OSError) as err:
                what = err.what if isinstance(err, KagentError) else str(err)
                spec_log.error("component_spawn_failed", reason=what)
                if u.strict:
                    self._fail(u, f"cannot start: {what}")
                    return
                if not await self._backoff(u, spec_log, started_at=now, now=time.monotonic()):
                    break
                continue
            u.child = child
            if u.spawns:
                u.restarts += 1
            u.spawns += 1
            fsutil.write_atomic(self.paths.pidfile(spec.name), f"{child.pid}\n", mode=fsutil.MODE_PIDFILE)
            spec_log.info("component_started", pid=child.pid, attempt=u.failures + 1)
            self.changed()
            watcher = asyncio.ensure_future(self._watch_health(u, child, spec_log))
            try:
                ex = await child.exited
            finally:
                watcher.cancel()
            u.healthy.clear()
            u.health = Health.UNKNOWN
            at = _utc_now()
            u.last_exit = (ex, at)
            self.paths.pidfile(spec.name).unlink(missing_ok=True)
            self.changed()
            if u.stop_req.is_set():
                break
            exited_at = time.monotonic()
            spec_log.warning("component_exited", pid=child.pid, exit_code=ex.code, signal=ex.signal,
                             uptime_s=round(exited_at - child.started_at, 3))
            if u.strict:
                await child.drain(DRAIN_TIMEOUT)
                self._fail(u, f"{ex.describe()} during start-up", child.tail)
                return
            if not await self._backoff(u, spec_log, started_at=child.started_at, now=exited_at):
                break
        if u.state is not State.FAILED:
            u.state = State.STOPPED

    async def _backoff(self, u: Unit, spec_log: Any, *, started_at: float, now: float) -> bool:
        """Apply the policy; False when a stop arrived while waiting."""
        d = decide_restart(self.policy, started_at=started_at, now=now, failures=u.failures)
        u.failures = d.failures
        if d.delay <= 0:
            return not u.stop_req.is_set()
        u.state = State.BACKOFF
        spec_log.info("component_backoff", restart_in_s=d.delay, attempt=d.failures)
        self.changed()
        try:
            await asyncio.wait_for(u.stop_req.wait(), d.delay)
            return False
        except TimeoutError:
            return True

    async def _watch_health(self, u: Unit, child: process.Child, spec_log: Any) -> None:
        check = u.spec.health
        if check is None:  # nothing to probe: up means ready, and nothing wakes us later
            u.state = State.RUNNING
            u.healthy.set()
            return
        deadline = child.started_at + u.spec.startup_timeout
        wait = HEALTH_FIRST_PROBE
        while child.alive:
            result = await health_mod.probe(check)
            if result.ok:
                break
            now = time.monotonic()
            if now >= deadline:
                if u.strict:
                    spec_log.error("component_unhealthy", reason=result.detail)
                    self._fail(u, f"not healthy after {u.spec.startup_timeout:g}s ({result.detail})", child.tail)
                    return
                if u.health is not Health.UNHEALTHY:
                    spec_log.warning("component_unhealthy", reason=result.detail)
                u.health = Health.UNHEALTHY
                delay = u.spec.health_interval
            else:
                delay = min(wait, deadline - now)
                wait = min(wait * 2, HEALTH_GATE_MAX)
            await asyncio.sleep(delay)
        if not child.alive:
            return
        u.state, u.health = State.RUNNING, Health.HEALTHY
        u.healthy.set()
        spec_log.info("component_healthy", pid=child.pid, duration_ms=round((time.monotonic() - child.started_at) * 1000))
        if u.spec.prune_siblings_of:  # the dirs of the spec this one replaced are no longer read
            files.prune_superseded(u.spec.prune_siblings_of, spec_log)
        self.changed()
        while child.alive:
            await asyncio.sleep(u.spec.health_interval)
            if not child.alive:
                return
            result = await health_mod.probe(check)
            new = Health.HEALTHY if result.ok else Health.UNHEALTHY
            if new is not u.health:
                spec_log.log(20 if result.ok else 30, "component_health_changed", health=str(new), reason=result.detail)
                u.health = new
                self.changed()

    def _launch(self, spec: ComponentSpec, *, strict: bool) -> Unit:
        u = self.units.get(spec.name)
        if u is None:
            u = Unit(spec=spec)
            self.units[spec.name] = u
        u.spec, u.strict = spec, strict
        u.stop_req.clear()
        u.state = State.STARTING
        if self.log_dir is not None and u.log_file is None:
            u.log_file = open(self.log_dir / f"{spec.name}.log", "a", buffering=1, encoding="utf-8", errors="replace")
        u.task = asyncio.ensure_future(self._run_guarded(u))
        return u

    async def _stop_unit(self, u: Unit) -> None:
        u.stop_req.set()
        child = u.child
        if child is not None and child.alive:
            u.state = State.STOPPING
            self.log.info("stop_requested", component=u.spec.name, pid=child.pid, signal=int(u.spec.stop_signal))
            ex, killed = await child.stop(u.spec.stop_signal, u.spec.stop_timeout)
            if killed:
                self.log.warning("stop_timed_out", component=u.spec.name, pid=child.pid, timeout_s=u.spec.stop_timeout)
            if ex is None:
                self.log.error("stop_abandoned", component=u.spec.name, pid=child.pid,
                               reason=f"still there {process.KILL_WAIT:g}s after SIGKILL")
                if u.task is not None:
                    u.task.cancel()
            else:
                self.log.info("component_stopped", component=u.spec.name, pid=child.pid, exit_code=ex.code,
                              signal=ex.signal)
        if u.task is not None:
            await u.task
        if u.state is not State.FAILED:
            u.state = State.STOPPED
        self.changed()

    async def stop_units(self, names: Collection[str]) -> None:
        """Stop ``names``, each only after the ones among them that depend on it have stopped."""
        targets = [self.units[n] for n in names if n in self.units]
        done = {u.spec.name: asyncio.Event() for u in targets}

        async def one(u: Unit) -> None:
            for other in targets:
                if u.spec.name in other.spec.after and other is not u:
                    await done[other.spec.name].wait()
            try:
                await self._stop_unit(u)
            finally:
                done[u.spec.name].set()

        await asyncio.gather(*(one(u) for u in targets))

    # ---- start, reload, renew --------------------------------------------------------------
    async def initial_start(self, specs: Sequence[ComponentSpec]) -> ComponentError | None:
        """Start all, dependencies first (each waits for its dependencies' health). Returns the
        first failure, or None when every component is healthy."""
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        for spec in start_order(specs):
            self._launch(spec, strict=True)
        ready = asyncio.ensure_future(asyncio.gather(*(u.healthy.wait() for u in self.units.values())))
        cmd = asyncio.ensure_future(self._next_stop())
        try:
            waits: set[asyncio.Future[Any]] = {ready, self._failure, cmd}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            cmd.cancel()
        failure = self._failure.result() if self._failure.done() else None
        for u in self.units.values():
            u.strict = False
        self._failure = None
        return failure

    async def _next_stop(self) -> None:
        """During start-up only a stop is honoured; a reload is answered as rejected."""
        while True:
            c = await self.queue.get()
            if c.kind == "stop":
                self.stop_requested = True
                return
            if c.reply is not None and not c.reply.done():
                c.reply.set_result(_plan_doc(error="agent is starting; try again when it is running", rejected=True))
            else:
                self.log.warning("reload_ignored", reason="agent is still starting")

    async def reload(self) -> dict[str, Any]:
        self.log.info("reload_requested")
        try:
            new = start_order(await asyncio.to_thread(self.load_specs))
        except KagentError as err:
            self.log.error("reload_rejected", reason=err.render())
            return _plan_doc(error=err.render(), rejected=True,
                             unchanged=list(self.units))
        plan = diff([u.spec for u in self.units.values()], new)
        by_name = {s.name: s for s in new}
        await self.stop_units(plan.removed)
        for name in plan.removed:
            u = self.units.pop(name)
            if u.log_file is not None:
                u.log_file.close()
        await self.stop_units(plan.restart)
        for name in plan.signal:
            u = self.units[name]
            u.spec = by_name[name]
            self._prepare(u.spec)
            if u.child is not None:
                u.child.signal(u.spec.reload_signal)
            self.log.info("component_signalled", component=name, signal=int(u.spec.reload_signal))
        for name in plan.update:
            self.units[name].spec = by_name[name]
        # keep the new start order for status and for the next shutdown
        started = []
        for spec in new:
            if spec.name in plan.added or spec.name in plan.restart:
                started.append(self._launch(spec, strict=False))
        self.units = {s.name: self.units[s.name] for s in new}
        await self._wait_healthy(started)
        self.log.info("reload_done", restarted=list(plan.restart), started=list(plan.added),
                      stopped=list(plan.removed), signalled=list(plan.signal))
        return _plan_doc(restarted=list(plan.restart), started=list(plan.added), stopped=list(plan.removed),
                         signalled=list(plan.signal), unchanged=[*plan.unchanged, *plan.update])

    async def _wait_healthy(self, units: Sequence[Unit]) -> None:
        """Until the (re)started units are healthy, their startup timeout passed, or a stop came."""
        if not units:
            return
        timeout = max(u.spec.startup_timeout for u in units)
        waits = [asyncio.ensure_future(u.healthy.wait()) for u in units]
        stop = asyncio.ensure_future(self.stop_event.wait())
        all_healthy = asyncio.ensure_future(asyncio.wait(waits))
        try:
            await asyncio.wait([all_healthy, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*waits, stop, all_healthy):
                t.cancel()

    async def restart_readers(self, rewritten: Collection[Path]) -> None:
        names = [u.spec.name for u in self.units.values() if set(u.spec.reads) & set(rewritten)]
        if not names:
            return
        self.log.info("renewed_files_restart", components=names, paths=sorted(map(str, rewritten)))
        await self.stop_units(names)
        started = [self._launch(self.units[n].spec, strict=False) for n in names]
        await self._wait_healthy(started)

    async def shutdown(self) -> None:
        self.phase = "stopping"
        self.readiness.stopping()
        self.log.info("shutdown_started", components=len(self.units))
        # DESIGN §5: one at a time, in reverse start order (units are kept in start order), so a
        # component never loses what it depends on while it is still shutting down
        for u in reversed(list(self.units.values())):
            await self._stop_unit(u)
        for u in self.units.values():
            if u.log_file is not None:
                u.log_file.close()
                u.log_file = None


def _plan_doc(*, restarted: list[str] | None = None, started: list[str] | None = None,
              stopped: list[str] | None = None, signalled: list[str] | None = None,
              unchanged: list[str] | None = None, rejected: bool = False, error: str | None = None) -> dict[str, Any]:
    return {"restarted": restarted or [], "started": started or [], "stopped": stopped or [],
            "signalled": signalled or [], "unchanged": unchanged or [], "rejected": rejected, "error": error}


def _print_error(err: KagentError) -> None:
    print(err.render(), file=sys.stderr, flush=True)


async def _renew_loop(mgr: Manager, renew: Callable[[], Collection[Path]], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            rewritten = await asyncio.to_thread(renew)
        except KagentError as err:
            mgr.log.error("renew_failed", reason=err.render())
            continue
        if rewritten:
            mgr.request(_Cmd("renew", paths=frozenset(Path(p) for p in rewritten)))


def _install_signals(mgr: Manager) -> list[int]:
    """Handlers only enqueue; the loop does the work. Only possible in the main thread."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    actions = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGHUP: "reload"}
    for sig, kind in actions.items():
        try:
            loop.add_signal_handler(sig, mgr.request, _Cmd(kind))
            installed.append(sig)
        except (ValueError, RuntimeError):
            pass
    return installed


async def run_agent(
    *,
    paths: Paths,
    role: str,
    load_specs: Callable[[], Sequence[ComponentSpec]],
    renew: Callable[[], Collection[Path]] | None = None,
    renew_interval: float = 3600.0,
    log_dir: Path | None = None,
    version: str = kagent.__version__,
    on_ready: Callable[[], None] | None = None,
    policy: RestartPolicy | None = None,
    lock: InstanceLock | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    status_extra: Mapping[str, Callable[[], Any]] | None = None,
) -> int:
    """Run the agent until SIGTERM/SIGINT: lock, pidfile, status socket, ordered start, watch,
    reload on SIGHUP or ``POST /reload``, reverse-order stop. Returns the exit code.

    ``lock``: the instance lock the caller already holds (and releases); else it is taken here.
    ``background``: tasks started once the agent is ready and cancelled at stop (scheduled
    backups); ``status_extra``: more fields of ``GET /status``."""
    own_lock = lock is None
    if lock is None:
        try:
            lock = InstanceLock(paths.lock_file).acquire()
        except KagentError as err:
            _print_error(err)
            return int(err.exit_code)
    mgr = Manager(paths=paths, role=role, version=version, log_dir=log_dir, policy=policy or RestartPolicy(),
                  load_specs=load_specs)
    mgr.readiness = Readiness.from_env()  # and NOTIFY_SOCKET leaves the environment children inherit
    mgr.readiness.start_watchdog()
    mgr.extra_status.update(status_extra or {})
    tasks: list[asyncio.Task[None]] = []
    server: asyncio.AbstractServer | None = None
    signals: list[int] = []
    renewer: asyncio.Task[None] | None = None
    try:
        fsutil.write_atomic(paths.agent_pidfile, f"{os.getpid()}\n", mode=fsutil.MODE_PIDFILE)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        server = await status.serve(paths.status_sock, mgr.handle_http)
        signals = _install_signals(mgr)
        mgr.log.info("agent_starting", pid=os.getpid(), role=role, version=version, run_dir=str(paths.run_dir))
        try:
            specs = await asyncio.to_thread(load_specs)
            start_order(specs)
        except KagentError as err:
            _print_error(err)
            mgr.log.error("agent_start_failed", reason=err.render())
            return int(err.exit_code)
        mgr.phase = "starting"
        failure = await mgr.initial_start(specs)
        if failure is not None:
            mgr.log.error("initial_start_failed", reason=failure.render())
            _print_error(failure)
            await mgr.shutdown()
            return int(ExitCode.COMPONENT)
        if not mgr.stop_requested:
            mgr.phase = "running"
            mgr.log.info("agent_ready", components=len(mgr.units))
            mgr.readiness.ready(mgr.phase, mgr.status_doc()["components"])
            if on_ready is not None:
                on_ready()
        if renew is not None:
            renewer = asyncio.ensure_future(_renew_loop(mgr, renew, renew_interval))
        tasks.extend(asyncio.ensure_future(job()) for job in background)
        while not mgr.stop_requested:
            cmd = await mgr.queue.get()
            if cmd.kind == "stop":
                mgr.stop_requested = True
                break
            if cmd.kind == "reload":
                mgr.readiness.reloading()
                plan = await mgr.reload()
                mgr.readiness.ready(mgr.phase, mgr.status_doc()["components"])
                if cmd.reply is not None and not cmd.reply.done():
                    cmd.reply.set_result(plan)
            elif cmd.kind == "renew":
                await mgr.restart_readers(cmd.paths)
        await mgr.shutdown()
        mgr.log.info("agent_stopped")
        return int(ExitCode.OK)
    except BaseException:
        await asyncio.shield(mgr.shutdown())
        raise
    finally:
        if renewer is not None:
            renewer.cancel()
        for t in tasks:
            t.cancel()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if server is not None:
            server.close()
        paths.status_sock.unlink(missing_ok=True)
        paths.agent_pidfile.unlink(missing_ok=True)
        mgr.readiness.close()
        if own_lock:
            lock.release()


def run_agent_sync(**kw: Any) -> int:
    """``asyncio.run(run_agent(**kw))`` for the click commands."""
    return asyncio.run(run_agent(**kw))


__all__ = ["Manager", "run_agent", "run_agent_sync"]
