"""Edge. A controller's own etcd member leaving the cluster (``kagent etcd leave`` without
``--peer-address``), the same steps whether the agent runs or not:

- ``remove_own_member``: the member is removed through this node's etcd when it answers, else
  through another controller's API (``kagent.join.controller.leave_through_api``, for a
  stopped controller); ``<data>/etcd-member.json`` then says ``left``.
- With the agent running, the command asks the agent (``POST /etcd/leave`` on its status
  socket, ``ROUTE``), which runs ``leave_job`` as a queued command (never at the same time as
  a reload or a renewal): the removal, then at once etcd and every component that needs it
  (``after``, transitively: the control API, kube-apiserver and what needs it) are stopped for
  good. etcd exits by itself about a second after its own removal; the stop is queued before
  that, so it is never restarted. ``kagent status`` keeps their rows, etcd as ``left`` and the
  others as ``stopped``; one ``etcd_member_left`` event says so; a SIGHUP reload does not
  start them again (``drop_left``). The agent keeps running (a worker's components of a
  controller+worker keep running); stop it and ``kagent reset`` the host before reusing it.
- ``removed_watch``: the same end when the member was removed by someone else (etcd exits
  after saying so, ``REMOVED_LINE``), instead of restarting etcd forever.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from kagent.errors import PreconditionError
from kagent.join import controller as cj
from kagent.paths import Paths

if TYPE_CHECKING:
    from kagent.components.spec import ComponentSpec
    from kagent.supervisor.machine import Machine
    from kagent.supervisor.manager import Manager

ROUTE = ("POST", "/etcd/leave")
REMOVED_LINE = "the member has been permanently removed from the cluster"  # etcd 3.4 and 3.5, then exit 0
LEAVE_DEADLINE = 30.0  # s: a removal retries this long while etcd is not ready for it
ETCD = "etcd"


def remove_own_member(paths: Paths, *, client_port: int, own_api: str) -> tuple[str, str]:
    """Remove this controller's member; returns (member name, how: ``its own etcd`` or the
    API URL). Raises PreconditionError (exit 4) with nothing changed when this data dir is no
    member, the member is the last one, or nothing could remove it."""
    from kagent.join import membership
    from kagent.join.etcdclient import EtcdUnavailable, local_client

    st = cj.load_state(paths)
    if st is None:
        raise PreconditionError(str(cj.state_path(paths)), "this data dir holds no etcd member",
                                hint="run it on a controller that ran etcd")
    if st.state not in ("initial", "joined"):
        raise PreconditionError(str(cj.state_path(paths)), f"etcd member {st.name} is {st.state}, not a member to leave",
                                hint="stop this controller and reset it (kagent reset) before reusing the host"
                                if st.state == "left" else "complete the join first (kagent controller --token-file)")
    with local_client(paths, client_port, timeout=5) as client:
        try:
            reachable = client.health(timeout=3)
        except EtcdUnavailable:
            reachable = False
        if reachable:
            membership.remove(client, node=st.name, deadline_s=LEAVE_DEADLINE)
            cj.save_state(paths, cj.MemberState(name=st.name, state="left", api_urls=st.api_urls))
            return st.name, "its own etcd"
    through = cj.leave_through_api(paths, name=st.name, api_urls=[u for u in st.api_urls if u != own_api])
    return st.name, through


def leave_job(paths: Paths, *, client_port: int, own_api: str) -> Callable[[Manager], Awaitable[tuple[int, Any]]]:
    """The agent's ``POST /etcd/leave``: 200 ``{"member", "through", "stopped": [names]}``, or
    409 ``{"error", "hint"}`` with nothing changed."""

    async def job(mgr: Manager) -> tuple[int, Any]:
        try:
            name, through = await asyncio.to_thread(remove_own_member, paths, client_port=client_port, own_api=own_api)
        except PreconditionError as err:
            mgr.log.warning("etcd_leave_refused", reason=f"{err.where}: {err.what}")
            return 409, {"error": f"{err.where}: {err.what}", "hint": err.hint}
        # no await between the removal and the stop: etcd is never restarted after it
        names = await _retire_etcd(mgr, name, through)
        return 200, {"member": name, "through": through, "stopped": list(names)}

    return job


async def _retire_etcd(mgr: Manager, member: str, through: str) -> tuple[str, ...]:
    """Stop etcd and what needs it for good (status ``left`` / ``stopped``), with one event."""
    from kagent.supervisor.order import needing

    names = needing([u.spec for u in mgr.m.units.values()], [ETCD])
    if not names:
        return ()
    await mgr.retire({n: "left" if n == ETCD else "stopped" for n in names})
    mgr.log.info("etcd_member_left", member=member, through=through, stopped=list(names))
    return names


def removed_watch(paths: Paths) -> Callable[[Manager], Awaitable[None]]:
    """A ``Hooks.tasks`` task: this member removed by someone else (``kagent etcd leave
    --peer-address`` on another controller, or while this one was down). etcd then exits 0
    after printing ``REMOVED_LINE``, and every restart does the same: at the first such exit
    the state file says ``left`` and etcd and what needs it are retired as after a leave, so
    there is no crash loop. Exits of a stop, and a join not completed (``pending``: its next
    attempt replaces the member), are left alone."""

    async def task(mgr: Manager) -> None:
        seen = -1

        def etcd_exited(m: Machine) -> bool:
            u = m.units.get(ETCD)
            return u is None or (u.pid is None and u.last_exit is not None and u.gen != seen and not u.stop_wanted)

        while True:
            await mgr.wait_until(etcd_exited)
            u = mgr.m.units.get(ETCD)
            if mgr.stop_requested or u is None:
                return
            seen = u.gen
            if not any(REMOVED_LINE in line for line in await mgr.output_tail(ETCD)):
                continue
            st = cj.load_state(paths)
            if st is None or st.state not in ("initial", "joined"):
                continue
            try:
                cj.save_state(paths, cj.MemberState(name=st.name, state="left", api_urls=st.api_urls))
                saved = True
            except OSError as err:  # (a full disk) retired all the same; watched on, should a reload start etcd again
                saved = False
                mgr.log.error("etcd_member_state_unsaved", path=str(cj.state_path(paths)), reason=err.strerror or str(err))
            member = st.name

            async def retire(m: Manager) -> tuple[int, Any]:
                names = await _retire_etcd(m, member, "its removal by another member")
                return 200, {"stopped": list(names)}

            await mgr.submit(retire)
            if saved:
                return

    return task


def drop_left(paths: Paths, specs: Sequence[ComponentSpec]) -> Sequence[ComponentSpec]:
    """The specs a controller whose member left still runs: without etcd and what needs it."""
    from kagent.supervisor.order import needing

    st = cj.load_state(paths)
    if st is None or st.state != "left":
        return specs
    gone = set(needing(specs, [ETCD]))
    return [s for s in specs if s.name not in gone]
