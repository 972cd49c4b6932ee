"""Pure. The supervisor as a state machine: ``transition(machine, event, now) -> (machine, actions)``.

The edge (``manager.py``) turns what happens (a spawn returned, a pidfd fired, a probe
answered, a timer expired, a command arrived) into an ``Event``, calls ``transition``, and
carries out the ``Action``s it returns (spawn, signal, set a timer, watch health, log, report a
start-up failure). Nothing here touches a process, a clock, a file or the log; time is the
``now`` argument (monotonic seconds). So every supervisor decision is unit-tested in
milliseconds without processes or sleeps (tests/unit/supervisor/test_machine.py).

Per component (``Unit.phase``)::

    WAITING --deps RUNNING--> SPAWNING --Spawned--> STARTING --Ready--> RUNNING
       ^                         |                     |                  |
       |                    SpawnFailed              Exited             Exited
       +-- at once (long run) ---+---------------------+------------------+
       +-- BACKOFF --Timer(BACKOFF)-- (short run: 1 s, 2 s, 4 s ... 30 s)
    strict (the agent's initial start): SpawnFailed / Exited / Timer(STARTUP) -> FAILED + Failed
    Stop: STOPPING (stop_signal) --Exited--> STOPPED; Timer(KILL) -> SIGKILL; Timer(ABANDON) -> STOPPED

Generations: every spawn increments ``Unit.gen``; events and timers carry the generation they
belong to, and an event of an older generation is dropped. That is what makes timers and
health results safe to deliver late.

The one stop algorithm (shutdown, reload, renewal restarts): ``Stop(names)`` queues names;
one unit at a time, in reverse start order, is signalled; the next only after it is gone (or
given up ``KILL_WAIT`` seconds after SIGKILL: a stop always finishes).

Adoption (a later agent restart that keeps unchanged children running): ``Adopt`` registers a
running process known by its pidfd and marker as STARTING/RUNNING without a ``Spawn``; the
rest of the machine does not care whether a unit was spawned or adopted. The edge does not
emit ``Adopt`` yet.
"""

from __future__ import annotations

import signal as _signal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Container, Iterable, Mapping, NamedTuple, Sequence, Union

from kagent.components.spec import ComponentSpec
from kagent.supervisor.policy import ExitStatus, Health, RestartPolicy, State, decide_restart, long_run

KILL_WAIT = 5.0  # after SIGKILL: how long a stop waits before it gives the process up


class Phase(StrEnum):
    WAITING = "waiting"  # for its dependencies to be RUNNING
    SPAWNING = "spawning"  # Spawn issued, no pid yet
    STARTING = "starting"  # a pid, not ready yet (health gate)
    RUNNING = "running"  # ready: healthy, or up when it has no health check
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_STATE = {Phase.WAITING: State.STARTING, Phase.SPAWNING: State.STARTING, Phase.STARTING: State.STARTING,
          Phase.RUNNING: State.RUNNING, Phase.BACKOFF: State.BACKOFF, Phase.STOPPING: State.STOPPING,
          Phase.STOPPED: State.STOPPED, Phase.FAILED: State.FAILED}


class TimerKind(StrEnum):
    BACKOFF = "backoff"
    STARTUP = "startup"
    KILL = "kill"
    ABANDON = "abandon"


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Unit(NamedTuple):
    """One component. (A NamedTuple, like the events: ``_replace`` is several times cheaper
    than ``dataclasses.replace``, and one exit costs three of them on the way to the respawn.)"""

    spec: ComponentSpec
    phase: Phase = Phase.WAITING
    health: Health = Health.UNKNOWN
    health_detail: str = ""
    gen: int = 0
    pid: int | None = None  # set while the process is alive
    adopted: bool = False
    started_at: float | None = None
    failures: int = 0  # consecutive short runs
    spawns: int = 0
    restarts: int = 0
    strict: bool = False  # initial start: a failure is fatal (FAILED + Failed) instead of a restart
    stop_wanted: bool = False
    late: bool = False  # startup_timeout passed without being ready
    last_exit: ExitStatus | None = None
    last_exit_wall: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> State:
        """The status document's state."""
        return _STATE[self.phase]

    @property
    def settled(self) -> bool:
        """Stopped for good (nothing alive, nothing in flight)."""
        return self.phase in (Phase.STOPPED, Phase.FAILED) and self.pid is None


class Machine(NamedTuple):
    units: Mapping[str, Unit] = _EMPTY  # in start order; never mutated, replaced
    policy: RestartPolicy = RestartPolicy()
    stop_queue: tuple[str, ...] = ()  # still to stop, in the order they will be signalled
    # name -> the units whose ``after`` names it (derived from ``units``; kept so that one event
    # costs O(1) and not O(N): only the changed units and their dependents are looked at)
    dependents: Mapping[str, tuple[str, ...]] = _EMPTY

    def unit(self, name: str) -> Unit:
        return self.units[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.units)

    def all_running(self, names: Iterable[str] | None = None) -> bool:
        return all(self.units[n].phase is Phase.RUNNING for n in (self.units if names is None else names)
                   if n in self.units)

    def all_settled(self, names: Iterable[str] | None = None) -> bool:
        return all(self.units[n].settled for n in (self.units if names is None else names) if n in self.units)


# ---- events ---------------------------------------------------------------------------------
# (NamedTuples, not dataclasses: immutable all the same, and several times cheaper to define,
# which is part of the agent's start-up before its first spawn)

class Start(NamedTuple):
    """Add these units (or start again stopped/failed ones) with these specs."""

    specs: tuple[ComponentSpec, ...]
    strict: bool = False


class Arrange(NamedTuple):
    """The start order (reload): units are kept in this order (for status and stops)."""

    order: tuple[str, ...]


class Spawned(NamedTuple):
    name: str
    gen: int
    pid: int
    at: float


class SpawnFailed(NamedTuple):
    name: str
    gen: int
    reason: str


class Ready(NamedTuple):
    name: str
    gen: int


class HealthChanged(NamedTuple):
    name: str
    gen: int
    ok: bool
    detail: str


class Exited(NamedTuple):
    name: str
    gen: int
    pid: int
    status: ExitStatus
    wall: str = ""  # wall-clock time of the exit, for the status document


class Timer(NamedTuple):
    name: str
    gen: int
    kind: TimerKind


class Stop(NamedTuple):
    names: tuple[str, ...]


class Forget(NamedTuple):
    """Drop settled units (removed by a reload)."""

    names: tuple[str, ...]


class Settle(NamedTuple):
    """The initial start is over: failures restart from now on."""


class Update(NamedTuple):
    """A new spec applied in place (health/timeouts; with ``signal``: files rewritten, send
    ``reload_signal``)."""

    spec: ComponentSpec
    signal: bool = False


class Adopt(NamedTuple):
    """A running process of ours (pidfd + marker) taken over without spawning it."""

    spec: ComponentSpec
    pid: int
    started_at: float


Event = Union[Start, Arrange, Spawned, SpawnFailed, Ready, HealthChanged, Exited, Timer, Stop, Forget, Settle,
              Update, Adopt]


# ---- actions --------------------------------------------------------------------------------

class Spawn(NamedTuple):
    name: str
    gen: int
    spec: ComponentSpec


class WatchHealth(NamedTuple):
    """Run the start-up gate (then periodic probes) for this generation: the edge answers with
    ``Ready`` once and ``HealthChanged`` per probe."""

    name: str
    gen: int
    spec: ComponentSpec


class SetTimer(NamedTuple):
    name: str
    gen: int
    kind: TimerKind
    delay: float


class Signal(NamedTuple):
    """To the process group and the pid (a child that left its group still gets it)."""

    name: str
    gen: int
    pid: int
    sig: int


class Up(NamedTuple):
    """The unit just became RUNNING (healthy, or up without a check): per-component work that
    waits for it (e.g. pruning the files of the spec it replaced) runs now."""

    name: str
    gen: int
    spec: ComponentSpec


class Failed(NamedTuple):
    """The initial start failed: the agent stops everything and exits 5 with this message
    (the edge adds the child's last output)."""

    name: str
    message: str


class Log(NamedTuple):
    level: str  # "info" | "warning" | "error"
    event: str
    name: str
    fields: tuple[tuple[str, Any], ...] = ()


Action = Union[Spawn, WatchHealth, SetTimer, Signal, Up, Failed, Log]


# ---- the transition -------------------------------------------------------------------------

def _log(level: str, event: str, name: str, **fields: Any) -> Log:
    return Log(level, event, name, tuple(fields.items()))


class _Step:
    """The machine being changed by one event (a local builder, not shared)."""

    def __init__(self, m: Machine) -> None:
        self.units = dict(m.units)
        self.policy = m.policy
        self.queue = list(m.stop_queue)
        self.dependents = m.dependents
        self.actions: list[Action] = []
        self.changed: set[str] = set()
        self.restructured = False  # units added, removed or reordered: dependents are derived again

    def set(self, u: Unit, **kw: Any) -> Unit:
        new = u._replace(**kw)
        self.units[u.name] = new
        self.changed.add(u.name)
        return new

    def put(self, u: Unit) -> None:
        """A new or replaced unit."""
        self.units[u.name] = u
        self.changed.add(u.name)
        self.restructured = True

    def emit(self, *acts: Action) -> None:
        self.actions.extend(acts)

    def machine(self) -> Machine:
        if self.restructured:
            deps: dict[str, list[str]] = {n: [] for n in self.units}
            for u in self.units.values():
                for d in u.spec.after:
                    if d in deps:
                        deps[d].append(u.name)
            self.dependents = {k: tuple(v) for k, v in deps.items()}
        return Machine(units=self.units, policy=self.policy, stop_queue=tuple(self.queue), dependents=self.dependents)


def transition(m: Machine, ev: Event, now: float) -> tuple[Machine, tuple[Action, ...]]:
    """The next machine and what the edge must do, for one event at monotonic time ``now``."""
    st = _Step(m)
    _apply(st, ev, now)
    _advance_stops(st)
    _launch_ready(st)
    return st.machine(), tuple(st.actions)


def _current(st: _Step, name: str, gen: int) -> Unit | None:
    u = st.units.get(name)
    return u if u is not None and u.gen == gen else None


def _apply(st: _Step, ev: Event, now: float) -> None:  # noqa: C901 - one branch per event
    if isinstance(ev, Start):
        for spec in ev.specs:
            old = st.units.get(spec.name)
            if old is not None and not old.settled:
                st.emit(_log("warning", "start_ignored", spec.name, reason=f"component is {old.phase}"))
                continue
            base = Unit(spec=spec, strict=ev.strict)
            if old is not None:
                base = base._replace(gen=old.gen, spawns=old.spawns, restarts=old.restarts,
                                           last_exit=old.last_exit, last_exit_wall=old.last_exit_wall)
            st.put(base)
            if spec.name in st.queue:
                st.queue.remove(spec.name)
    elif isinstance(ev, Arrange):
        ordered = {n: st.units[n] for n in ev.order if n in st.units}
        ordered.update({n: u for n, u in st.units.items() if n not in ordered})
        st.units = ordered
        st.restructured = True
    elif isinstance(ev, Spawned):
        u = _current(st, ev.name, ev.gen)
        if u is None or u.phase is not Phase.SPAWNING:
            return
        restarts = u.restarts + 1 if u.spawns else u.restarts
        u = st.set(u, pid=ev.pid, started_at=ev.at, spawns=u.spawns + 1, restarts=restarts, late=False,
                   health=Health.UNKNOWN, health_detail="")
        st.emit(_log("info", "component_started", u.name, pid=ev.pid, attempt=u.failures + 1))
        _after_start(st, u)
    elif isinstance(ev, Adopt):
        old = st.units.get(ev.spec.name)
        if old is not None and not old.settled:
            st.emit(_log("warning", "adopt_ignored", ev.spec.name, reason=f"component is {old.phase}"))
            return
        gen = (old.gen if old else 0) + 1
        u = Unit(spec=ev.spec, phase=Phase.STARTING, gen=gen, pid=ev.pid, adopted=True, started_at=ev.started_at,
                 spawns=1)
        st.put(u)
        st.emit(_log("info", "component_adopted", u.name, pid=ev.pid))
        _after_start(st, u)
    elif isinstance(ev, SpawnFailed):
        u = _current(st, ev.name, ev.gen)
        if u is None or u.phase is not Phase.SPAWNING:
            return
        st.emit(_log("error", "component_spawn_failed", u.name, reason=ev.reason))
        if u.stop_wanted:
            st.set(u, phase=Phase.STOPPED)
        elif u.strict:
            st.set(u, phase=Phase.FAILED)
            st.emit(Failed(u.name, f"cannot start: {ev.reason}"))
        else:
            _restart_later(st, u, started_at=now, now=now, ran=False)
    elif isinstance(ev, Ready):
        u = _current(st, ev.name, ev.gen)
        if u is None or u.phase is not Phase.STARTING or u.pid is None:
            return
        st.set(u, phase=Phase.RUNNING, health=Health.HEALTHY, health_detail="", late=False)
        up_ms = round((now - (u.started_at or now)) * 1000)
        st.emit(_log("info", "component_healthy", u.name, pid=u.pid, duration_ms=up_ms), Up(u.name, u.gen, u.spec))
    elif isinstance(ev, HealthChanged):
        u = _current(st, ev.name, ev.gen)
        if u is None or u.pid is None:
            return
        new = Health.HEALTHY if ev.ok else Health.UNHEALTHY
        if u.phase is Phase.RUNNING and new is not u.health:
            st.emit(_log("info" if ev.ok else "warning", "component_health_changed", u.name, health=str(new),
                         reason=ev.detail))
        if u.phase is Phase.RUNNING or u.late:
            st.set(u, health=new, health_detail=ev.detail)
        else:
            st.set(u, health_detail=ev.detail)  # still in the gate: remembered for the timeout message
    elif isinstance(ev, Exited):
        u = _current(st, ev.name, ev.gen)
        if u is None or u.pid != ev.pid:
            return
        u = st.set(u, pid=None, health=Health.UNKNOWN, last_exit=ev.status, last_exit_wall=ev.wall)
        if u.phase is Phase.STOPPING or u.stop_wanted:
            st.set(u, phase=Phase.STOPPED)
            st.emit(_log("info", "component_stopped", u.name, pid=ev.pid, exit_code=ev.status.code,
                         signal=ev.status.signal))
            return
        uptime = now - (u.started_at if u.started_at is not None else now)
        st.emit(_log("warning", "component_exited", u.name, pid=ev.pid, exit_code=ev.status.code,
                     signal=ev.status.signal, uptime_s=round(uptime, 3)))
        if u.phase is Phase.FAILED:
            return
        if u.strict:
            st.set(u, phase=Phase.FAILED)
            st.emit(Failed(u.name, f"{ev.status.describe()} during start-up"))
            return
        _restart_later(st, u, started_at=u.started_at if u.started_at is not None else now, now=now)
    elif isinstance(ev, Timer):
        _timer(st, ev)
    elif isinstance(ev, Stop):
        for name in ev.names:
            u = st.units.get(name)
            if u is None:
                continue
            st.set(u, stop_wanted=True)
            if name not in st.queue and u.phase is not Phase.STOPPING:
                st.queue.append(name)
        order = list(st.units)
        st.queue.sort(key=lambda n: -order.index(n))  # reverse start order
    elif isinstance(ev, Forget):
        for name in ev.names:
            u = st.units.get(name)
            if u is not None and u.settled:
                del st.units[name]
                st.restructured = True
                if name in st.queue:
                    st.queue.remove(name)
    elif isinstance(ev, Settle):
        for u in list(st.units.values()):
            if u.strict:
                st.set(u, strict=False)
    elif isinstance(ev, Update):
        u = st.units.get(ev.spec.name)
        if u is None:
            return
        u = st.set(u, spec=ev.spec)
        st.restructured = True  # its ``after`` may differ
        if ev.signal and u.pid is not None:
            st.emit(Signal(u.name, u.gen, u.pid, int(ev.spec.reload_signal)),
                    _log("info", "component_signalled", u.name, signal=int(ev.spec.reload_signal)))


def _after_start(st: _Step, u: Unit) -> None:
    """A process is there (spawned or adopted): gate on health, or ready at once without a check."""
    if u.stop_wanted:
        st.set(u, phase=Phase.STARTING)  # the stop algorithm signals it next
        return
    if u.spec.health is None:
        st.set(u, phase=Phase.RUNNING)
        st.emit(Up(u.name, u.gen, u.spec))
        return
    st.set(u, phase=Phase.STARTING)
    st.emit(WatchHealth(u.name, u.gen, u.spec), SetTimer(u.name, u.gen, TimerKind.STARTUP, u.spec.startup_timeout))


def _restart_later(st: _Step, u: Unit, *, started_at: float, now: float, ran: bool = True) -> None:
    d = decide_restart(st.policy, started_at=started_at, now=now, failures=u.failures, ran=ran)
    if d.delay <= 0:
        st.set(u, phase=Phase.WAITING, failures=d.failures)
        return
    st.set(u, phase=Phase.BACKOFF, failures=d.failures)
    st.emit(_log("info", "component_backoff", u.name, restart_in_s=d.delay, attempt=d.failures),
            SetTimer(u.name, u.gen, TimerKind.BACKOFF, d.delay))


def _timer(st: _Step, ev: Timer) -> None:
    u = _current(st, ev.name, ev.gen)
    if u is None:
        return
    if ev.kind is TimerKind.BACKOFF:
        if u.phase is Phase.BACKOFF and not u.stop_wanted:
            st.set(u, phase=Phase.WAITING)
    elif ev.kind is TimerKind.STARTUP:
        if u.phase is not Phase.STARTING or u.pid is None or u.stop_wanted:
            return
        detail = u.health_detail or "no answer yet"
        if u.strict:
            st.set(u, phase=Phase.FAILED)
            st.emit(_log("error", "component_unhealthy", u.name, reason=detail),
                    Failed(u.name, f"not healthy after {u.spec.startup_timeout:g}s ({detail})"))
        elif not u.late:
            st.set(u, late=True, health=Health.UNHEALTHY)
            st.emit(_log("warning", "component_unhealthy", u.name, reason=detail))
    elif ev.kind is TimerKind.KILL:
        if u.phase is Phase.STOPPING and u.pid is not None:
            st.emit(_log("warning", "stop_timed_out", u.name, pid=u.pid, timeout_s=u.spec.stop_timeout),
                    Signal(u.name, u.gen, u.pid, int(_signal.SIGKILL)),
                    SetTimer(u.name, u.gen, TimerKind.ABANDON, KILL_WAIT))
    elif ev.kind is TimerKind.ABANDON:
        if u.phase is Phase.STOPPING and u.pid is not None:
            st.emit(_log("error", "stop_abandoned", u.name, pid=u.pid,
                         reason=f"still there {KILL_WAIT:g}s after SIGKILL"))
            st.set(u, phase=Phase.STOPPED, pid=None, gen=u.gen + 1)  # its late exit is ignored


def _advance_stops(st: _Step) -> None:
    """The one stop algorithm: one unit at a time, in the queue's order."""
    while st.queue:
        if any(u.phase is Phase.STOPPING for u in st.units.values()):
            return
        name = st.queue[0]
        u = st.units.get(name)
        if u is None:
            st.queue.pop(0)
            continue
        if u.phase is Phase.SPAWNING:
            return  # its Spawned/SpawnFailed comes next
        st.queue.pop(0)
        if u.pid is None:
            if u.phase is not Phase.FAILED:
                st.set(u, phase=Phase.STOPPED)
            continue
        st.set(u, phase=Phase.STOPPING)
        st.emit(_log("info", "stop_requested", u.name, pid=u.pid, signal=int(u.spec.stop_signal)),
                Signal(u.name, u.gen, u.pid, int(u.spec.stop_signal)),
                SetTimer(u.name, u.gen, TimerKind.KILL, u.spec.stop_timeout))
        return


def _launch_ready(st: _Step) -> None:
    """Spawn every waiting unit whose dependencies are RUNNING. Only the units this event
    changed, and the dependents of those now RUNNING, can have become ready."""
    if st.restructured:
        candidates = list(st.units)
    else:
        seen = set(st.changed)
        for name in st.changed:
            u = st.units.get(name)
            if u is not None and u.phase is Phase.RUNNING:
                seen.update(st.dependents.get(name, ()))
        if not seen:
            return
        candidates = [n for n in st.units if n in seen] if len(seen) > 1 else list(seen)
    for name in candidates:
        u = st.units.get(name)
        if u is None or u.phase is not Phase.WAITING or u.stop_wanted:
            continue
        deps = [st.units[d] for d in u.spec.after if d in st.units]
        if all(d.phase is Phase.RUNNING for d in deps):
            u = st.set(u, phase=Phase.SPAWNING, gen=u.gen + 1)
            st.emit(Spawn(u.name, u.gen, u.spec))


def respawns_at_once(m: Machine, name: str, gen: int, pid: int, now: float,
                     exiting: Container[str] = ()) -> ComponentSpec | None:
    """The spec ``transition`` would spawn at once, should the child ``pid`` of unit ``name``
    (generation ``gen``) exit at ``now`` (None: it would not: stopping, strict, a short run
    that backs off, a dependency not RUNNING, a stale generation; or it might not: while any
    stop is queued).

    The edge asks this in the child's pidfd callback and starts the replacement before it
    reaps the old child and runs the transition (both cost more than the spawn itself);
    the ``Spawn`` that ``transition(Exited)`` returns then claims that child, and one nobody
    claims is killed. So this must agree with ``transition``: tests/unit/supervisor/
    test_machine.py checks the two against each other over every phase and flag.

    ``exiting``: components whose exit the edge has seen and will feed to ``transition``
    before this one's: a dependency among them is not RUNNING by then."""
    u = m.units.get(name)
    if u is None or u.gen != gen or u.pid != pid or u.stop_wanted or u.strict or m.stop_queue:
        return None  # (a stop under way may take a dependency down in the same transition)
    if u.phase is not Phase.RUNNING and u.phase is not Phase.STARTING:
        return None
    if not long_run(m.policy, started_at=u.started_at if u.started_at is not None else now, now=now):
        return None  # (``decide_restart`` backs off)
    for d in u.spec.after:
        dep = m.units.get(d)
        if dep is not None and (dep.phase is not Phase.RUNNING or d in exiting):
            return None
    return u.spec


def start(specs: Sequence[ComponentSpec], *, policy: RestartPolicy, strict: bool,
          now: float = 0.0) -> tuple[Machine, tuple[Action, ...]]:
    """A machine for ``specs`` (in start order) and its first actions."""
    return transition(Machine(policy=policy), Start(tuple(specs), strict=strict), now)
