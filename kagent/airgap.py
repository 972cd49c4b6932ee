"""Edge. Airgap images: OCI/docker image tarballs in ``<data>/images/`` are imported into
containerd's ``k8s.io`` namespace when the worker starts and whenever a new tarball appears
(inotify, no polling). What was imported is recorded by content hash in the containerd root,
so a restart does not import the same bytes again and a changed file is imported anew. A
broken tarball is reported and skipped (and not retried until its bytes change).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kagent import fsutil, log

TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci", ".oci.tar")
NAMESPACE = "k8s.io"


def is_tarball(name: str) -> bool:
    return not name.startswith(".") and name.endswith(TARBALL_SUFFIXES)


@dataclass(frozen=True, slots=True)
class ImportResult:
    path: Path
    ok: bool
    detail: str


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageImporter:
    def __init__(self, *, images_dir: Path, ctr: Path, socket: Path, state_file: Path) -> None:
        self.images_dir = images_dir
        self.ctr = ctr
        self.socket = socket
        self.state_file = state_file
        self.log = log.get(component="airgap")
        self._lock = threading.Lock()

    def _load_state(self) -> dict[str, str]:
        try:
            data = json.loads(self.state_file.read_text())
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, str]) -> None:
        fsutil.write_atomic(self.state_file, json.dumps(state, indent=1, sort_keys=True) + "\n", mode=0o644)

    def import_file(self, path: Path) -> ImportResult:
        argv = [str(self.ctr), "--address", str(self.socket), "--namespace", NAMESPACE, "images", "import",
                "--all-platforms", str(path)]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return ImportResult(path, False, str(err))
        out = (r.stderr.strip() or r.stdout.strip()).splitlines()
        if r.returncode != 0:
            return ImportResult(path, False, out[-1] if out else f"ctr exited {r.returncode}")
        return ImportResult(path, True, r.stdout.strip())

    def sync(self) -> list[ImportResult]:
        """Import every tarball whose bytes were not imported (or tried) before."""
        results: list[ImportResult] = []
        with self._lock:
            if not self.images_dir.is_dir():
                return results
            state = self._load_state()
            for entry in sorted(self.images_dir.iterdir()):
                if not is_tarball(entry.name) or not entry.is_file() or entry.is_symlink():
                    continue
                try:
                    digest = _digest(entry)
                except OSError as err:
                    self.log.warning("image_import_failed", path=str(entry), reason=str(err))
                    continue
                key = entry.name
                if state.get(key) in (digest, f"failed:{digest}"):
                    continue
                res = self.import_file(entry)
                results.append(res)
                if res.ok:
                    state[key] = digest
                    self.log.info("image_imported", path=str(entry), output=res.detail)
                else:
                    state[key] = f"failed:{digest}"
                    self.log.error("image_import_failed", path=str(entry), reason=res.detail,
                                   hint="the tarball is skipped; replace it with a valid OCI or docker archive")
            self._save_state(state)
        return results


# ---- inotify, through libc (no polling) ----------------------------------------------
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class DirWatcher:
    """Calls ``on_change(name)`` from a daemon thread when a file in ``folder`` is closed after
    writing or moved in. ``close()`` stops it."""

    def __init__(self, folder: Path, on_change: Callable[[str], None]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        folder.mkdir(parents=True, exist_ok=True)
        wd = libc.inotify_add_watch(self._fd, str(folder).encode(), IN_CLOSE_WRITE | IN_MOVED_TO)
        if wd < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")
        self._rpipe, self._wpipe = os.pipe()
        self._on_change = on_change
        self._thread = threading.Thread(target=self._run, name="kagent-images-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        while True:
            ready, _, _ = select.select([self._fd, self._rpipe], [], [])
            if self._rpipe in ready:
                return
            buf = os.read(self._fd, 64 * 1024)
            off = 0
            names: list[str] = []
            while off + _EVENT.size <= len(buf):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(buf, off)
                raw = buf[off + _EVENT.size: off + _EVENT.size + length]
                off += _EVENT.size + length
                names.append(raw.rstrip(b"\0").decode(errors="replace"))
            for name in names:
                if is_tarball(name):
                    self._on_change(name)

    def close(self) -> None:
        os.write(self._wpipe, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._rpipe, self._wpipe):
            try:
                os.close(fd)
            except OSError:
                pass
