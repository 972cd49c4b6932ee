"""The pure parts of backup: entry-name checks of an untrusted archive, archive names, which
scheduled archives retention prunes, and the spec.backup config section."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from kagent.backup import ArchiveError, Listed, archive_name, check_name, prune_plan
from kagent.config.load import load_config
from kagent.errors import ComponentError, ConfigError


@pytest.mark.parametrize("name", ["/etc/passwd", "pki/../../x", "../x", "pki//ca.key", "./pki", "etc/passwd", "pki\\x", "",
                                  "x" * 2000])
def test_hostile_names_are_refused(name):
    with pytest.raises(ArchiveError) as e:
        check_name(name)
    assert e.value.exit_code == 2 and e.value.where.startswith("archive entry")


@pytest.mark.parametrize("name", ["pki/ca.key", "pki/etcd/", "manifests/a.yaml", "images/x.tar", "etcd-snapshot.db",
                                  "kine-state.db", "manifest.json", "config/kagent.yaml"])
def test_layout_names_pass(name):
    assert check_name(name) == name.rstrip("/")


def test_archive_names_sort_by_time_and_retention_prunes_only_scheduled_ones():
    t = datetime(2026, 12, 1, 21, 5, 3, 123456, tzinfo=timezone.utc)
    assert archive_name(t) == "kagent_backup_20261201T210503.123Z.tar.gz"
    assert archive_name(t, scheduled=True).startswith("kagent_scheduled_")
    listed = [Listed(Path(f"/b/{i}"), 1, f"2026120{i}T000000.000Z", scheduled=i != 2) for i in range(1, 7)]
    assert prune_plan(listed, 3) == [Path("/b/1"), Path("/b/3")]
    assert prune_plan(listed, 10) == []


def test_spec_backup_is_strict():
    cfg = load_config('spec:\n  backup: {schedule: "6h", retention: 3, directory: /var/backups/kagent}\n', host_address="10.0.0.1")
    assert cfg.backup is not None and cfg.backup.schedule.total_seconds() == 21600 and cfg.backup.retention == 3
    assert load_config("spec: {}\n", host_address="10.0.0.1").backup is None
    for text, where in [("spec:\n  backup: {schedule: 6h}\n", "spec.backup.directory"),
                        ("spec:\n  backup: {schedule: 6h, directory: rel}\n", "spec.backup.directory"),
                        ("spec:\n  backup: {schedule: 6h, directory: /b, retention: 0}\n", "spec.backup.retention"),
                        ("spec:\n  backup: {schedule: soon, directory: /b}\n", "spec.backup.schedule"),
                        ("spec:\n  backup: {schedual: 6h, directory: /b}\n", "spec.backup.schedual")]:
        with pytest.raises(ConfigError) as e:
            load_config(text, host_address="10.0.0.1")
        assert e.value.path == where, text


# ---- the snapshot stream of etcd's gateway, checked as it is read ----------------------------

def _messages(db: bytes, *, chunk: int = 5, tail: bytes | None = None, extra: bool = False, lie: int = 0):
    """What etcd's Snapshot RPC sends through the gateway: blobs with the db bytes still to come
    after each, then the db's SHA-256 (``remaining_bytes`` 0 is omitted, as the gateway does)."""
    import base64
    import hashlib

    out = []
    for i in range(0, len(db), chunk):
        blob = db[i:i + chunk]
        remaining = len(db) - i - len(blob) + (lie if i == 0 else 0)
        res = {"blob": base64.b64encode(blob).decode()}
        if remaining:
            res["remaining_bytes"] = str(remaining)
        out.append({"result": res})
    out.append({"result": {"blob": base64.b64encode(hashlib.sha256(db).digest() if tail is None else tail).decode()}})
    if extra:
        out.append({"result": {"blob": "AA=="}})
    return iter(out)


def test_snapshot_stream_yields_the_db_and_its_hash_as_etcdctl_writes_them():
    import hashlib
    import io

    from kagent.backup import SnapshotStream

    db = bytes(range(256)) * 3
    s = SnapshotStream(_messages(db, chunk=100), "etcd x")
    assert s.size == len(db) + 32
    assert io.BufferedReader(s, 64).read() == db + hashlib.sha256(db).digest()


@pytest.mark.parametrize("case, what", [
    ("bad-hash", "trailing SHA-256 does not match"),
    ("short", "stream ended early"),
    ("extra", "more data after the trailing SHA-256"),
    ("lie", "byte counts disagree"),
    ("error", "etcdserver: too many requests"),
])
def test_snapshot_stream_refuses_a_stream_that_does_not_add_up(case, what):
    import io

    from kagent.backup import SnapshotStream
    from kagent.errors import ComponentError

    db = b"x" * 50
    msgs = {"bad-hash": lambda: _messages(db, tail=b"\0" * 32), "extra": lambda: _messages(db, extra=True),
            "lie": lambda: _messages(db, lie=7), "short": lambda: iter(list(_messages(db))[:4]),
            "error": lambda: iter([*list(_messages(db))[:2], {"error": {"message": "etcdserver: too many requests"}}])}[case]
    with pytest.raises(ComponentError) as e:
        io.BufferedReader(SnapshotStream(msgs(), "etcd x")).read()
    assert what in e.value.what and e.value.where == "etcd x"


def _answer(raw: bytes):
    import io

    from kagent.backup import _Gateway

    g = _Gateway.__new__(_Gateway)  # the parser alone, on bytes (no socket)
    g.rfile = io.BufferedReader(io.BytesIO(raw))
    code, body = g.response()
    return code, b"".join(body)


def test_gateway_reads_chunked_and_sized_answers_and_refuses_malformed_ones():
    from kagent.backup import _HttpError

    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n5;ext=1\r\nhello\r\n1\r\n\n\r\n0\r\nT: z\r\n\r\n"
    assert _answer(chunked) == (200, b"hello\n")
    assert _answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc") == (404, b"abc")
    for raw in [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",  # ends early
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a bad chunk size
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n\r\n0\r\n\r\n",  # a negative one
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",  # not bare hex
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",  # no CRLF after a chunk
                b"HTTP/1.1 200 OK\r\n\r\n",  # neither length nor chunked
                b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
                b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n" + b"x" * 70000]:  # an over-long line
        with pytest.raises(_HttpError):
            _answer(raw)


def test_json_lines_split_messages_across_chunks():
    from kagent.backup import _json_lines

    assert list(_json_lines(iter([b'{"a": 1}\n{"b"', b': 2}\n\n', b'{"c": 3}']))) == [{"a": 1}, {"b": 2}, {"c": 3}]


# ---- which tool restores etcd ----------------------------------------------------------------

def _fake(path: Path, version: str, probed: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {path.name} >> {probed}\necho '{path.name} Version: {version}'\n")
    path.chmod(0o755)


def test_restore_tool_uses_the_tool_next_to_etcd_without_asking_etcd(tmp_path, monkeypatch):
    from kagent.backup import restore_tool
    from kagent.paths import Paths

    probed = tmp_path / "probed"
    other = tmp_path / "other"
    _fake(other / "etcdctl", "3.4.23", probed)
    _fake(other / "etcdutl", "3.5.1", probed)
    monkeypatch.setenv("PATH", str(other))
    p = Paths.build(tmp_path / "data", tmp_path / "run")
    _fake(p.bin_dir / "etcd", "3.4.23", probed)
    _fake(p.bin_dir / "etcdctl", "3.4.23", probed)
    assert restore_tool(p) == p.bin_dir / "etcdctl" and not probed.exists()  # 3.4 pair: etcdctl, no probe
    _fake(p.bin_dir / "etcdutl", "3.5.9", probed)
    assert restore_tool(p) == p.bin_dir / "etcdutl" and not probed.exists()  # etcdutl beside etcd: 3.5 on
    (p.bin_dir / "etcdutl").unlink()
    (p.bin_dir / "etcdctl").unlink()
    assert restore_tool(p) == other / "etcdctl" and probed.read_text() == "etcd\n"  # alone, a 3.4: asked, etcdctl
    _fake(p.bin_dir / "etcd", "3.5.9", probed)
    assert restore_tool(p) == other / "etcdutl"  # alone, a 3.5: etcdutl from elsewhere


def test_a_config_that_sets_the_api_address_needs_no_host_address():
    def scan() -> str:
        raise AssertionError("the host's interfaces were scanned")

    assert load_config("spec:\n  api: {address: 10.1.2.3}\n", host_address=scan).api.address == "10.1.2.3"
    assert load_config("spec: {}\n", host_address=lambda: "10.9.9.9").api.address == "10.9.9.9"


# ---- the backup timer: one per controller, changed by a reload -------------------------------

def test_describe_change_names_what_a_reload_changes_for_backups():
    from datetime import timedelta

    from kagent.backup_schedule import describe_change
    from kagent.config.model import BackupSpec

    a = BackupSpec(schedule=timedelta(hours=6), directory="/b", retention=5)
    assert describe_change(a, a) is None and describe_change(None, None) is None
    assert describe_change(None, a) == "started: every 6h0m0s into /b, keep 5"
    assert describe_change(a, None) == "stopped"
    b = BackupSpec(schedule=timedelta(hours=1), directory="/c", retention=2)
    assert describe_change(a, b) == "rescheduled: every 6h0m0s -> 1h0m0s; directory /b -> /c; retention 5 -> 2"


def test_the_timer_starts_reschedules_and_stops_on_apply():
    """A fake clock and a take() that records: the timer fires when due, a new schedule counts
    from the last backup (one overdue is taken at once), a stopped timer takes none."""
    import asyncio
    from datetime import timedelta

    from kagent.backup import BackupResult
    from kagent.backup_schedule import BackupScheduler
    from kagent.config.model import BackupSpec

    async def main(tmp: Path) -> None:
        taken: list[str] = []

        def take(directory: str) -> BackupResult:
            taken.append(directory)
            return BackupResult(Path(directory) / f"kagent_scheduled_{len(taken)}.tar.gz", 1, {})

        loop = asyncio.get_running_loop()
        timer = BackupScheduler(None, take, clock=loop.time)
        task = asyncio.ensure_future(timer.run())
        await asyncio.sleep(0.05)
        assert taken == [] and timer.status_fields() == {}
        d = str(tmp)

        async def until(n: int) -> None:
            # the n-th take() has run (in its thread) and its result is back in the loop
            for _ in range(500):
                if len(taken) >= n and timer.status_fields().get("backup", {}).get("taken", 0) >= n:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{len(taken)} backups, expected {n}")

        assert timer.apply(BackupSpec(schedule=timedelta(seconds=0.5), directory=d, retention=3)).startswith("started")
        await asyncio.sleep(0.1)
        assert taken == []  # one schedule after enabling, not at once
        await until(1)
        assert taken == [d] and timer.status_fields()["backup"]["taken"] == 1
        # a longer schedule counts from the last backup
        assert timer.apply(BackupSpec(schedule=timedelta(seconds=3), directory=d, retention=3)).startswith("rescheduled")
        await asyncio.sleep(0.6)
        assert taken == [d]
        # a shorter one that is already overdue: at once
        timer.apply(BackupSpec(schedule=timedelta(seconds=0.2), directory=d, retention=3))
        await until(2)
        assert timer.apply(None) == "stopped" and timer.status_fields() == {}
        n = len(taken)
        await asyncio.sleep(0.5)
        assert len(taken) == n and not task.done()
        task.cancel()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))


# ---- who a failure during the snapshot is blamed on ------------------------------------------

class _Answers:
    """A gateway connection whose answers are given: (status, body chunks) per request."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def response(self):
        code, chunks = self.answers.pop(0)
        return code, iter(chunks)

    def close(self):
        pass


def _snapshot_body(db: bytes) -> list[bytes]:
    import json

    return [json.dumps(m).encode() + b"\n" for m in _messages(db, chunk=4)]


def test_a_full_disk_while_the_snapshot_streams_is_not_blamed_on_etcd():
    import errno
    import io

    from kagent.backup import PendingSnapshot, SnapshotStream

    status = (200, [b'{"header": {"cluster_id": "255"}, "version": "3.5.1"}'])

    def write_to_full_disk(s: SnapshotStream) -> None:
        io.BufferedReader(s).read(3)
        raise OSError(errno.ENOSPC, "No space left on device")

    pending = PendingSnapshot(_Answers(status, (200, _snapshot_body(b"x" * 20))), "etcd https://127.0.0.1:2379")
    with pytest.raises(OSError) as e:
        pending.take(write_to_full_disk)
    assert e.value.errno == errno.ENOSPC  # the archive's writer reports it, naming the archive's directory

    def cut(chunks):  # the connection drops in the middle of the stream
        yield from chunks[:2]
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    pending = PendingSnapshot(_Answers(status, (200, cut(_snapshot_body(b"x" * 20)))), "etcd https://127.0.0.1:2379")
    with pytest.raises(ComponentError) as ce:
        pending.take(lambda s: io.BufferedReader(s).read())
    assert ce.value.where == "etcd https://127.0.0.1:2379" and "Connection reset" in ce.value.what


def test_a_scheduled_backup_that_fails_with_a_bug_is_counted_and_the_timer_goes_on():
    """A take() failing with something that is neither a KagentError nor an OSError (a bug, a
    tarfile or sqlite3 error): the failure is in the status, the next one waits a schedule,
    and the timer task keeps running (a crashed task was restarted a second later, overdue,
    so a broken backup was retried every second)."""
    import asyncio
    from datetime import timedelta

    from kagent.backup_schedule import BackupScheduler
    from kagent.config.model import BackupSpec

    async def main(tmp: Path) -> None:
        tries: list[float] = []
        loop = asyncio.get_running_loop()

        def take(directory: str):
            tries.append(loop.time())
            raise RuntimeError("tar exploded")

        timer = BackupScheduler(BackupSpec(schedule=timedelta(seconds=0.3), directory=str(tmp), retention=1), take,
                                clock=loop.time)
        task = asyncio.ensure_future(timer.run())
        try:
            for _ in range(1000):
                if len(tries) >= 2 or task.done():
                    break
                await asyncio.sleep(0.01)
            assert not task.done(), task.exception() if task.done() else None
            await asyncio.sleep(0.05)  # the second failure recorded
            st = timer.status_fields()["backup"]
            assert len(tries) >= 2 and tries[1] - tries[0] >= 0.29  # the retry waited a schedule
            assert st["failed"] == len(tries) and st["taken"] == 0
            assert st["last"]["ok"] is False and "RuntimeError: tar exploded" in st["last"]["error"]
        finally:
            task.cancel()

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(main(Path(d)))


def test_a_restore_tool_that_cannot_run_is_a_precondition_naming_it(tmp_path):
    from kagent.backup import RestoreTarget, _start_etcd_restore
    from kagent.errors import PreconditionError
    from kagent.paths import Paths

    p = Paths.build(tmp_path / "data", tmp_path / "run")
    _fake(p.bin_dir / "etcd", "3.4.23", tmp_path / "probed")
    tool = p.bin_dir / "etcdctl"
    tool.write_text("#!/nonexistent/interpreter\n")  # executable, but exec fails
    tool.chmod(0o755)
    with pytest.raises(PreconditionError) as e:
        _start_etcd_restore(p, tmp_path / "snap.db", tmp_path / "etcd", "api", RestoreTarget("n", "https://127.0.0.1:2380"))
    assert e.value.where == str(tool) and "cannot run it" in e.value.what and "nothing was restored" in (e.value.hint or "")
