"""Health probes against real listeners."""

import asyncio
import http.server
import socket
import sys
import threading

from kagent.components.spec import CommandCheck, HttpCheck, TcpCheck, UnixSocketCheck
from kagent.supervisor.health import probe
from tests.conftest import free_port


def run(check):
    return asyncio.run(probe(check))


class _H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_http_check_reads_the_status_code():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        assert run(HttpCheck(url=f"http://127.0.0.1:{port}/healthz")).ok
        r = run(HttpCheck(url=f"http://127.0.0.1:{port}/readyz"))
        assert not r.ok and r.detail == "503"
    finally:
        srv.shutdown()
        srv.server_close()


def test_tcp_and_unix_checks(tmp_path):
    port = free_port()
    assert not run(TcpCheck(host="127.0.0.1", port=port)).ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert run(TcpCheck(host="127.0.0.1", port=port)).ok
    path = tmp_path / "s.sock"
    assert not run(UnixSocketCheck(path=path)).ok
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()
        assert run(UnixSocketCheck(path=path)).ok


def test_command_check_exit_code_and_timeout():
    assert run(CommandCheck(argv=("/bin/true",))).ok
    r = run(CommandCheck(argv=("/bin/false",)))
    assert not r.ok and r.detail == "exit 1"
    r = run(CommandCheck(argv=(sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.3))
    assert not r.ok and "timed out" in r.detail
    assert not run(CommandCheck(argv=("/nonexistent/probe",))).ok


def test_http_timeout_on_a_silent_server():
    # the server accepts and then never answers; it holds every accepted connection open until
    # the probe is done, so no kernel RST (a connection left in the backlog) can end it early
    held: list[socket.socket] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        def accept() -> None:
            try:
                while True:
                    held.append(s.accept()[0])
            except OSError:
                return  # the listener was closed

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        try:
            r = run(HttpCheck(url=f"http://127.0.0.1:{port}/", timeout=0.3))
        finally:
            s.shutdown(socket.SHUT_RDWR)
            for c in held:
                c.close()
    t.join(5)
    assert not r.ok and r.detail == "timed out after 0.3s"


def _pki(tmp_path):
    """A CA, a server cert for 127.0.0.1 and a client cert, written as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(cn, issuer=None, issuer_key=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
             .not_valid_after(now + datetime.timedelta(hours=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False)
        cert = b.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    ca, ca_key = make("test-ca", ca=True)
    out = {}
    for label, cn, san in (("server", "server", "127.0.0.1"), ("client", "probe", None)):
        cert, key = make(cn, ca.subject, ca_key, san=san)
        (tmp_path / f"{label}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{label}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out[label] = (tmp_path / f"{label}.crt", tmp_path / f"{label}.key")
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tmp_path / "ca.crt", out


def test_https_check_verifies_the_server_and_presents_a_client_cert(tmp_path):
    import ssl

    ca, certs = _pki(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, certs["server"]))
    ctx.load_verify_locations(str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED  # like etcd's client-cert-auth
    srv = http.server.HTTPServer(("127.0.0.1", 0), _H)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}/healthz"
    try:
        cert, key = certs["client"]
        assert run(HttpCheck(url=url, ca_file=ca, cert_file=cert, key_file=key)).ok
        assert not run(HttpCheck(url=url, ca_file=ca)).ok  # no client cert: the server refuses
        # ca_file=None: not verified (kube-scheduler and kube-controller-manager serve self-signed certs)
        assert run(HttpCheck(url=url, cert_file=cert, key_file=key)).ok
        # a CA that did not sign the server: refused
        other = tmp_path / "other"
        other.mkdir()
        other_ca, _ = _pki(other)
        r = run(HttpCheck(url=url, ca_file=other_ca, cert_file=cert, key_file=key))
        assert not r.ok and "certificate verify failed" in r.detail
    finally:
        srv.shutdown()
        srv.server_close()
