"""TEST DOUBLE of the Kubernetes binaries kagent supervises (kube-apiserver,
kube-controller-manager, kube-scheduler, konnectivity-server, kubelet, kine).

Not part of kagent: it lives under tests/ and is installed into a temporary ``<data>/bin`` by
``tests.doubles.install``. Each installed file is a tiny wrapper that calls
``main(<component>, argv)``.

What the double does, per component:
1. Parses its argv (``--flag=value`` or ``--flag value``) and checks it against that
   component's contract: required flags are present, every flag that names a file points to one
   that exists and parses (PEM certificates and keys load with ``cryptography``, kubeconfigs are
   YAML whose embedded CA/client data loads, the egress selector and kubelet config files parse).
   On a violation it prints ``k8s-double[<component>]: argv violation: ...`` and exits 2.
2. Otherwise it serves what the supervisor probes:
   - kube-apiserver: ``/readyz`` ``/livez`` ``/healthz`` over TLS on ``--secure-port`` with
     ``--tls-cert-file``/``--tls-private-key-file``, client certificates required and verified
     against ``--client-ca-file``; ``/readyz`` is 200 only while its storage answers (etcd
     ``/health`` over mTLS with the ``--etcd-*`` files, or the kine unix socket);
   - kube-controller-manager / kube-scheduler: ``/healthz`` over TLS (a self-signed cert) on
     ``--secure-port`` (default 10257 / 10259) at ``--bind-address``;
   - konnectivity-server: ``http://<health-bind-address>:<health-port>/healthz`` and a listener on
     ``--uds-name``;
   - kubelet: ``http://127.0.0.1:<healthzPort>/healthz`` (from its config, default 10248), after
     checking the container runtime socket it is given answers;
   - kine: a listener on ``--listen-address`` (``unix://PATH`` or ``[tcp://]HOST:PORT``).
3. Exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import base64
import http.server
import ipaddress
import os
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

DOUBLE_NAMES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server", "kubelet", "kine")


class Violation(Exception):
    pass


def say(component: str, msg: str) -> None:
    print(f"k8s-double[{component}]: {msg}", flush=True)


# ---- argv -------------------------------------------------------------------------------


def parse_argv(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise Violation(f"{tok!r} is not a --flag")
        name, sep, value = tok[2:].partition("=")
        if not sep:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        flags[name] = value  # last one wins, as with Go's flag package
        i += 1
    return flags


# ---- file checks --------------------------------------------------------------------------


def _read(flag: str, path: str) -> bytes:
    p = Path(path)
    if not p.is_absolute():
        raise Violation(f"--{flag}={path}: not an absolute path")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise Violation(f"--{flag}={path}: file does not exist") from None
    except OSError as err:
        raise Violation(f"--{flag}={path}: cannot read: {err.strerror}") from None


def check_cert_pem(where: str, data: bytes) -> None:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise Violation(f"{where}: not a PEM certificate ({err})") from None
    if not certs:
        raise Violation(f"{where}: no certificate in it")


def check_key_pem(where: str, data: bytes) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise Violation(f"{where}: not a PEM private key ({err})") from None


def check_public_key_pem(where: str, data: bytes) -> None:
    """A service-account key file: a public key, or a private key (both are accepted upstream)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(data)
        return
    except ValueError:
        pass
    check_key_pem(where, data)


def cert_file(flags: dict[str, str], flag: str) -> None:
    check_cert_pem(f"--{flag}={flags[flag]}", _read(flag, flags[flag]))


def key_file(flags: dict[str, str], flag: str) -> None:
    check_key_pem(f"--{flag}={flags[flag]}", _read(flag, flags[flag]))


def _yaml(flag: str, path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(_read(flag, path))
    except yaml.YAMLError as err:
        raise Violation(f"--{flag}={path}: not YAML ({str(err).splitlines()[0]})") from None


def _b64(where: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise Violation(f"{where}: missing")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise Violation(f"{where}: not base64") from None


def kubeconfig_file(flags: dict[str, str], flag: str) -> dict[str, Any]:
    """A kubeconfig with one current context whose cluster has a server URL and a CA, and whose
    user authenticates with a client cert+key or a token (data embedded or in files)."""
    path = flags[flag]
    doc = _yaml(flag, path)
    where = f"--{flag}={path}"
    if not isinstance(doc, dict) or doc.get("kind", "Config") != "Config":
        raise Violation(f"{where}: not a kubeconfig (kind Config)")
    try:
        contexts = {c["name"]: c["context"] for c in doc["contexts"]}
        clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
        users = {u["name"]: u["user"] for u in doc["users"]}
        current = contexts[doc["current-context"]]
        cluster = clusters[current["cluster"]]
        user = users[current["user"]]
    except (KeyError, TypeError) as err:
        raise Violation(f"{where}: incomplete kubeconfig (missing {err})") from None
    server = cluster.get("server", "")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise Violation(f"{where}: cluster server {server!r} is not an https URL")
    if "certificate-authority-data" in cluster:
        check_cert_pem(f"{where}: certificate-authority-data", _b64(f"{where}: certificate-authority-data", cluster["certificate-authority-data"]))
    elif "certificate-authority" in cluster:
        check_cert_pem(f"{where}: certificate-authority", _read(flag, cluster["certificate-authority"]))
    else:
        raise Violation(f"{where}: cluster has no certificate authority")
    if "token" in user:
        if not user["token"]:
            raise Violation(f"{where}: empty token")
    elif "client-certificate-data" in user:
        check_cert_pem(f"{where}: client-certificate-data", _b64(f"{where}: client-certificate-data", user["client-certificate-data"]))
        check_key_pem(f"{where}: client-key-data", _b64(f"{where}: client-key-data", user.get("client-key-data")))
    elif "client-certificate" in user:
        check_cert_pem(f"{where}: client-certificate", _read(flag, user["client-certificate"]))
        check_key_pem(f"{where}: client-key", _read(flag, user.get("client-key", "")))
    else:
        raise Violation(f"{where}: user has neither a client certificate nor a token")
    return doc


def egress_selector_file(flags: dict[str, str], flag: str) -> None:
    doc = _yaml(flag, flags[flag])
    where = f"--{flag}={flags[flag]}"
    if not isinstance(doc, dict) or doc.get("kind") != "EgressSelectorConfiguration":
        raise Violation(f"{where}: kind is not EgressSelectorConfiguration")
    for sel in doc.get("egressSelections") or []:
        uds = (((sel.get("connection") or {}).get("transport") or {}).get("uds") or {}).get("udsName")
        if sel.get("name") == "cluster" and isinstance(uds, str) and uds.startswith("/"):
            if not Path(uds).parent.is_dir():
                raise Violation(f"{where}: the dir of udsName {uds} does not exist")
            return
    raise Violation(f"{where}: no 'cluster' selection with a uds transport")


def kubelet_config_file(flags: dict[str, str], flag: str) -> dict[str, Any]:
    doc = _yaml(flag, flags[flag])
    where = f"--{flag}={flags[flag]}"
    if not isinstance(doc, dict) or doc.get("kind") != "KubeletConfiguration":
        raise Violation(f"{where}: kind is not KubeletConfiguration")
    if doc.get("apiVersion") != "kubelet.config.k8s.io/v1beta1":
        raise Violation(f"{where}: apiVersion {doc.get('apiVersion')!r} is not kubelet.config.k8s.io/v1beta1")
    ca = (((doc.get("authentication") or {}).get("x509") or {}).get("clientCAFile"))
    if ca:
        check_cert_pem(f"{where}: authentication.x509.clientCAFile={ca}", _read(f"{flag} clientCAFile", ca))
    port = doc.get("healthzPort", 10248)
    if not isinstance(port, int):
        raise Violation(f"{where}: healthzPort {port!r} is not a port")
    return doc


def require(flags: dict[str, str], *names: str) -> None:
    missing = [n for n in names if not flags.get(n)]
    if missing:
        raise Violation("required flag(s) missing: " + ", ".join(f"--{n}" for n in missing))


def if_set(flags: dict[str, str], check: Callable[[dict[str, str], str], Any], *names: str) -> None:
    for n in names:
        if flags.get(n):
            check(flags, n)


def port_flag(flags: dict[str, str], name: str, default: int) -> int:
    raw = flags.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise Violation(f"--{name}={raw}: not a port number") from None
    if not 0 < port < 65536:
        raise Violation(f"--{name}={raw}: not a port (1-65535)")
    return port


# ---- servers ------------------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        print(f"k8s-double: request from {client_address} failed: {type(err).__name__}: {err}", flush=True)


def _bind_host(host: str) -> tuple[int, str]:
    """(address family, host) for a bind address; localhost binds IPv4 loopback (as Go does)."""
    if host in ("", "localhost"):
        return socket.AF_INET, "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return socket.AF_INET, host
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), host


def http_server(component: str, host: str, port: int, routes: dict[str, Callable[[], tuple[int, str]]],
                tls: ssl.SSLContext | None = None) -> _Server:
    family, bind = _bind_host(host)

    class Handler(http.server.BaseHTTPRequestHandler):
        def setup(self) -> None:
            # the TLS handshake runs here, in the request's thread, so a slow or bad client
            # cannot block the accept loop
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(5)
                self.request.do_handshake()
            super().setup()

        def do_GET(self) -> None:  # noqa: N802
            route = routes.get(self.path.split("?", 1)[0])
            code, body = route() if route else (404, "not found")
            data = (body + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server_cls = type("S", (_Server,), {"address_family": family})
    try:
        server = server_cls((bind, port), Handler)
    except OSError as err:
        raise Violation(f"cannot listen on {bind}:{port}: {err.strerror}") from None
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(component, f"serving {'https' if tls else 'http'}://{bind}:{port} {sorted(routes)}")
    return server


def _accept_and_close(s: socket.socket) -> None:
    """Answer every connection (a listener the probes can connect to), until closed."""

    def accept() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()


def unix_listener(component: str, path: Path) -> socket.socket:
    if not path.parent.is_dir():
        raise Violation(f"socket dir {path.parent} does not exist")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
    except OSError as err:
        s.close()
        raise Violation(f"cannot listen on unix:{path}: {err}") from None
    s.listen(64)

    _accept_and_close(s)
    say(component, f"listening on unix:{path}")
    return s


def tcp_listener(component: str, host: str, port: int) -> socket.socket:
    family, bind = _bind_host(host or "0.0.0.0")
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((bind, port))
    except OSError as err:
        raise Violation(f"cannot listen on {bind}:{port}: {err.strerror}") from None
    s.listen(64)

    _accept_and_close(s)
    say(component, f"listening on tcp {bind}:{port}")
    return s


def self_signed_context(tmp: Path) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate for 127.0.0.1/localhost."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s-double-self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, kf = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, kf)
    return ctx


def unix_answers(path: str, timeout: float = 1.0) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _ok() -> tuple[int, str]:
    return 200, "ok"


# ---- components ---------------------------------------------------------------------------


def storage_probe(flags: dict[str, str]) -> Callable[[], bool]:
    """Does the apiserver's storage answer? etcd: GET /health over mTLS; kine: socket connect."""
    server = flags["etcd-servers"].split(",")[0]
    if server.startswith("unix:"):
        path = server[len("unix:"):]
        path = path[2:] if path.startswith("//") else path
        return lambda: unix_answers(path)
    import urllib.request

    ctx = ssl.create_default_context(cafile=flags.get("etcd-cafile"))
    if flags.get("etcd-certfile"):
        ctx.load_cert_chain(flags["etcd-certfile"], flags.get("etcd-keyfile"))

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"{server}/health", context=ctx, timeout=2) as r:
                return r.status == 200
        except (OSError, ssl.SSLError):
            return False

    return probe


def run_apiserver(name: str, flags: dict[str, str], tmp: Path) -> list[Any]:
    require(flags, "secure-port", "tls-cert-file", "tls-private-key-file", "client-ca-file", "etcd-servers",
            "service-account-issuer", "service-account-key-file", "service-account-signing-key-file",
            "service-cluster-ip-range")
    if_set(flags, cert_file, "tls-cert-file", "client-ca-file", "kubelet-client-certificate", "kubelet-certificate-authority",
           "proxy-client-cert-file", "requestheader-client-ca-file", "etcd-cafile", "etcd-certfile")
    if_set(flags, key_file, "tls-private-key-file", "kubelet-client-key", "proxy-client-key-file", "etcd-keyfile",
           "service-account-signing-key-file")
    sa = flags["service-account-key-file"]
    check_public_key_pem(f"--service-account-key-file={sa}", _read("service-account-key-file", sa))
    if_set(flags, egress_selector_file, "egress-selector-config-file")
    server = flags["etcd-servers"].split(",")[0]
    if server.startswith("https://"):
        require(flags, "etcd-cafile", "etcd-certfile", "etcd-keyfile")
    elif not server.startswith("unix:"):
        raise Violation(f"--etcd-servers={server}: neither https:// nor unix:")
    for pair in (("proxy-client-cert-file", "proxy-client-key-file"), ("kubelet-client-certificate", "kubelet-client-key")):
        if bool(flags.get(pair[0])) != bool(flags.get(pair[1])):
            raise Violation(f"--{pair[0]} and --{pair[1]} go together")
    port = port_flag(flags, "secure-port", 6443)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        tls.load_cert_chain(flags["tls-cert-file"], flags["tls-private-key-file"])
    except ssl.SSLError as err:
        raise Violation(f"--tls-cert-file and --tls-private-key-file do not match ({err.reason})") from None
    tls.load_verify_locations(flags["client-ca-file"])
    tls.verify_mode = ssl.CERT_REQUIRED
    storage_ok = storage_probe(flags)

    def readyz() -> tuple[int, str]:
        return (200, "ok") if storage_ok() else (500, "[-]etcd failed: storage not reachable")

    bind = flags.get("bind-address", "0.0.0.0")
    return [http_server(name, bind, port, {"/readyz": readyz, "/livez": _ok, "/healthz": _ok}, tls)]


def run_kcm_or_scheduler(name: str, flags: dict[str, str], tmp: Path) -> list[Any]:
    require(flags, "kubeconfig")
    if_set(flags, kubeconfig_file, "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")
    if name == "kube-controller-manager":
        if_set(flags, cert_file, "client-ca-file", "cluster-signing-cert-file", "root-ca-file", "requestheader-client-ca-file")
        if_set(flags, key_file, "cluster-signing-key-file", "service-account-private-key-file")
        if flags.get("use-service-account-credentials") == "true":
            require(flags, "service-account-private-key-file")
    if flags.get("leader-elect") not in (None, "true", "false"):
        raise Violation(f"--leader-elect={flags['leader-elect']}: not a boolean")
    port = port_flag(flags, "secure-port", 10257 if name == "kube-controller-manager" else 10259)
    if flags.get("tls-cert-file"):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(flags["tls-cert-file"], flags.get("tls-private-key-file"))
    else:
        tls = self_signed_context(tmp)
    return [http_server(name, flags.get("bind-address", "0.0.0.0"), port, {"/healthz": _ok}, tls)]


def run_konnectivity(name: str, flags: dict[str, str], tmp: Path) -> list[Any]:
    require(flags, "uds-name", "cluster-cert", "cluster-key", "kubeconfig")
    cert_file(flags, "cluster-cert")
    key_file(flags, "cluster-key")
    kubeconfig_file(flags, "kubeconfig")
    if flags.get("mode", "grpc") not in ("grpc", "http-connect"):
        raise Violation(f"--mode={flags['mode']}: not grpc or http-connect")
    port_flag(flags, "agent-port", 8091)
    port_flag(flags, "admin-port", 8095)
    uds = Path(flags["uds-name"])
    listener = unix_listener(name, uds)
    health = http_server(name, flags.get("health-bind-address", ""), port_flag(flags, "health-port", 8092), {"/healthz": _ok})
    return [listener, health]


def run_kubelet(name: str, flags: dict[str, str], tmp: Path) -> list[Any]:
    require(flags, "config", "kubeconfig")
    config = kubelet_config_file(flags, "config")
    kubeconfig_file(flags, "kubeconfig")
    endpoint = config.get("containerRuntimeEndpoint") or flags.get("container-runtime-endpoint") or ""
    if not endpoint and flags.get("containerd"):
        endpoint = "unix://" + flags["containerd"]
    if not endpoint.startswith("unix://"):
        raise Violation(f"container runtime endpoint {endpoint!r} is not unix://PATH")
    sock = endpoint[len("unix://"):]
    # the real kubelet retries for ever; the double gives up (exit 2) after this many seconds
    deadline = time.monotonic() + float(os.environ.get("K8S_DOUBLE_RUNTIME_WAIT", "10"))
    while not unix_answers(sock):
        if time.monotonic() > deadline:
            raise Violation(f"container runtime socket {sock} does not answer")
        time.sleep(0.2)
    say(name, f"container runtime socket {sock} answers")

    def healthz() -> tuple[int, str]:
        return (200, "ok") if unix_answers(sock) else (500, f"container runtime {sock} down")

    port = config.get("healthzPort", 10248)
    return [http_server(name, config.get("healthzBindAddress", "127.0.0.1"), port, {"/healthz": healthz})]


def run_kine(name: str, flags: dict[str, str], tmp: Path) -> list[Any]:
    require(flags, "endpoint", "listen-address")
    endpoint = flags["endpoint"]
    if endpoint.startswith("sqlite://"):
        db = endpoint[len("sqlite://"):].split("?", 1)[0]
        db = db[len("file:"):] if db.startswith("file:") else db
        if not Path(db).parent.is_dir():
            raise Violation(f"--endpoint={endpoint}: the database dir {Path(db).parent} does not exist")
    elif "://" not in endpoint:
        raise Violation(f"--endpoint={endpoint}: not a datasource URL")
    listen = flags["listen-address"]
    if listen.startswith("unix://"):
        return [unix_listener(name, Path(listen[len("unix://"):]))]
    hostport = listen[len("tcp://"):] if listen.startswith("tcp://") else listen
    host, _, port = hostport.rpartition(":")
    try:
        return [tcp_listener(name, host, int(port))]
    except ValueError:
        raise Violation(f"--listen-address={listen}: not unix://PATH or HOST:PORT") from None


RUNNERS: dict[str, Callable[[str, dict[str, str], Path], list[Any]]] = {
    "kube-apiserver": run_apiserver,
    "kube-controller-manager": run_kcm_or_scheduler,
    "kube-scheduler": run_kcm_or_scheduler,
    "konnectivity-server": run_konnectivity,
    "kubelet": run_kubelet,
    "kine": run_kine,
}


def main(component: str, argv: list[str]) -> int:
    if component not in RUNNERS:
        say(component, f"unknown component; the double plays {', '.join(DOUBLE_NAMES)}")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    say(component, f"TEST DOUBLE starting (pid {os.getpid()}), {len(argv)} args")
    with tempfile.TemporaryDirectory(prefix="k8s-double-") as tmp:
        try:
            flags = parse_argv(argv)
            servers = RUNNERS[component](component, flags, Path(tmp))
        except Violation as err:
            say(component, f"argv violation: {err}")
            return 2
        say(component, "ready")
        while not stop.wait(0.5):
            pass
        for s in servers:
            if isinstance(s, http.server.HTTPServer):
                s.shutdown()
                s.server_close()
            else:
                s.close()
    say(component, "TEST DOUBLE stopping on signal, exit 0")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]))
