"""``kagent bins list|fetch`` against a release mirror on loopback (stdlib http.server in a
thread, with HTTP Range) serving small fake release files in the official layout: a full
fetch, a download cut short and resumed, a wrong checksum (nothing lands, the old binary
stays), konnectivity-server refused, and airgap bundles (a folder, a tarball, hostile ones).
No test reaches the internet."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kagent import binfetch, versions
from tests.conftest import run_kagent

ARCH = binfetch.host_arch()
V = versions.KUBERNETES


def fake_binary(name: str, version: str = V, pad: int = 200_000) -> bytes:
    """A script that answers --version like the real one, padded to a size worth resuming."""
    return (f"#!/bin/sh\n# test double of {name}, not the real binary\necho 'Kubernetes v{version}'\nexit 0\n"
            + "#" * pad + "\n").encode()


@dataclass
class Mirror:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    cut: dict[str, int] = field(default_factory=dict)  # URL path -> bytes to send before dropping (once)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""

    def publish(self, name: str, body: bytes, *, version: str = V, checksum: str | None = None) -> None:
        base = f"/v{version}/bin/linux/{ARCH}/{name}"
        self.files[base] = body
        self.files[base + ".sha256"] = (checksum or hashlib.sha256(body).hexdigest()).encode() + b"\n"


@pytest.fixture
def mirror():
    m = Mirror()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            m.requests.append((self.path, rng))
            body = m.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if self.path in m.cut:
                self.wfile.write(chunk[:m.cut.pop(self.path)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    m.url = f"http://127.0.0.1:{server.server_port}/release"
    # the layout under /release: strip that prefix
    orig = Handler.do_GET

    def do_get(self: BaseHTTPRequestHandler) -> None:
        self.path = self.path.removeprefix("/release")
        orig(self)  # type: ignore[arg-type]

    Handler.do_GET = do_get  # type: ignore[method-assign]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield m
    finally:
        server.shutdown()
        server.server_close()


def fetch(data: Path, mirror: Mirror, *args: str, env: dict[str, str] | None = None):
    return run_kagent("--data-dir", str(data), "bins", "fetch", "--base-url", mirror.url, *args, env=env, timeout=60)


def test_fetch_all_four_then_list_shows_them(tmp_path: Path, mirror: Mirror) -> None:
    data = tmp_path / "data"
    bodies = {n: fake_binary(n) for n in binfetch.RELEASE_BINARIES}
    for n, b in bodies.items():
        mirror.publish(n, b)
    r = run_kagent("--data-dir", str(data), "bins", "fetch", env={"KAGENT_BINS_URL": mirror.url}, timeout=60)
    assert r.returncode == 0, r.stderr
    for n, b in bodies.items():
        f = data / "bin" / n
        assert f.read_bytes() == b
        assert oct(f.stat().st_mode & 0o777) == "0o750"
        assert f"fetched {n} {V}" in r.stdout  # not a TTY: one line per file
    assert "konnectivity-server has no official release" in r.stderr
    assert not list((data / "bin").glob(".*.part"))
    listed = {b["name"]: b for b in json.loads(run_kagent("--data-dir", str(data), "bins", "list", "-o", "json").stdout)}
    assert listed["kube-apiserver"] == {"name": "kube-apiserver", "path": str(data / "bin" / "kube-apiserver"),
                                        "source": "data-dir", "version": V, "target": V, "matches": True}
    text = run_kagent("--data-dir", str(data), "bins", "list").stdout
    assert "kube-scheduler" in text and "data-dir" in text
    # a second fetch finds everything in place and downloads no binary again
    mirror.requests.clear()
    r = fetch(data, mirror)
    assert r.returncode == 0 and r.stdout.count("already in place") == 4
    assert all(p.endswith(".sha256") for p, _ in mirror.requests)


def test_a_cut_download_resumes_with_a_range_request(tmp_path: Path, mirror: Mirror) -> None:
    data = tmp_path / "data"
    body = fake_binary("kubelet")
    mirror.publish("kubelet", body)
    path = f"/v{V}/bin/linux/{ARCH}/kubelet"
    mirror.cut[path] = 70_000
    r = fetch(data, mirror, "--components", "kubelet")
    assert r.returncode == 4, r.stderr
    assert "cut short" in r.stderr and "resumes" in r.stderr
    assert not (data / "bin" / "kubelet").exists()
    part = data / "bin" / ".kubelet.part"
    assert part.stat().st_size == 70_000
    r = fetch(data, mirror, "--components", "kubelet")
    assert r.returncode == 0, r.stderr
    assert (path, "bytes=70000-") in mirror.requests
    assert (data / "bin" / "kubelet").read_bytes() == body
    assert "(resumed)" in r.stdout and not part.exists()


def test_a_wrong_checksum_lands_nothing_and_keeps_the_old_binary(tmp_path: Path, mirror: Mirror) -> None:
    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    old = data / "bin" / "kube-scheduler"
    old.write_bytes(b"#!/bin/sh\necho old\n")
    old.chmod(0o750)
    mirror.publish("kube-apiserver", fake_binary("kube-apiserver"))
    mirror.publish("kube-scheduler", fake_binary("kube-scheduler"), checksum="0" * 64)
    r = fetch(data, mirror, "--components", "kube-apiserver,kube-scheduler")
    assert r.returncode == 4
    assert "error: checksum: mismatch for kube-scheduler" in r.stderr and "no binary was replaced" in r.stderr
    assert old.read_bytes() == b"#!/bin/sh\necho old\n"
    assert not (data / "bin" / "kube-apiserver").exists()  # verified, but nothing lands unless all do
    assert not (data / "bin" / ".kube-scheduler.part").exists()  # bad bytes are never resumed


def test_refusals_name_the_flag(tmp_path: Path, mirror: Mirror) -> None:
    data = tmp_path / "data"
    r = fetch(data, mirror, "--components", "konnectivity-server")
    assert r.returncode == 2 and "konnectivity-server has no official release binary" in r.stderr
    assert "--from" in r.stderr
    r = fetch(data, mirror, "--components", "etcd")
    assert r.returncode == 2 and "'etcd' is not a Kubernetes release binary" in r.stderr
    r = fetch(data, mirror, "--version", "latest")
    assert r.returncode == 2 and "--version" in r.stderr
    r = fetch(data, mirror, "--version", "1.99.0", "--components", "kubelet")  # not on the mirror
    assert r.returncode == 4 and "HTTP 404" in r.stderr
    r = run_kagent("--data-dir", str(data), "bins", "fetch", "--base-url", "file:///etc", timeout=30)
    assert r.returncode == 2 and "not an http(s) URL" in r.stderr
    assert not (data / "bin").exists() or not [p for p in (data / "bin").iterdir() if not p.name.startswith(".fetch")]


# ---- airgap bundles ----------------------------------------------------------------------

def _bundle_files() -> dict[str, bytes]:
    return {"konnectivity-server": fake_binary("konnectivity-server", pad=1000),
            "kube-apiserver": fake_binary("kube-apiserver", pad=1000)}


def _sums(files: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in files.items()).encode()


def _tarball(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size, info.mode = len(e[1]), 0o755
                tar.addfile(info, io.BytesIO(e[1]))
    return path


def bundle(data: Path, src: Path):
    return run_kagent("--data-dir", str(data), "bins", "fetch", "--from", str(src), timeout=60)


def test_bundle_from_a_folder_and_from_a_tarball(tmp_path: Path) -> None:
    files = _bundle_files()
    folder = tmp_path / "bundle"
    folder.mkdir()
    for n, b in files.items():
        (folder / n).write_bytes(b)
    (folder / "sha256sums.txt").write_bytes(_sums(files))
    r = bundle(tmp_path / "d1", folder)
    assert r.returncode == 0, r.stderr
    for n, b in files.items():
        assert (tmp_path / "d1" / "bin" / n).read_bytes() == b
        assert f"installed {n}" in r.stdout
    tgz = _tarball(tmp_path / "b.tar.gz", [("bundle/sha256sums.txt", _sums(files)),
                                          *((f"bundle/{n}", b) for n, b in files.items())])
    r = bundle(tmp_path / "d2", tgz)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d2" / "bin" / "konnectivity-server").read_bytes() == files["konnectivity-server"]
    assert oct((tmp_path / "d2" / "bin" / "konnectivity-server").stat().st_mode & 0o777) == "0o750"


def test_a_bundle_with_a_bad_checksum_installs_nothing(tmp_path: Path) -> None:
    files = _bundle_files()
    sums = _sums(files).replace(hashlib.sha256(files["kube-apiserver"]).hexdigest().encode(), b"f" * 64)
    tgz = _tarball(tmp_path / "b.tgz", [("sha256sums.txt", sums), *files.items()])
    r = bundle(tmp_path / "d", tgz)
    assert r.returncode == 4 and "mismatch for kube-apiserver" in r.stderr
    assert sorted(p.name for p in (tmp_path / "d" / "bin").iterdir()) == [".fetch.lock"]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("entries, message", [
    ([("../kube-apiserver", b"x")], "escapes the bundle"),
    ([("/etc/kube-apiserver", b"x")], "escapes the bundle"),
    ([_link("kube-apiserver", "/etc/shadow")], "not a regular file"),
    ([_link("kube-apiserver", "sha256sums.txt", tarfile.LNKTYPE)], "not a regular file"),
    ([("a/b/c/kube-apiserver", b"x")], "nested too deep"),
    ([("kube-apiserver", b"x")], "has no sha256sums.txt"),
    ([("sha256sums.txt", b"not a checksum list\n")], "is not '<sha256>  <name>'"),
    ([("sha256sums.txt", b"0" * 64 + b"  ../../etc/passwd\n")], "is not a plain file name"),
    ([("sha256sums.txt", b"0" * 64 + b"  kubelet\n")], "listed in sha256sums.txt but not in the tarball"),
])
def test_hostile_tarballs_are_refused_before_anything_is_written(tmp_path: Path, entries: list, message: str) -> None:
    tgz = _tarball(tmp_path / "evil.tgz", [*entries])
    r = bundle(tmp_path / "d", tgz)
    assert r.returncode == 4, r.stderr
    assert message in r.stderr
    assert not [p for p in (tmp_path / "d" / "bin").iterdir() if p.name != ".fetch.lock"]
    assert not Path(tmp_path / "kube-apiserver").exists()


def test_a_folder_bundle_refuses_links(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "kube-apiserver").symlink_to("/bin/sh")
    (folder / "sha256sums.txt").write_bytes(_sums({"kube-apiserver": Path("/bin/sh").read_bytes()}))
    r = bundle(tmp_path / "d", folder)
    assert r.returncode == 4 and "is not a regular file" in r.stderr


def test_same_release_ignores_distribution_suffixes() -> None:
    assert binfetch.same_release("1.34.2", "1.34.2") is True
    assert binfetch.same_release("v1.34.2", "1.34.2") is True
    assert binfetch.same_release("1.7.28~ds1", "1.7.28") is True
    assert binfetch.same_release("3.4.23", "3.5.21") is False
    assert binfetch.same_release(None, "1.34.2") is None
    assert binfetch.release_url("http://m/release/", "1.34.2", "amd64", "kubelet") == \
        "http://m/release/v1.34.2/bin/linux/amd64/kubelet"


def test_progress_bar_on_a_tty_and_lines_otherwise(capsys: pytest.CaptureFixture[str]) -> None:
    tty = binfetch.Reporter(tty=True)
    tty.progress("kubelet", 4 * 2**20)(2 * 2**20)
    tty.done("fetched kubelet")
    out = capsys.readouterr()
    assert "\rkubelet" in out.err and "[" + "#" * 15 + "-" * 15 + "]" in out.err and "2.0/4.0 MiB" in out.err
    assert out.out == "fetched kubelet\n"
    plain = binfetch.Reporter(tty=False)
    plain.progress("kubelet", 10)(5)
    plain.done("fetched kubelet")
    out = capsys.readouterr()
    assert out.err == "" and out.out == "fetched kubelet\n"
