"""Edge. File work around a component's spec that the supervisor asks for: removing the dirs
a running spec superseded (``ComponentSpec.prune_siblings_of``: an old
``<run>/containerd-hosts/<hash>`` once containerd runs healthy on the new mirror set).

Never follows a symlink: an entry that is a link (or not a dir) is left alone, and the removal
of a dir does not descend through links inside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence


def prune_siblings(keep: Path) -> tuple[list[Path], list[str]]:
    """Remove every real dir next to ``keep`` (same parent) but ``keep`` itself. Returns
    (removed, errors); an error never raises."""
    removed: list[Path] = []
    errors: list[str] = []
    try:
        entries = list(os.scandir(keep.parent))
    except OSError as err:
        return removed, [f"{keep.parent}: {err.strerror or err}"]
    for entry in entries:
        path = Path(entry.path)
        if path == keep:
            continue
        try:
            if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                continue
            shutil.rmtree(path)
            removed.append(path)
        except OSError as err:
            errors.append(f"{path}: {err.strerror or err}")
    return removed, errors


def prune_superseded(dirs: Sequence[Path], log: Any) -> None:
    """``prune_siblings`` for each dir, logged (``stale_dirs_removed`` / ``stale_dirs_failed``)."""
    for keep in dirs:
        removed, errors = prune_siblings(keep)
        if removed:
            log.info("stale_dirs_removed", paths=[str(p) for p in removed], kept=str(keep))
        if errors:
            log.warning("stale_dirs_failed", reason="; ".join(errors), kept=str(keep))
