"""The pure supervisor state machine: every decision without a process, a clock or a sleep."""

from __future__ import annotations

import signal
from pathlib import Path

from kagent.components.spec import ComponentSpec, TcpCheck
from kagent.supervisor import machine as sm
from kagent.supervisor.machine import Phase, TimerKind
from kagent.supervisor.policy import ExitStatus, Health, RestartPolicy

POLICY = RestartPolicy(min_uptime=10, backoff_initial=1, backoff_max=30)
CHECK = TcpCheck(host="127.0.0.1", port=1)


def spec(name: str, **kw) -> ComponentSpec:
    return ComponentSpec(name=name, binary=Path("/bin/true"), **kw)


class Run:
    """Feeds events, keeps the machine, answers every Spawn with a pid (like the edge)."""

    def __init__(self, *specs: ComponentSpec, strict: bool = False, auto_spawn: bool = True) -> None:
        self.m = sm.Machine(policy=POLICY)
        self.now = 0.0
        self.auto = auto_spawn
        self.next_pid = 100
        self.actions: list[sm.Action] = []
        self.send(sm.Start(specs, strict=strict))

    def send(self, ev: sm.Event) -> tuple[sm.Action, ...]:
        self.m, acts = sm.transition(self.m, ev, self.now)
        self.actions.extend(acts)
        out = list(acts)
        if self.auto:
            for a in acts:
                if isinstance(a, sm.Spawn):
                    self.next_pid += 1
                    out += self.send(sm.Spawned(a.name, a.gen, self.next_pid, self.now))
        return tuple(out)

    def u(self, name: str) -> sm.Unit:
        return self.m.units[name]

    def exit(self, name: str, code: int = 1) -> tuple[sm.Action, ...]:
        u = self.u(name)
        assert u.pid is not None
        return self.send(sm.Exited(name, u.gen, u.pid, ExitStatus(code=code)))

    def of(self, kind: type, acts=None) -> list:
        return [a for a in (self.actions if acts is None else acts) if isinstance(a, kind)]

    def logs(self, acts=None) -> list[str]:
        return [a.event for a in self.of(sm.Log, acts)]


def test_dependencies_start_only_after_theirs_are_running():
    r = Run(spec("etcd", health=CHECK), spec("api", after=("etcd",)), spec("other"))
    assert [a.name for a in r.of(sm.Spawn)] == ["etcd", "other"]
    assert r.u("api").phase is Phase.WAITING and r.u("etcd").phase is Phase.STARTING
    assert r.u("other").phase is Phase.RUNNING  # no check: up is ready
    acts = r.send(sm.Ready("etcd", r.u("etcd").gen))
    assert [a.name for a in r.of(sm.Spawn, acts)] == ["api"]
    assert r.u("etcd").health is Health.HEALTHY and r.m.all_running()


def test_an_early_exit_backs_off_and_a_long_run_restarts_at_once():
    r = Run(spec("a"))
    r.now = 2.0
    acts = r.exit("a")
    assert r.u("a").phase is Phase.BACKOFF
    [t] = r.of(sm.SetTimer, acts)
    assert (t.kind, t.delay) == (TimerKind.BACKOFF, 1.0)
    r.now = 3.0
    acts = r.send(sm.Timer("a", t.gen, TimerKind.BACKOFF))
    assert r.of(sm.Spawn, acts) and r.u("a").restarts == 1
    r.now = 2.0 + 60
    acts = r.exit("a")
    assert r.u("a").failures == 0 and r.of(sm.Spawn, acts), "a run longer than min_uptime restarts at once"


def test_events_of_an_older_generation_are_dropped():
    r = Run(spec("a", health=CHECK))
    old = r.u("a")
    r.exit("a")
    r.send(sm.Timer("a", old.gen, TimerKind.BACKOFF))
    new = r.u("a")
    assert new.gen == old.gen + 1 and new.pid != old.pid
    before = r.m
    r.send(sm.Exited("a", old.gen, old.pid, ExitStatus(code=0)))
    r.send(sm.Ready("a", old.gen))
    r.send(sm.Timer("a", old.gen, TimerKind.STARTUP))
    assert r.m == before


def test_strict_start_failures_are_reported_once_and_not_restarted():
    r = Run(spec("a"), strict=True)
    acts = r.exit("a", 3)
    [f] = r.of(sm.Failed, acts)
    assert f.name == "a" and f.message == "exited with code 3 during start-up"
    assert r.u("a").phase is Phase.FAILED and not r.of(sm.Spawn, acts)
    r2 = Run(spec("b", health=CHECK), strict=True)
    r2.send(sm.HealthChanged("b", r2.u("b").gen, False, "connection refused"))
    acts = r2.send(sm.Timer("b", r2.u("b").gen, TimerKind.STARTUP))
    assert r2.of(sm.Failed, acts)[0].message == "not healthy after 60s (connection refused)"
    r3 = Run(spec("c"), strict=True, auto_spawn=False)
    [s] = r3.of(sm.Spawn)
    acts = r3.send(sm.SpawnFailed("c", s.gen, "/x does not exist"))
    assert r3.of(sm.Failed, acts)[0].message == "cannot start: /x does not exist"
    # after Settle the same failure is a restart
    r4 = Run(spec("d"), strict=True)
    r4.send(sm.Settle())
    assert not r4.of(sm.Failed, r4.exit("d")) and r4.u("d").phase is Phase.BACKOFF


def test_a_spawn_failure_after_start_backs_off_and_survives():
    r = Run(spec("a"), auto_spawn=False)
    [s] = r.of(sm.Spawn)
    acts = r.send(sm.SpawnFailed("a", s.gen, "No space left on device"))
    assert r.u("a").phase is Phase.BACKOFF and r.of(sm.SetTimer, acts)[0].kind is TimerKind.BACKOFF
    assert "component_spawn_failed" in r.logs(acts)


def test_stop_is_one_at_a_time_in_reverse_start_order():
    r = Run(spec("etcd"), spec("api", after=("etcd",)), spec("kcm", after=("api",)))
    acts = r.send(sm.Stop(("etcd", "api", "kcm")))
    sigs = r.of(sm.Signal, acts)
    assert [(s.name, s.sig) for s in sigs] == [("kcm", signal.SIGTERM)]
    assert r.u("kcm").phase is Phase.STOPPING and r.u("api").phase is Phase.RUNNING
    acts = r.exit("kcm", 0)
    assert [s.name for s in r.of(sm.Signal, acts)] == ["api"] and r.u("kcm").phase is Phase.STOPPED
    r.exit("api", 0)
    r.exit("etcd", 0)
    assert r.m.all_settled() and not r.m.stop_queue


def test_a_stuck_stop_escalates_to_kill_and_is_given_up_so_a_stop_always_finishes():
    r = Run(spec("a", stop_timeout=2), spec("b"))
    acts = r.send(sm.Stop(("a", "b")))
    [kill_timer] = [t for t in r.of(sm.SetTimer, acts) if t.kind is TimerKind.KILL]
    assert kill_timer.name == "b" and kill_timer.delay == 5.0
    r.exit("b", 0)
    u = r.u("a")
    acts = r.send(sm.Timer("a", u.gen, TimerKind.KILL))
    assert [s.sig for s in r.of(sm.Signal, acts)] == [signal.SIGKILL]
    [ab] = [t for t in r.of(sm.SetTimer, acts) if t.kind is TimerKind.ABANDON]
    acts = r.send(sm.Timer("a", u.gen, TimerKind.ABANDON))
    assert "stop_abandoned" in r.logs(acts) and r.m.all_settled()


def test_a_stop_while_waiting_or_backing_off_needs_no_signal():
    r = Run(spec("etcd", health=CHECK), spec("api", after=("etcd",)))
    r.send(sm.Stop(("api",)))
    assert r.u("api").phase is Phase.STOPPED
    r.send(sm.Ready("etcd", r.u("etcd").gen))
    assert not [a for a in r.of(sm.Spawn) if a.name == "api"], "a stopped unit is not spawned"


def test_restart_after_stop_counts_a_restart_and_keeps_the_order():
    r = Run(spec("a"), spec("b"))
    r.send(sm.Stop(("b",)))
    r.exit("b", 0)
    r.send(sm.Start((spec("b", args=("x",)),)))
    assert r.u("b").phase is Phase.RUNNING and r.u("b").restarts == 1 and r.u("b").spec.args == ("x",)
    r.send(sm.Arrange(("b", "a")))
    assert r.m.names() == ("b", "a")


def test_unhealthy_after_the_startup_timeout_is_reported_but_not_fatal_after_start():
    r = Run(spec("a", health=CHECK))
    g = r.u("a").gen
    r.send(sm.HealthChanged("a", g, False, "refused"))
    acts = r.send(sm.Timer("a", g, TimerKind.STARTUP))
    assert not r.of(sm.Failed, acts) and r.u("a").late and r.u("a").health is Health.UNHEALTHY
    assert r.u("a").phase is Phase.STARTING
    r.send(sm.Ready("a", g))
    assert r.u("a").phase is Phase.RUNNING
    acts = r.send(sm.HealthChanged("a", g, False, "timed out"))
    assert r.logs(acts) == ["component_health_changed"] and r.u("a").health is Health.UNHEALTHY
    assert r.logs(r.send(sm.HealthChanged("a", g, False, "timed out"))) == []  # reported once


def test_update_with_signal_sends_the_reload_signal_to_the_same_pid():
    r = Run(spec("a"))
    pid = r.u("a").pid
    acts = r.send(sm.Update(spec("a", reload_signal=signal.SIGUSR1), signal=True))
    assert [(s.pid, s.sig) for s in r.of(sm.Signal, acts)] == [(pid, signal.SIGUSR1)]
    assert r.u("a").pid == pid


def test_forget_drops_only_settled_units():
    r = Run(spec("a"), spec("b"))
    r.send(sm.Forget(("a",)))
    assert "a" in r.m.units
    r.send(sm.Stop(("a",)))
    r.exit("a", 0)
    r.send(sm.Forget(("a",)))
    assert r.m.names() == ("b",)


def test_adopt_takes_over_a_running_child_without_spawning():
    r = Run()
    acts = r.send(sm.Adopt(spec("etcd", health=CHECK), pid=4242, started_at=0.0))
    assert not r.of(sm.Spawn, acts) and r.of(sm.WatchHealth, acts)
    u = r.u("etcd")
    assert u.adopted and u.pid == 4242 and u.phase is Phase.STARTING
    r.send(sm.Ready("etcd", u.gen))
    assert r.u("etcd").phase is Phase.RUNNING
    r.send(sm.Stop(("etcd",)))
    assert r.u("etcd").phase is Phase.STOPPING


def test_respawns_at_once_agrees_with_the_transition_in_every_phase():
    """The edge starts a replacement before the Exited transition on this answer alone, so
    the two must agree: over every phase a child lives in, flag, uptime and dependency state."""
    import itertools

    dep, comp = spec("dep"), spec("comp", after=("dep",))
    checked = 0
    for (phase, stop_wanted, strict, uptime, failures, dep_phase, same_gen, same_pid, queued) in itertools.product(
            list(Phase), (False, True), (False, True), (0.0, 9.99, 10.0, 60.0), (0, 3), list(Phase),
            (True, False), (True, False), (False, True)):
        u = sm.Unit(spec=comp, phase=phase, gen=4, pid=700, started_at=100.0, failures=failures,
                    strict=strict, stop_wanted=stop_wanted)
        d = sm.Unit(spec=dep, phase=dep_phase, gen=2, pid=600 if dep_phase is not Phase.STOPPED else None,
                    started_at=0.0)
        m = sm.Machine(units={"dep": d, "comp": u}, policy=POLICY, dependents={"dep": ("comp",), "comp": ()},
                       stop_queue=("dep",) if queued else ())
        now = 100.0 + uptime
        gen, pid = (4 if same_gen else 3), (700 if same_pid else 701)
        predicted = sm.respawns_at_once(m, "comp", gen, pid, now)
        _, acts = sm.transition(m, sm.Exited("comp", gen, pid, ExitStatus(signal=9)), now)
        spawned = [a for a in acts if isinstance(a, sm.Spawn) and a.name == "comp"]
        where = (phase, stop_wanted, strict, uptime, dep_phase, gen, pid)
        if phase in (Phase.STARTING, Phase.RUNNING, Phase.STOPPING, Phase.FAILED):  # the phases a pid lives in
            assert (predicted is not None) == bool(spawned), where
        else:  # no pid there: never predicted (an unclaimed replacement would only be killed again)
            assert predicted is None, where
        if predicted is not None:
            assert predicted is spawned[0].spec is comp
            checked += 1
    assert checked > 0, "some combinations respawn at once"


def test_respawns_at_once_only_after_a_long_enough_run():
    r = Run(spec("a"))
    u = r.u("a")
    assert sm.respawns_at_once(r.m, "a", u.gen, u.pid, POLICY.min_uptime - 0.01) is None
    assert sm.respawns_at_once(r.m, "a", u.gen, u.pid, POLICY.min_uptime) is u.spec
    r.send(sm.Stop(("a",)))
    assert sm.respawns_at_once(r.m, "a", u.gen, u.pid, 60.0) is None, "a stop wanted is never respawned"


def test_respawns_at_once_counts_a_dependency_whose_exit_comes_first_as_down():
    """A mass kill: the edge sees the dependency's exit, then this one's, and feeds them to
    the machine in that order; asked with the dependency ``exiting``, the predicate agrees
    with what the machine then does (the dependent waits for its dependency again)."""
    dep, comp = spec("dep"), spec("comp", after=("dep",))
    for dep_uptime in (0.0, 60.0):  # the dependency backs off, or restarts at once
        d = sm.Unit(spec=dep, phase=Phase.RUNNING, gen=2, pid=600, started_at=100.0 - dep_uptime + 60.0)
        u = sm.Unit(spec=comp, phase=Phase.RUNNING, gen=4, pid=700, started_at=100.0)
        m = sm.Machine(units={"dep": d, "comp": u}, policy=POLICY, dependents={"dep": ("comp",), "comp": ()})
        now = 160.0
        m1, _ = sm.transition(m, sm.Exited("dep", 2, 600, ExitStatus(signal=9)), now)
        _, acts = sm.transition(m1, sm.Exited("comp", 4, 700, ExitStatus(signal=9)), now)
        assert not [a for a in acts if isinstance(a, sm.Spawn) and a.name == "comp"]
        assert sm.respawns_at_once(m, "comp", 4, 700, now, exiting={"dep"}) is None
        assert sm.respawns_at_once(m, "comp", 4, 700, now) is comp, "its own exit alone: at once"


def test_a_failed_spawn_backs_off_even_when_any_run_counts_as_long():
    # min_uptime 0: every run is long enough to restart at once, but a spawn that failed
    # did not run: restarting it at once would spin
    r = Run(spec("a"), auto_spawn=False)
    r.m = r.m._replace(policy=RestartPolicy(min_uptime=0.0, backoff_initial=0.5))
    [s] = r.of(sm.Spawn)
    acts = r.send(sm.SpawnFailed("a", s.gen, "EMFILE"))
    assert r.u("a").phase is Phase.BACKOFF and r.u("a").failures == 1
    assert [(t.kind, t.delay) for t in r.of(sm.SetTimer, acts)] == [(TimerKind.BACKOFF, 0.5)]
