"""Scheduled backups in a running controller (``spec.backup``): one asyncio task, one timer.

Every ``schedule`` the task takes a backup in a worker thread (the event loop and the
components are never touched: a failure is logged and shown in ``kagent status``), then prunes
the scheduled archives beyond ``retention`` in ``directory``. The spec is read again before
each backup, so a reload's new retention or directory applies to the next one; a new
``schedule`` applies after the pending timer fires.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from kagent import log
from kagent.backup import BackupResult, list_backups, prune_plan
from kagent.config.load import format_duration
from kagent.config.model import BackupSpec
from kagent.errors import KagentError


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


def take_and_prune(take: Callable[[str], BackupResult], spec: BackupSpec) -> tuple[BackupResult, list[Path]]:
    """One scheduled backup into ``spec.directory``, then prune beyond ``spec.retention``."""
    Path(spec.directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    result = take(spec.directory)
    pruned = []
    for old in prune_plan(list_backups(Path(spec.directory)), spec.retention):
        old.unlink(missing_ok=True)
        pruned.append(old)
    return result, pruned


async def run_schedule(status: ScheduleStatus, take: Callable[[str], BackupResult],
                       current_spec: Callable[[], BackupSpec | None]) -> None:
    logger = log.get(component="backup")
    while True:
        delay = status.spec.schedule.total_seconds()
        status.next_at = _iso(datetime.now(timezone.utc) + timedelta(seconds=delay))
        await asyncio.sleep(delay)
        spec = current_spec()
        if spec is None:
            logger.info("backup_schedule_stopped", reason="spec.backup removed from the config")
            status.next_at = None
            return
        status.spec = spec
        started = time.monotonic()
        at = _iso(datetime.now(timezone.utc))
        try:
            result, pruned = await asyncio.to_thread(take_and_prune, take, spec)
        except KagentError as err:
            status.failed += 1
            status.last = {"ok": False, "at": at, "error": err.render().replace("\n", " ")}
            logger.error("backup_failed", directory=spec.directory, reason=err.render())
            continue
        except OSError as err:
            status.failed += 1
            status.last = {"ok": False, "at": at, "error": f"{err.filename or spec.directory}: {err.strerror or err}"}
            logger.error("backup_failed", directory=spec.directory, reason=str(err))
            continue
        status.taken += 1
        status.last = {"ok": True, "at": at, "path": str(result.path), "size": result.size}
        logger.info("backup_taken", path=str(result.path), size=result.size, seconds=round(time.monotonic() - started, 3),
                    pruned=[str(p) for p in pruned])
