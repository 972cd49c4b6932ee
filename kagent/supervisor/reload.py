"""Pure. The reload diff: ``diff`` compares the running specs with freshly built ones and
says, per component, what a reload must do; ``readers`` says who reads a rewritten file. None
touches a process, the disk or a clock. (The order of specs is in ``order.py``.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from kagent.components.spec import ComponentSpec, OnChange, spec_hash


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a spec loader may return instead of bare specs: the specs and the files the load
    itself rewrote (the PKI step of a reload: a SAN added, ``keyAlgorithm`` changed).
    ``commit``: puts the rewritten files in place (they are staged until then); the supervisor
    calls it once the reload is accepted, before any component is stopped or started. A
    rejected reload never calls it (the loader's ``on_reload_done`` hook drops what it staged)."""

    specs: Sequence[ComponentSpec]
    rewritten: Sequence[Path] = ()
    commit: Callable[[], None] | None = None


def readers(specs: Sequence[ComponentSpec], paths: Iterable[Path]) -> tuple[str, ...]:
    """The components whose ``reads`` contain one of ``paths``: the one source of truth for
    "who must restart when this file changes" (renewal and reload alike)."""
    wanted = {Path(p) for p in paths}
    return tuple(s.name for s in specs if wanted.intersection(s.reads))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    """Names per action. ``restart``: stop and start with the new spec; ``signal``: only files
    changed and the component reloads on a signal (same PID); ``update``: only non-process
    fields changed (health, timeouts), applied in place."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    signal: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    rewritten: tuple[Path, ...] = ()  # files the reload rewrote; their readers are in ``restart``

    @property
    def is_noop(self) -> bool:
        return not (self.added or self.removed or self.restart or self.signal)


def _process_hash(spec: ComponentSpec) -> str:
    """The hash of everything but the files' bytes: equal means a reload signal suffices."""
    return spec_hash(dataclasses.replace(spec, files=tuple(f._replace(data=b"") for f in spec.files)))


def diff(old: Sequence[ComponentSpec], new: Sequence[ComponentSpec], *,
         rewritten: Iterable[Path] = ()) -> ReloadPlan:
    """Per component, what a reload must do. A component that reads a file in ``rewritten``
    restarts even when its spec is unchanged: its process still holds the old bytes."""
    old_by = {s.name: s for s in old}
    new_names = {s.name for s in new}
    files = tuple(sorted({Path(p) for p in rewritten}))
    reread = set(readers(new, files))
    added, restart, signal, update, unchanged = [], [], [], [], []
    for s in new:
        prev = old_by.get(s.name)
        if prev is None:
            added.append(s.name)
        elif s.name in reread:
            restart.append(s.name)
        elif spec_hash(prev) != spec_hash(s):
            if s.on_change is OnChange.SIGNAL and _process_hash(prev) == _process_hash(s):
                signal.append(s.name)
            else:
                restart.append(s.name)
        elif prev != s:
            update.append(s.name)
        else:
            unchanged.append(s.name)
    removed = [s.name for s in old if s.name not in new_names]
    return ReloadPlan(added=tuple(added), removed=tuple(removed), restart=tuple(restart), signal=tuple(signal),
                      update=tuple(update), unchanged=tuple(unchanged), rewritten=files)
