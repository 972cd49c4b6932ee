"""Scheduled backups in a running controller (``spec.backup``): one asyncio task, one timer.

The task sleeps until the next backup is due (one timer: ``wait_for`` on a change event, no
polling), takes it in a worker thread (the event loop and the components are never touched:
a failure is logged and shown in ``kagent status``), then prunes the scheduled archives beyond
``retention`` in ``directory``. Without ``spec.backup`` it waits on the event alone.

A reload hands the new spec to ``apply`` (after the reload was accepted; a rejected reload
changes nothing): enabling starts the timer (the first backup one ``schedule`` later),
removing the section stops it (a backup already running finishes), a new ``schedule`` counts
from the last backup (or from when backups were enabled; one already overdue is taken at once),
a new ``retention`` or ``directory`` applies to the next backup. ``apply`` says what changed,
for the reload's reply and log.

Imports stay light (no ``kagent.backup`` until a backup is taken): every controller builds a
scheduler at start-up, also one without ``spec.backup``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kagent import log
from kagent.config.load import format_duration
from kagent.config.model import BackupSpec
from kagent.errors import KagentError

if TYPE_CHECKING:
    from kagent.backup import BackupResult


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ScheduleStatus:
    spec: BackupSpec
    next_at: str | None = None
    last: dict[str, Any] | None = None
    taken: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"every": format_duration(self.spec.schedule), "retention": self.spec.retention,
                "directory": self.spec.directory, "next_at": self.next_at, "last": self.last,
                "taken": self.taken, "failed": self.failed}


def describe_change(old: BackupSpec | None, new: BackupSpec | None) -> str | None:
    """Pure. What a reload changes for scheduled backups, in words; None when nothing."""
    if old == new:
        return None
    if new is None:
        return "stopped"
    if old is None:
        return f"started: every {format_duration(new.schedule)} into {new.directory}, keep {new.retention}"
    parts = []
    if old.schedule != new.schedule:
        parts.append(f"rescheduled: every {format_duration(old.schedule)} -> {format_duration(new.schedule)}")
    if old.directory != new.directory:
        parts.append(f"directory {old.directory} -> {new.directory}")
    if old.retention != new.retention:
        parts.append(f"retention {old.retention} -> {new.retention}")
    return "; ".join(parts)


def take_and_prune(take: Callable[[str], BackupResult], spec: BackupSpec) -> tuple[BackupResult, list[Path]]:
    """One scheduled backup into ``spec.directory``, then prune beyond ``spec.retention``."""
    from kagent.backup import list_backups, prune_plan

    Path(spec.directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    result = take(spec.directory)
    pruned = []
    for old in prune_plan(list_backups(Path(spec.directory)), spec.retention):
        old.unlink(missing_ok=True)
        pruned.append(old)
    return result, pruned


class BackupScheduler:
    """The timer of ``spec.backup``: ``run`` is the long-running task, ``apply`` (from the
    event loop) changes its spec, ``status_fields`` is its part of ``GET /status``."""

    def __init__(self, spec: BackupSpec | None, take: Callable[[str], BackupResult],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._take = take
        self._clock = clock
        self._changed = asyncio.Event()
        self._anchor = clock()  # when the current interval began: the last backup, or enabling
        self.status: ScheduleStatus | None = ScheduleStatus(spec=spec) if spec is not None else None
        self._log = log.get(component="backup")

    def apply(self, spec: BackupSpec | None) -> str | None:
        """The spec of an accepted reload. Returns what changed (None: nothing)."""
        change = describe_change(self.spec, spec)
        if change is None:
            return None
        if self.spec is None:
            self._anchor = self._clock()
        self.spec = spec
        if spec is None:
            self.status = None
            self._log.info("backup_schedule_stopped", reason="spec.backup removed from the config")
        else:
            if self.status is None:
                self.status = ScheduleStatus(spec=spec)
            self.status.spec = spec
            self._log.info("backup_schedule_changed", change=change, every=format_duration(spec.schedule),
                           directory=spec.directory, retention=spec.retention)
        self._changed.set()  # the task recomputes its timer
        return change

    def status_fields(self) -> dict[str, Any]:
        return {"backup": self.status.as_dict()} if self.status is not None else {}

    async def run(self) -> None:
        while True:
            self._changed.clear()
            spec = self.spec
            if spec is None:
                await self._changed.wait()
                continue
            assert self.status is not None
            delay = max(0.0, self._anchor + spec.schedule.total_seconds() - self._clock())
            self.status.next_at = _iso(datetime.now(timezone.utc) + timedelta(seconds=delay))
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=delay)
                continue  # the spec changed: recompute the timer
            except TimeoutError:
                pass
            await self._backup(spec)
            self._anchor = self._clock()

    async def _backup(self, spec: BackupSpec) -> None:
        status = self.status
        assert status is not None
        started = time.monotonic()
        at = _iso(datetime.now(timezone.utc))
        status.next_at = None
        try:
            result, pruned = await asyncio.to_thread(take_and_prune, self._take, spec)
        except KagentError as err:
            status.failed += 1
            status.last = {"ok": False, "at": at, "error": err.render().replace("\n", " ")}
            self._log.error("backup_failed", directory=spec.directory, reason=err.render())
            return
        except OSError as err:
            status.failed += 1
            status.last = {"ok": False, "at": at, "error": f"{err.filename or spec.directory}: {err.strerror or err}"}
            self._log.error("backup_failed", directory=spec.directory, reason=str(err))
            return
        except Exception as err:  # noqa: BLE001 - a bug: counted and logged like any failure; the timer goes on
            status.failed += 1
            status.last = {"ok": False, "at": at, "error": f"internal error: {type(err).__name__}: {err}"}
            self._log.exception("backup_failed", directory=spec.directory, reason=f"internal error: {err!r}")
            return
        status.taken += 1
        status.last = {"ok": True, "at": at, "path": str(result.path), "size": result.size}
        self._log.info("backup_taken", path=str(result.path), size=result.size, seconds=round(time.monotonic() - started, 3),
                       pruned=[str(p) for p in pruned])
