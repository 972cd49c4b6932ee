"""Edge (the composition of the supervisor): the asyncio interpreter of the pure state machine
in ``machine.py``.

- ``Manager.dispatch(event)`` runs ``machine.transition`` and carries out its actions (spawn,
  signal, timers, health watchers, logs) through three small seams: a ``Spawner``, a ``Prober``
  and a ``Clock``. Events come from pidfds (exits), probes, timers and the commands below.
- One command queue, fed by the signal handlers, the status socket and the renewal timer:
  ``stop``, ``reload``, ``renew``. Commands run one at a time, so a reload and a renewal never
  write the PKI at once. A failure of any kind inside a command is logged and answered as
  rejected; the agent and its children keep running with their PIDs.
- One ``TaskGroup`` owns the long-running tasks: the command loop's helpers (the renewal timer,
  the status server) and any extra task a caller adds (``Hooks.tasks``).

Hook points for the rest of the agent (``Hooks``): ``on_ready`` (every component healthy after
the initial start), ``on_reload_started`` / ``on_reload_applied`` (an accepted reload: extra
fields of its reply) / ``on_reload_done(plan)``, ``on_stopping``,
``tasks`` (extra long-running coroutines, started after the initial start, cancelled at
shutdown), ``status`` (extra top-level fields for ``GET /status``) and ``routes`` (more
status-socket routes, each request run as a queued command, e.g. ``POST /etcd/leave``).
``retire(names)`` stops components for good and keeps their last status rows.

Nothing wakes up while every child is up and has no health check: exits arrive as pidfd
events, output as pipe events, commands as socket or signal events.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import (IO, TYPE_CHECKING, Any, Awaitable, Callable, Collection, Coroutine, Iterable, Mapping, NamedTuple,
                    Protocol, Sequence, TypeVar)

import kagent
from kagent import cancel, fsutil, log
from kagent.components.spec import ComponentSpec
from kagent.errors import ComponentError, ExitCode, KagentError
from kagent.node import files
from kagent.node.lock import InstanceLock
from kagent.paths import Paths
from kagent.service.notify import Readiness
from kagent.supervisor import machine as sm
from kagent.supervisor import process, status
from kagent.supervisor.policy import RestartPolicy
from kagent.supervisor.order import start_order

if TYPE_CHECKING:
    from kagent.supervisor.health import ProbeResult
    from kagent.supervisor.reload import Loaded, ReloadPlan

HEALTH_FIRST_PROBE = 0.02  # start-up gate: first probe after 20 ms, doubling to HEALTH_GATE_MAX
HEALTH_GATE_MAX = 1.0
T = TypeVar("T")
DRAIN_TIMEOUT = 0.5
CANCEL_GRACE = 10.0  # s: a cancelled loader's thread to give up (the PKI runner does within 0.1 s)
LOG_LINES_PER_S = 1000  # child output lines per second per component that reach the structured log
LOG_LINES_BURST = 5000
LOG_FILE_RETRY = 30.0  # seconds before a component log file that failed is opened again
NO_CHECK_SETTLE = 1.0  # reload/renewal reply: how long a restarted component without a health check must stay up
TASK_RESTART_DELAY = 1.0  # a crashed long-running task starts again after this long


# ---- seams ------------------------------------------------------------------------------------

class Spawner(Protocol):
    def __call__(self, spec: ComponentSpec, *, instance: str, sink: process.LineSink, now: float,
                 loop: asyncio.AbstractEventLoop) -> process.Child: ...


class Prober(Protocol):
    def __call__(self, check: Any) -> Awaitable[ProbeResult]: ...


def probe(check: Any) -> Awaitable[ProbeResult]:
    """The real Prober: ``health.probe``, imported at the first probe (not on the agent's way to
    its first spawn)."""
    from kagent.supervisor import health

    return health.probe(check)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> str: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> str:
        import datetime  # here: not on the agent's way to its first spawn

        return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Hooks:
    """Where the rest of the agent plugs in. Each callback runs in the event loop; an exception
    in one is logged (``hook_failed``) and changes nothing else. Each argument is a list (a
    dict for ``routes``) that callers append to; left out, an empty one.

    (A plain class, not a dataclass: nothing compares or prints it, and a dataclass with eight
    fields costs 2.5 ms of class creation on the agent's way to its first spawn.)"""

    __slots__ = ("on_ready", "on_reload_started", "on_reload_done", "on_stopping", "tasks", "status",
                 "on_reload_applied", "routes")

    def __init__(
        self, *,
        on_ready: list[Callable[[], None]] | None = None,
        on_reload_started: list[Callable[[], None]] | None = None,
        on_reload_done: list[Callable[[dict[str, Any]], None]] | None = None,
        on_stopping: list[Callable[[], None]] | None = None,
        tasks: list[tuple[str, Callable[[Manager], Awaitable[None]]]] | None = None,
        status: list[Callable[[], dict[str, Any]]] | None = None,
        on_reload_applied: list[Callable[[], dict[str, Any]]] | None = None,
        routes: dict[tuple[str, str], Callable[[Manager], Awaitable[tuple[int, Any]]]] | None = None,
    ) -> None:
        self.on_ready = on_ready if on_ready is not None else []
        self.on_reload_started = on_reload_started if on_reload_started is not None else []
        self.on_reload_done = on_reload_done if on_reload_done is not None else []
        self.on_stopping = on_stopping if on_stopping is not None else []
        # (name, coroutine function taking the Manager): long-running, restarted after a crash
        self.tasks = tasks if tasks is not None else []
        # extra top-level fields of GET /status (e.g. {"backup": {...}})
        self.status = status if status is not None else []
        # run after an accepted reload (the new config is in effect): apply what is not a
        # component (e.g. the backup timer) and return extra fields of the reply ({"backup": ...})
        self.on_reload_applied = on_reload_applied if on_reload_applied is not None else []
        # more routes of the status socket, (method, path) -> job: each request runs as a queued
        # command (one at a time with reloads and renewals), only while the agent is running
        self.routes = routes if routes is not None else {}


class _Cmd(NamedTuple):
    kind: str  # "stop" | "reload" | "renew" | "job" (a Hooks.routes request)
    reply: asyncio.Future[Any] | None = None
    job: Callable[[Manager], Awaitable[tuple[int, Any]]] | None = None


class Tasks:
    """One TaskGroup for the agent's long-running tasks. A task that raises is logged and
    started again after TASK_RESTART_DELAY (a bug in the renewal timer must not end renewals
    for good, nor take the agent down)."""

    def __init__(self, tg: asyncio.TaskGroup, logger: Any) -> None:
        self._tg = tg
        self._log = logger
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, fn: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        async def guarded() -> None:
            while True:
                try:
                    await fn()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # noqa: BLE001 - logged with its traceback, then again
                    self._log.exception("task_crashed", task=name, reason=repr(err))
                    if not restart:
                        return
                    await asyncio.sleep(TASK_RESTART_DELAY)

        self._tasks.append(self._tg.create_task(guarded(), name=f"kagent-{name}"))

    def cancel_all(self) -> None:
        for t in self._tasks:
            t.cancel()


# ---- the manager --------------------------------------------------------------------------------

class _Early:
    """A replacement started in its predecessor's pidfd callback (``Manager._respawn_early``):
    ``result`` the Child (or the exception) once the launcher has it, ``claim`` the
    ``Spawn`` that took it, ``dropped`` when no ``Spawn`` did."""

    __slots__ = ("spec", "result", "claim", "dropped")

    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.result: process.Child | Exception | None = None
        self.claim: sm.Spawn | None = None
        self.dropped = False


class Manager:
    def __init__(self, *, paths: Paths, role: str, version: str, log_dir: Path | None, policy: RestartPolicy,
                 load_specs: Callable[[], Sequence[ComponentSpec] | Loaded], hooks: Hooks | None = None,
                 spawner: Spawner | None = None, prober: Prober = probe,
                 clock: Clock | None = None) -> None:
        self.paths = paths
        self.role = role
        self.version = version
        self.log_dir = log_dir
        self.load_specs = load_specs
        self.hooks = hooks or Hooks()
        self.spawner = spawner  # None: the launcher (inline, or its pool for a burst)
        self.launcher = process.Launcher()
        self.prober = prober
        self.clock: Clock = clock or SystemClock()
        self.instance = process.instance_id(paths.run_dir)
        self.m = sm.Machine(policy=policy)
        self.queue: asyncio.Queue[_Cmd] = asyncio.Queue()
        self.phase = "loading"  # loading | starting | running | stopping
        self.started_mono = self.clock.monotonic()
        self.log = log.get()
        self.stop_requested = False
        self.children: dict[str, process.Child] = {}
        self.failure: ComponentError | None = None
        self._last_child: dict[str, process.Child] = {}
        self._health: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._log_files: dict[str, IO[str]] = {}
        self._pending: collections.deque[sm.Event] = collections.deque()
        self._dispatching = False
        # bookkeeping done after the spawns of one loop turn (see dispatch)
        self._later: collections.deque[sm.Log | Callable[[], None]] = collections.deque()
        self._flush_scheduled = False
        self._flushing = False
        self._unfinished: dict[process.Child, sm.Spawn] = {}  # spawned, pidfile and Spawned not done yet
        self._early: dict[str, _Early] = {}  # replacements started before their exit's transition
        # components whose child's pidfd fired and whose Exited is not dispatched yet (it is,
        # in the next turn of the loop): not RUNNING for a dependent's early respawn
        self._exiting: collections.Counter[str] = collections.Counter()
        self._waiters: list[tuple[Callable[[sm.Machine], bool], asyncio.Future[None], bool]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.readiness = Readiness(None)  # sd_notify; run_agent sets the real one
        self._summary: tuple[tuple[str, str, str], ...] = ()
        self.retired: dict[str, dict[str, Any]] = {}  # status rows of components retire() took out

    # ---- commands ------------------------------------------------------------------------
    def request(self, cmd: _Cmd) -> None:
        """Enqueue a command (what signal handlers, the socket and the renewal timer do)."""
        self.queue.put_nowait(cmd)
        if cmd.kind == "stop":
            self.stop_requested = True
            self._notify()

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, cancelled by a stop request: the thread's cancel event
        (``kagent.cancel``) is set, so a PKI child it waits for is killed, and ``Cancelled`` is
        raised, also when ``fn`` finished but the stop came meanwhile (its result is not used)."""
        if self.stop_requested:
            raise cancel.Cancelled("agent", "cancelled: the agent is stopping")
        event = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(cancel.run, event, fn))
        stopped = asyncio.ensure_future(self.wait_until(lambda m: False, None))
        try:
            await asyncio.wait((work, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not work.done():
            event.set()
            done, _ = await asyncio.wait((work,), timeout=CANCEL_GRACE)
            if not done:
                self.log.warning("cancel_pending", reason=f"the work did not give up within {CANCEL_GRACE:g} s")
        if self.stop_requested:
            if work.done() and not work.cancelled():
                work.exception()  # retrieved: it is reported as cancelled
            raise cancel.Cancelled("agent", "cancelled: the agent is stopping")
        return work.result()

    # ---- the interpreter -----------------------------------------------------------------
    def dispatch(self, ev: sm.Event) -> None:
        """Feed one event to the machine and carry out its actions (re-entrant: events raised
        while acting are queued and handled in order).

        Spawns are carried out at once; the bookkeeping around them (``Log`` actions, a
        spawned child's pidfile and its ``Spawned`` event, an exited child's pidfile removal)
        is queued and done at the start of the next turn of the loop (``_flush``), in order.
        So a child that exited is respawned before anything is logged or written, and after a
        mass kill (many pidfds ready in one turn) every child is back before the bookkeeping of
        the first one. The queue is always emptied before any later pidfd, pipe or timer
        callback runs (asyncio runs callbacks in the order they were scheduled)."""
        self._pending.append(ev)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                e = self._pending.popleft()
                self.m, actions = sm.transition(self.m, e, self.clock.monotonic())
                for a in actions:
                    if isinstance(a, sm.Log):
                        self._later.append(a)
                        continue
                    try:
                        self._do(a)
                    except Exception as err:  # noqa: BLE001 - an edge bug must not stop the machine
                        self.log.exception("action_failed", action=type(a).__name__, reason=repr(err))
        finally:
            self._dispatching = False
        self._schedule_flush()
        self._notify()
        self.changed()

    def _schedule_flush(self) -> None:
        if self._later and not self._flush_scheduled and not self._flushing:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """The queued bookkeeping, in order (see ``dispatch``). Work queued while flushing (the
        logs of a ``Spawned`` event) is done in the same pass."""
        self._flush_scheduled = False
        self._flushing = True
        try:
            while self._later:
                item = self._later.popleft()
                try:
                    if isinstance(item, sm.Log):
                        self._do(item)
                    else:
                        item()
                except Exception as err:  # noqa: BLE001 - an edge bug must not stop the machine
                    self.log.exception("action_failed", action=type(item).__name__, reason=repr(err))
        finally:
            self._flushing = False
        if log.holding() and not self.launcher.inflight:
            log.release()  # the first children are on their way: held lines come out (kagent.log)

    def changed(self) -> None:
        """After each event: when a component's state or health changed, the one-line STATUS=
        of sd_notify follows it (nothing is computed without a notify socket)."""
        if not self.readiness.enabled:
            return
        summary = tuple((u.name, str(u.state), str(u.health)) for u in self.m.units.values())
        if summary != self._summary:
            self._summary = summary
            self.readiness.status(self.phase, self.status_doc()["components"])

    def _do(self, a: sm.Action) -> None:
        if isinstance(a, sm.Log):
            getattr(self.log, a.level)(a.event, component=a.name, **dict(a.fields))
        elif isinstance(a, sm.Spawn):
            self._spawn(a)
        elif isinstance(a, sm.Signal):
            child = self.children.get(a.name)
            if child is not None and child.pid == a.pid:
                child.signal(a.sig, group=True)
        elif isinstance(a, sm.SetTimer):
            key = (a.name, str(a.kind))
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._timers[key] = asyncio.get_running_loop().call_later(
                a.delay, self.dispatch, sm.Timer(a.name, a.gen, a.kind))
        elif isinstance(a, sm.WatchHealth):
            old_task = self._health.pop(a.name, None)
            if old_task is not None:
                old_task.cancel()
            self._health[a.name] = asyncio.ensure_future(self._watch_health(a))
        elif isinstance(a, sm.Up):
            if a.spec.prune_siblings_of:  # the dirs of the spec this one replaced are no longer read
                files.prune_superseded(a.spec.prune_siblings_of, self.log.bind(component=a.name))
        elif isinstance(a, sm.Failed):
            self._background_task(self._report_failure(a))

    def _background_task(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    def _notify(self) -> None:
        for pred, fut, stop_wakes in list(self._waiters):
            if not fut.done() and ((stop_wakes and self.stop_requested) or pred(self.m)):
                fut.set_result(None)

    async def wait_until(self, pred: Callable[[sm.Machine], bool], timeout: float | None = None,
                         *, stop_wakes: bool = True) -> bool:
        """Until ``pred(machine)`` holds (True), ``timeout`` passes or a stop is requested."""
        if pred(self.m):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pred, fut, stop_wakes)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.remove(entry)
        return pred(self.m)

    # ---- actions ---------------------------------------------------------------------------
    def _prepare(self, spec: ComponentSpec) -> None:
        for d, mode in spec.dirs:
            fsutil.ensure_dir(d, mode)
        for f in spec.files:
            fsutil.write_atomic(f.path, f.data, mode=f.mode)

    def _spawn(self, a: sm.Spawn) -> None:
        """Start the process now (or in the launcher's pool: ``_started`` follows); its
        pidfile and ``Spawned`` follow in ``_flush`` (sooner, should its exit come first).
        A replacement already started for this spec (``_respawn_early``) is taken instead."""
        early = self._early.pop(a.name, None)
        if early is not None:
            if early.spec is a.spec or early.spec == a.spec:  # (a reload's Update may bring an equal one)
                early.claim = a
                if early.result is not None:
                    self._started(a, early.result)
                return
            self._drop_early(early)
        self._start_process(a.spec, lambda result: self._started(a, result))

    def _start_process(self, spec: ComponentSpec, done: Callable[[process.Child | Exception], None]) -> None:
        """Files, then the process: ``done`` gets the Child or the exception, now or (from the
        launcher's pool) in a later turn of the loop."""
        try:
            self._prepare(spec)
            now, loop = self.clock.monotonic(), asyncio.get_running_loop()
            if self.spawner is not None:
                child: process.Child | None = self.spawner(spec, instance=self.instance, sink=self._sink(spec.name),
                                                           now=now, loop=loop)
            else:  # the launcher's shortest path first: one posix_spawn over what it kept
                child = self.launcher.respawn(spec, instance=self.instance, now=now, loop=loop)
                if child is None:
                    child = self.launcher.spawn(spec, instance=self.instance, sink=self._sink(spec.name), now=now,
                                                loop=loop, done=done)
        except Exception as err:  # noqa: BLE001 - KagentError, OSError (ENOSPC, EACCES) or a bug: all survived
            done(err)
            return
        if child is not None:
            done(child)

    def _child_exiting(self, name: str, gen: int, child: process.Child) -> None:
        """In the pidfd callback of ``child``, before it is reaped (``_on_exit`` follows in the
        next turn of the loop)."""
        self._respawn_early(name, gen, child)
        self._exiting[name] += 1

    def _respawn_early(self, name: str, gen: int, child: process.Child) -> None:
        """In the pidfd callback of ``child``, before it is reaped: when the machine will
        respawn it at once (``respawns_at_once``), start the replacement now. The respawn
        then costs the spawn alone (not the reap, the transition and their Python); the
        ``Spawn`` that the ``Exited`` transition returns claims it (``_spawn``)."""
        if name in self._early or self.stop_requested:
            return
        now = self.clock.monotonic()
        try:
            spec = sm.respawns_at_once(self.m, name, gen, child.pid, now, exiting=self._exiting)
        except Exception as err:  # noqa: BLE001 - a bug here must not keep the exit from being handled
            self.log.exception("action_failed", action="respawn_early", reason=repr(err))
            return
        if spec is None:
            return
        early = _Early(spec)
        self._early[name] = early
        self._start_process(spec, lambda result: self._early_done(early, result))

    def _early_done(self, early: _Early, result: process.Child | Exception) -> None:
        if early.claim is not None:
            self._started(early.claim, result)  # claimed while it was in the launcher's pool
            return
        early.result = result  # an inline spawn: claimed next, in this same callback
        if early.dropped:
            self._drop_early(early)

    def _drop_early(self, early: _Early) -> None:
        """An early replacement nobody claimed (the transition decided otherwise): it goes.
        One still in the launcher's pool goes when it comes back."""
        early.dropped = True
        if self._early.get(early.spec.name) is early:
            del self._early[early.spec.name]
        result, early.result = early.result, None
        if isinstance(result, process.Child):
            self.log.warning("early_respawn_dropped", component=early.spec.name, pid=result.pid)
            result.signal(signal.SIGKILL, group=True)
            self._background_task(self._reap_dropped(result))

    async def _reap_dropped(self, child: process.Child) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(child.exited), sm.KILL_WAIT)
        except TimeoutError:
            pass
        child.close_output()

    def _started(self, a: sm.Spawn, result: process.Child | Exception) -> None:
        if isinstance(result, Exception):
            what = result.what if isinstance(result, KagentError) else (str(result) or repr(result))
            self.dispatch(sm.SpawnFailed(a.name, a.gen, what))
            self._release_settled((a.name,))
            return
        child = result
        self._unfinished[child] = a
        child.on_exit = lambda: self._on_exit(a.name, a.gen, child)
        child.before_reap = lambda: self._child_exiting(a.name, a.gen, child)
        self._later.append(lambda: self._finish_spawn(child))
        self._schedule_flush()

    def _finish_spawn(self, child: process.Child) -> None:
        """The pidfile, then ``Spawned``. A pidfile that cannot be written: no unsupervised
        child, it goes, and the spawn counts as failed."""
        a = self._unfinished.pop(child, None)
        if a is None:
            return
        name = a.name
        try:
            fsutil.write_runtime(self.paths.pidfile(name), b"%d\n" % child.pid)
        except OSError as err:
            child.on_exit = child.before_reap = None
            self._background_task(self._discard(a, child, f"cannot write {self.paths.pidfile(name)}: "
                                                          f"{err.strerror or err}"))
            return
        self.children[name] = child
        self._last_child[name] = child
        self.dispatch(sm.Spawned(name, a.gen, child.pid, child.started_at))

    async def _discard(self, a: sm.Spawn, child: process.Child, reason: str) -> None:
        child.signal(signal.SIGKILL, group=True)
        try:
            await asyncio.wait_for(asyncio.shield(child.exited), sm.KILL_WAIT)
        except TimeoutError:
            pass
        child.close_output()
        self.dispatch(sm.SpawnFailed(a.name, a.gen, reason))

    def _on_exit(self, name: str, gen: int, child: process.Child) -> None:
        """Called by the child's pidfd callback: ``Exited`` at once (a respawn happens inside
        this call); the old pidfile is removed afterwards unless a new child replaced it."""
        if self._exiting[name] > 1:
            self._exiting[name] -= 1
        else:
            self._exiting.pop(name, None)
        try:
            self._exited(name, gen, child)
        finally:
            early = self._early.get(name)
            if early is not None and not self._dispatching:
                self._drop_early(early)  # started for a respawn the transition did not ask for

    def _exited(self, name: str, gen: int, child: process.Child) -> None:
        self._finish_spawn(child)  # (its exit came before its bookkeeping: that first)
        if self.children.get(name) is not child:
            return
        del self.children[name]
        task = self._health.pop(name, None)
        if task is not None:
            task.cancel()
        self.dispatch(sm.Exited(name, gen, child.pid, child.exited.result(), self.clock.wall()))
        self._release_settled((name,))
        # (a respawn's pidfile, written before or after this, names another pid: kept)
        self._later.append(lambda: self._remove_pidfile(name, child.pid))
        self._schedule_flush()

    def _release_settled(self, names: Iterable[str]) -> None:
        """Components stopped or failed for good, or forgotten (also one stopped while it
        backed off, which had no exit to release them at), give their pipes back
        (``Launcher.release``)."""
        for n in names:
            u = self.m.units.get(n)
            if u is None or u.settled:
                self.launcher.release(n)

    def _remove_pidfile(self, name: str, pid: int) -> None:
        path = self.paths.pidfile(name)
        try:
            if process.read_pidfile(path) == pid:
                path.unlink(missing_ok=True)
        except OSError:
            pass

    async def _watch_health(self, a: sm.WatchHealth) -> None:
        check = a.spec.health
        if check is None:
            return
        wait = HEALTH_FIRST_PROBE
        while True:
            result = await self.prober(check)
            if result.ok:
                break
            self.dispatch(sm.HealthChanged(a.name, a.gen, False, result.detail))
            u = self.m.units.get(a.name)
            if u is None or u.gen != a.gen or u.pid is None:
                return
            await asyncio.sleep(a.spec.health_interval if u.late else wait)
            wait = min(wait * 2, HEALTH_GATE_MAX)
        self.dispatch(sm.Ready(a.name, a.gen))
        while True:
            await asyncio.sleep(a.spec.health_interval)
            u = self.m.units.get(a.name)
            if u is None or u.gen != a.gen or u.pid is None:
                return
            result = await self.prober(check)
            self.dispatch(sm.HealthChanged(a.name, a.gen, result.ok, result.detail))

    async def _report_failure(self, a: sm.Failed) -> None:
        tail = [ln for ln in await self.output_tail(a.name) if ln.strip()]
        msg = a.message + ("; last output:\n  " + "\n  ".join(tail) if tail else "; it printed nothing")
        if self.failure is None:
            self.failure = ComponentError(f"component {a.name}", msg, hint=f"see the log lines with component={a.name}")
        self._notify()

    def _sink(self, name: str) -> process.LineSink:
        """Each line to the structured log (at most LOG_LINES_PER_S per component, bursts of
        LOG_LINES_BURST; the rest is counted and reported, so a flooding child cannot eat the
        agent's CPU or the journal) and, unthrottled, to the component's log file."""
        logger = self.log
        budget = {"tokens": float(LOG_LINES_BURST), "at": time.monotonic(), "dropped": 0}
        # the component's log file; one that fails (a full disk, closed meanwhile) is reported
        # once and tried again LOG_FILE_RETRY seconds later, the lines still going to the log
        state: dict[str, Any] = {"fh": self._log_file(name), "failed_at": None}

        def sink(stream: str, line: str) -> None:
            now = time.monotonic()
            fh = state["fh"]
            if fh is None and state["failed_at"] is not None and now - state["failed_at"] >= LOG_FILE_RETRY:
                state["failed_at"] = None
                fh = state["fh"] = self._log_file(name)
            if fh is not None:
                try:
                    fh.write(f"{stream}: {line}\n")
                except (OSError, ValueError) as err:
                    state["fh"], state["failed_at"] = None, now
                    self._drop_log_file(name, fh)
                    logger.warning("component_log_file_failed", component=name,
                                   path=str(self.log_dir / f"{name}.log") if self.log_dir else "",
                                   reason=getattr(err, "strerror", None) or str(err))
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

    def _log_file(self, name: str) -> IO[str] | None:
        if self.log_dir is None:
            return None
        fh = self._log_files.get(name)
        if fh is None:
            try:
                fh = open(self.log_dir / f"{name}.log", "a", buffering=1, encoding="utf-8", errors="replace")
            except OSError as err:
                self.log.warning("component_log_file_failed", component=name, reason=err.strerror or str(err))
                return None
            self._log_files[name] = fh
        return fh

    def _drop_log_file(self, name: str, fh: IO[str]) -> None:
        if self._log_files.get(name) is fh:
            del self._log_files[name]
        try:
            fh.close()
        except (OSError, ValueError):
            pass  # its buffered bytes cannot be written either

    def _close_log_files(self, names: Iterable[str] | None = None) -> None:
        for n in list(self._log_files if names is None else names):
            fh = self._log_files.get(n)
            if fh is not None:
                self._drop_log_file(n, fh)

    def submit(self, job: Callable[[Manager], Awaitable[tuple[int, Any]]]) -> asyncio.Future[tuple[int, Any]]:
        """Run ``job(self)`` as a queued command (one at a time with reloads, renewals and the
        ``Hooks.routes`` requests); the future gets its (status, body) answer."""
        answer: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self.request(_Cmd("job", reply=answer, job=job))
        return answer

    async def output_tail(self, name: str) -> list[str]:
        """The last lines (``process.TAIL_LINES``) the component's latest process printed; its
        pipes are drained first when it has exited."""
        child = self._last_child.get(name)
        if child is None:
            return []
        if not child.alive:
            await child.drain(DRAIN_TIMEOUT)
        return list(child.tail)

    # ---- status --------------------------------------------------------------------------
    def status_doc(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        comps = [self._row(u, now) for u in self.m.units.values()]
        comps += [row for name, row in self.retired.items() if name not in self.m.units]
        doc: dict[str, Any] = {"agent": {"pid": os.getpid(), "role": self.role, "version": self.version,
                                         "uptime_s": round(now - self.started_mono, 3)},
                               "components": comps}
        for extra in self.hooks.status:
            try:
                doc.update({k: v for k, v in extra().items() if k not in ("agent", "components")})
            except Exception as err:  # noqa: BLE001 - a hook never breaks the status answer
                self.log.exception("hook_failed", hook="status", reason=repr(err))
        return doc

    @staticmethod
    def _row(u: sm.Unit, now: float) -> dict[str, Any]:
        last = None
        if u.last_exit is not None:
            ex = u.last_exit
            last = {"signal": ex.signal, "at": u.last_exit_wall} if ex.signal is not None else \
                {"code": ex.code, "at": u.last_exit_wall}
        alive = u.pid is not None
        return {
            "name": u.name,
            "state": str(u.state),
            "pid": u.pid,
            "restarts": u.restarts,
            "health": str(u.health),
            "uptime_s": round(now - u.started_at, 3) if alive and u.started_at is not None else None,
            "last_exit": last,
        }

    async def handle_http(self, method: str, target: str) -> tuple[int, Any]:
        if method == "GET" and target == "/status":
            return 200, self.status_doc()
        if method == "GET" and target == "/components":
            return 200, self.status_doc()["components"]
        if method == "POST" and target == "/reload":
            if self.phase != "running":
                return 409, plan_doc(error=f"agent is {self.phase}; try again when it is running", rejected=True)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.request(_Cmd("reload", reply=fut))
            return 200, await fut
        job = self.hooks.routes.get((method, target))
        if job is not None:
            if self.phase != "running":
                return 409, {"error": f"agent is {self.phase}; try again when it is running"}
            return await self.submit(job)
        return 404, {"error": f"no route {method} {target}"}

    def _hook(self, which: str, fns: Iterable[Callable[..., None]], *args: Any) -> None:
        for fn in fns:
            try:
                fn(*args)
            except Exception as err:  # noqa: BLE001 - a hook never breaks the supervisor
                self.log.exception("hook_failed", hook=which, reason=repr(err))

    # ---- procedures ------------------------------------------------------------------------
    async def stop_stale(self, specs: Sequence[ComponentSpec]) -> None:
        """Every pidfile in the run dir: a live process of ours (marker for this run dir and
        that component; for a current component also its binary) is stopped, whether or not the
        component is still configured (one removed while the agent was down)."""
        by_name = {s.name: s for s in specs}
        try:
            pidfiles = sorted(p for p in self.paths.run_dir.glob("*.pid") if p != self.paths.agent_pidfile)
        except OSError:
            return

        async def one(pidfile: Path) -> None:
            name = pidfile.stem
            spec = by_name.get(name)
            pid, outcome = await process.terminate_stale(pidfile, spec, self.instance, name=name)
            if outcome in ("terminated", "killed"):
                self.log.warning("stale_child_stopped", component=name, pid=pid, how=outcome,
                                 configured=spec is not None)
            elif outcome == "not_ours":
                self.log.info("stale_pidfile_ignored", component=name, pid=pid,
                              reason="process is not a child of this kagent")
            if spec is None:
                try:
                    pidfile.unlink(missing_ok=True)
                except OSError:
                    pass

        await asyncio.gather(*(one(p) for p in pidfiles))

    async def initial_start(self, specs: Sequence[ComponentSpec]) -> ComponentError | None:
        """Start all, dependencies first. Returns the first failure, or None when every
        component is ready (or a stop came first)."""
        self.dispatch(sm.Start(tuple(specs), strict=True))
        await self.wait_until(lambda m: m.all_running() or self.failure is not None)
        if self.failure is None and not self.m.all_running() and not self.stop_requested:
            # a Failed action is being reported (its output drained): wait for it
            await self.wait_until(lambda m: self.failure is not None, DRAIN_TIMEOUT * 4)
        self.dispatch(sm.Settle())
        log.release()
        return self.failure

    async def stop(self, names: Collection[str]) -> None:
        """The one stop algorithm (machine.Stop): one at a time, reverse start order."""
        names = tuple(n for n in names if n in self.m.units)
        if not names:
            return
        self.dispatch(sm.Stop(names))
        await self.wait_until(lambda m: m.all_settled(names), stop_wakes=False)

    async def retire(self, states: Mapping[str, str]) -> None:
        """Stop these components for good (the one stop algorithm), forget them, and keep
        their last status row with ``states[name]`` as its state (e.g. etcd ``left``): nothing
        restarts them; a reload whose specs bring one back starts it as a new component."""
        names = tuple(n for n in states if n in self.m.units)
        await self.stop(names)
        now = self.clock.monotonic()
        for n in names:
            self.retired[n] = {**self._row(self.m.units[n], now), "state": states[n]}
        self.dispatch(sm.Forget(names))
        self._release_settled(names)
        self._close_log_files(names)

    async def _start_and_settle(self, specs: Sequence[ComponentSpec]) -> list[str]:
        """Start ``specs`` (not strict) and wait until each is ready or the longest startup
        timeout passed. Returns the ones that are not healthy: the reply names them. A
        component without a health check must also stay up NO_CHECK_SETTLE seconds (capped by
        its startup timeout): "up" alone would call a crash loop healthy."""
        if not specs:
            return []
        names = [s.name for s in specs]
        self.dispatch(sm.Start(tuple(specs)))
        timeout = max(s.startup_timeout for s in specs)
        await self.wait_until(lambda m: m.all_running(names), timeout)
        gens = {n: self.m.units[n].gen for n in names if n in self.m.units}
        unchecked = [s for s in specs if s.health is None and s.name in gens]
        if unchecked and not self.stop_requested:
            settle = max(min(NO_CHECK_SETTLE, s.startup_timeout) for s in unchecked)
            await self.wait_until(lambda m: any(m.units[s.name].gen != gens[s.name] or m.units[s.name].pid is None
                                                for s in unchecked if s.name in m.units), settle)
        return [n for n in names if n in self.m.units and (self.m.units[n].phase is not sm.Phase.RUNNING
                                                           or self.m.units[n].gen != gens.get(n))]

    async def reload(self) -> dict[str, Any]:
        from kagent.supervisor.reload import Loaded, diff  # here: not on the agent's way to its first spawn

        self.log.info("reload_requested")
        self._hook("on_reload_started", self.hooks.on_reload_started)
        try:
            loaded = await self.in_thread(self.load_specs)
            new_specs, rewritten = (loaded.specs, loaded.rewritten) if isinstance(loaded, Loaded) else (loaded, ())
            new = start_order(new_specs)
            plan = diff([u.spec for u in self.m.units.values()], new, rewritten=rewritten)
            by_name = {s.name: s for s in new}
            # every file of a signalled component first: a write error rejects the reload
            # before anything was stopped
            for name in plan.signal:
                self._prepare(by_name[name])
            if isinstance(loaded, Loaded) and loaded.commit is not None:
                await self.in_thread(loaded.commit)  # the staged PKI files go in place: the reload is accepted
        except Exception as err:  # noqa: BLE001 - a bad config, ENOSPC, a probe that hung, a bug: all survived
            reason = err.render() if isinstance(err, KagentError) else f"internal error: {err!r}"
            if isinstance(err, cancel.Cancelled):  # a stop came: nothing was stopped or started
                self.log.warning("reload_cancelled", reason=reason)
            elif isinstance(err, KagentError):
                self.log.error("reload_rejected", reason=reason)
            else:
                self.log.exception("reload_rejected", reason=reason)
            doc = plan_doc(error=reason, rejected=True, unchanged=list(self.m.units))
            self._hook("on_reload_done", self.hooks.on_reload_done, doc)
            return doc
        await self.stop([*plan.removed, *plan.restart])
        for name in plan.added:
            self.retired.pop(name, None)
        self.dispatch(sm.Forget(plan.removed))
        self._release_settled(plan.removed)
        self._close_log_files(plan.removed)
        for name in (*plan.signal, *plan.update):
            self.dispatch(sm.Update(by_name[name], signal=name in plan.signal))
        self.dispatch(sm.Arrange(tuple(s.name for s in new)))
        failing = await self._start_and_settle([s for s in new if s.name in plan.added or s.name in plan.restart])
        self.dispatch(sm.Arrange(tuple(s.name for s in new)))
        doc = plan_doc(restarted=list(plan.restart), started=list(plan.added), stopped=list(plan.removed),
                       signalled=list(plan.signal), unchanged=[*plan.unchanged, *plan.update], failing=failing,
                       rewritten=sorted(map(str, plan.rewritten)))
        for applied in self.hooks.on_reload_applied:
            try:
                doc.update({k: v for k, v in applied().items() if k not in doc})
            except Exception as err:  # noqa: BLE001 - a hook never breaks the reload's answer
                self.log.exception("hook_failed", hook="on_reload_applied", reason=repr(err))
        (self.log.warning if failing else self.log.info)(
            "reload_done", restarted=doc["restarted"], started=doc["started"], stopped=doc["stopped"],
            signalled=doc["signalled"], failing=failing)
        self._hook("on_reload_done", self.hooks.on_reload_done, doc)
        return doc

    async def renew(self, renew: Callable[[], Collection[Path]]) -> None:
        """One renewal check (a queued command: never at the same time as a reload). Components
        whose ``reads`` contain a rewritten file are restarted."""
        try:
            rewritten = await self.in_thread(renew)
        except cancel.Cancelled as err:  # a stop came: what the child wrote is complete, the next start repairs the rest
            self.log.warning("renew_cancelled", reason=err.render())
            return
        except Exception as err:  # noqa: BLE001 - ENOSPC, EACCES, a bug: logged, the next check retries
            reason = err.render() if isinstance(err, KagentError) else f"internal error: {err!r}"
            (self.log.error if isinstance(err, KagentError) else self.log.exception)("renew_failed", reason=reason)
            return
        from kagent.supervisor.reload import readers

        specs = [u.spec for u in self.m.units.values()]
        names = readers(specs, rewritten)
        if not names:
            return
        self.log.info("renewed_files_restart", components=list(names), paths=sorted(map(str, rewritten)))
        await self.stop(names)
        failing = await self._start_and_settle([s for s in specs if s.name in names])
        if failing:
            self.log.warning("renewed_restart_unhealthy", components=failing)

    async def shutdown(self) -> None:
        self.phase = "stopping"
        self.readiness.stopping()
        self._hook("on_stopping", self.hooks.on_stopping)
        self.log.info("shutdown_started", components=len(self.m.units))
        # DESIGN §5: one at a time, in reverse start order: the same Stop as a reload's
        await self.stop(self.m.names())
        for t in self._health.values():
            t.cancel()
        for h in self._timers.values():
            h.cancel()
        self._close_log_files()


def plan_doc(*, restarted: list[str] | None = None, started: list[str] | None = None,
             stopped: list[str] | None = None, signalled: list[str] | None = None,
             unchanged: list[str] | None = None, failing: list[str] | None = None,
             rewritten: list[str] | None = None, rejected: bool = False, error: str | None = None) -> dict[str, Any]:
    """The reply of ``POST /reload``. ``failing``: restarted or started components that were not
    healthy within their startup timeout (``kagent reload`` exits 5 naming them); ``rewritten``:
    the files the reload's PKI step rewrote (their readers are in ``restarted``)."""
    return {"restarted": restarted or [], "started": started or [], "stopped": stopped or [],
            "signalled": signalled or [], "unchanged": unchanged or [], "failing": failing or [],
            "rewritten": rewritten or [], "rejected": rejected, "error": error}


def _print_error(err: KagentError) -> None:
    log.release()
    print(err.render(), file=sys.stderr, flush=True)


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


async def _command_loop(mgr: Manager, renew: Callable[[], Collection[Path]] | None) -> None:
    while not mgr.stop_requested:
        cmd = await mgr.queue.get()
        if cmd.kind == "stop":
            return
        if cmd.kind == "reload":
            mgr.readiness.reloading()
            plan = await mgr.reload()
            if not mgr.stop_requested:  # (a stop cancelled it: STOPPING=1 comes next)
                mgr.readiness.ready(mgr.phase, mgr.status_doc()["components"])
            if cmd.reply is not None and not cmd.reply.done():
                cmd.reply.set_result(plan)
        elif cmd.kind == "renew" and renew is not None:
            await mgr.renew(renew)
        elif cmd.kind == "job" and cmd.job is not None:
            try:
                answer: tuple[int, Any] = await cmd.job(mgr)
            except Exception as err:  # noqa: BLE001 - a failed job is answered and logged; the agent keeps running
                mgr.log.exception("command_failed", reason=repr(err))
                answer = (500, {"error": f"internal error: {err!r}"})
            if cmd.reply is not None and not cmd.reply.done():
                cmd.reply.set_result(answer)


async def _reject_while_starting(mgr: Manager) -> None:
    """During start-up only a stop is honoured; a reload is answered as rejected."""
    while True:
        c = await mgr.queue.get()
        if c.kind == "stop":
            return
        if c.reply is not None and not c.reply.done():
            c.reply.set_result(plan_doc(error="agent is starting; try again when it is running", rejected=True))
        elif c.kind == "reload":
            mgr.log.warning("reload_ignored", reason="agent is still starting")


async def run_agent(
    *,
    paths: Paths,
    role: str,
    load_specs: Callable[[], Sequence[ComponentSpec] | Loaded],
    renew: Callable[[], Collection[Path]] | None = None,
    renew_interval: float = 3600.0,
    log_dir: Path | None = None,
    version: str = kagent.__version__,
    on_ready: Callable[[], None] | None = None,
    policy: RestartPolicy | None = None,
    lock: InstanceLock | None = None,
    hooks: Hooks | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    status_extra: Mapping[str, Callable[[], Any]] | None = None,
    spawner: Spawner | None = None,
    prober: Prober = probe,
    clock: Clock | None = None,
) -> int:
    """Run the agent until SIGTERM/SIGINT: lock, pidfile, status socket, stale children,
    ordered start, watch, reload on SIGHUP or ``POST /reload``, renewals, reverse-order stop.
    Returns the exit code.

    ``lock``: the instance lock the caller already holds (and releases); else it is taken here.
    ``hooks``: see ``Hooks``; ``on_ready`` is the same as ``Hooks.on_ready``, ``background``
    (tasks started once the agent is ready and cancelled at stop, e.g. scheduled backups) the
    same as ``Hooks.tasks``, ``status_extra`` (name -> value function: more top-level fields
    of ``GET /status``) the same as ``Hooks.status``."""
    own_lock = lock is None
    if lock is None:
        try:
            lock = InstanceLock(paths.lock_file).acquire()
        except KagentError as err:
            _print_error(err)
            return int(err.exit_code)
    hooks = hooks or Hooks()
    if on_ready is not None:
        hooks.on_ready.append(on_ready)
    for i, job in enumerate(background):
        hooks.tasks.append((f"background-{i}", _ignore_manager(job)))
    if status_extra:
        extra = dict(status_extra)
        hooks.status.append(lambda: {k: f() for k, f in extra.items()})
    mgr = Manager(paths=paths, role=role, version=version, log_dir=log_dir, policy=policy or RestartPolicy(),
                  load_specs=load_specs, hooks=hooks, spawner=spawner, prober=prober, clock=clock)
    mgr.readiness = Readiness.from_env()  # and NOTIFY_SOCKET leaves the environment children inherit
    mgr.readiness.start_watchdog()
    signals: list[int] = []
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = Tasks(tg, mgr.log)
            try:
                return await _run(mgr, paths, tasks, renew, renew_interval, log_dir, signals)
            finally:
                tasks.cancel_all()
    except BaseException:
        await asyncio.shield(mgr.shutdown())
        raise
    finally:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        paths.status_sock.unlink(missing_ok=True)
        paths.agent_pidfile.unlink(missing_ok=True)
        mgr.launcher.close()
        mgr.readiness.close()
        if own_lock:
            lock.release()


async def _run(mgr: Manager, paths: Paths, tasks: Tasks, renew: Callable[[], Collection[Path]] | None,
               renew_interval: float, log_dir: Path | None, signals: list[int]) -> int:
    fsutil.write_atomic(paths.agent_pidfile, f"{os.getpid()}\n", mode=fsutil.MODE_PIDFILE, durable=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    server = await status.serve(paths.status_sock, mgr.handle_http)

    async def serve() -> None:
        async with server:
            await server.serve_forever()

    tasks.add("status-server", serve, restart=False)
    signals.extend(_install_signals(mgr))
    mgr.log.info("agent_starting", pid=os.getpid(), role=mgr.role, version=mgr.version, run_dir=str(paths.run_dir))
    try:
        loaded = await mgr.in_thread(mgr.load_specs)
        specs = start_order(loaded if isinstance(loaded, Sequence) else loaded.specs)  # a Loaded: reload.py not imported
    except cancel.Cancelled:  # SIGTERM during the first PKI step: nothing runs yet
        mgr.log.info("agent_stopped", reason="stopped while loading")
        return int(ExitCode.OK)
    except KagentError as err:
        _print_error(err)
        mgr.log.error("agent_start_failed", reason=err.render())
        return int(err.exit_code)
    await mgr.stop_stale(specs)
    mgr.phase = "starting"
    gate = asyncio.ensure_future(_reject_while_starting(mgr))
    try:
        failure = await mgr.initial_start(specs)
    finally:
        gate.cancel()
    if failure is not None:
        mgr.log.error("initial_start_failed", reason=failure.render())
        _print_error(failure)
        await mgr.shutdown()
        return int(ExitCode.COMPONENT)
    if not mgr.stop_requested:
        mgr.phase = "running"
        mgr.log.info("agent_ready", components=len(mgr.m.units))
        mgr.readiness.ready(mgr.phase, mgr.status_doc()["components"])
        mgr._hook("on_ready", mgr.hooks.on_ready)
        if renew is not None:
            async def renew_timer() -> None:
                while True:
                    await asyncio.sleep(renew_interval)
                    mgr.request(_Cmd("renew"))

            tasks.add("renew-timer", renew_timer)
        for name, fn in mgr.hooks.tasks:
            tasks.add(name, _bind(fn, mgr))
        await _command_loop(mgr, renew)
    await mgr.shutdown()
    mgr.log.info("agent_stopped")
    return int(ExitCode.OK)


def _bind(fn: Callable[[Manager], Awaitable[None]], mgr: Manager) -> Callable[[], Awaitable[None]]:
    def task() -> Awaitable[None]:
        return fn(mgr)

    return task


def _ignore_manager(job: Callable[[], Awaitable[None]]) -> Callable[[Manager], Awaitable[None]]:
    def task(_mgr: Manager) -> Awaitable[None]:
        return job()

    return task


def run_agent_sync(**kw: Any) -> int:
    """``asyncio.run(run_agent(**kw))`` for the click commands."""
    return asyncio.run(run_agent(**kw))


__all__ = ["Hooks", "Manager", "Tasks", "plan_doc", "run_agent", "run_agent_sync"]
