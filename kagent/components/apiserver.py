"""Pure. kube-apiserver with etcd (mTLS, the apiserver-etcd-client cert) or kine (unix
socket); with konnectivity it gets the egress selector file (reference/k0s.md §2.3).
Unlike k0s the argv is sorted, so the spec hash is stable."""

from __future__ import annotations


from kagent.components import etcd as etcd_component
from kagent.components import kine as kine_component
from kagent.components.common import CIPHER_SUITES, assemble, flag_value, port_of
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, FileSpec, HttpCheck
from kagent.config.model import StorageType
from kagent.modes import MODE_CONFIG

NAME = "kube-apiserver"
ROLES = (Role.CONTROLLER,)
STOP_TIMEOUT = 20.0  # k0s: max(request-timeout 1m, 0) + 2s clamped to [5s, 20s]
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
KONNECTIVITY_AUDIENCE = "system:konnectivity-server"


def enabled(ctx: Context) -> bool:
    return ctx.role in ROLES and not ctx.is_disabled(NAME)


def egress_selector_yaml(ctx: Context) -> bytes:
    doc = {
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [{
            "name": "cluster",
            "connection": {"proxyProtocol": "GRPC", "transport": {"uds": {"udsName": str(ctx.paths.konnectivity_sock)}}},
        }],
    }
    import yaml

    return yaml.safe_dump(doc, sort_keys=False).encode()


def storage_args(ctx: Context) -> dict[str, str]:
    p = ctx.paths
    if ctx.storage == StorageType.KINE:
        return {"etcd-servers": f"unix:{p.kine_sock}"}
    return {
        "etcd-servers": etcd_component.client_url(ctx),
        "etcd-cafile": str(p.etcd_pki("ca.crt")),
        "etcd-certfile": str(p.pki("apiserver-etcd-client.crt")),
        "etcd-keyfile": str(p.pki("apiserver-etcd-client.key")),
    }


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    api = ctx.config.api
    konn = ctx.konnectivity
    audiences = [SERVICE_ACCOUNT_ISSUER] + ([KONNECTIVITY_AUDIENCE] if konn else [])
    defaults = {
        "advertise-address": api.address,
        "allow-privileged": "true",
        "anonymous-auth": "false",
        "api-audiences": ",".join(audiences),
        "authorization-mode": "Node,RBAC",
        "client-ca-file": str(p.pki("ca.crt")),
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "kubelet-certificate-authority": str(p.pki("ca.crt")),
        "kubelet-client-certificate": str(p.pki("apiserver-kubelet-client.crt")),
        "kubelet-client-key": str(p.pki("apiserver-kubelet-client.key")),
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "profiling": "false",
        "proxy-client-cert-file": str(p.pki("front-proxy-client.crt")),
        "proxy-client-key-file": str(p.pki("front-proxy-client.key")),
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": str(p.pki("front-proxy-ca.crt")),
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": str(api.port),
        "service-account-issuer": SERVICE_ACCOUNT_ISSUER,
        "service-account-jwks-uri": f"{SERVICE_ACCOUNT_ISSUER}/openid/v1/jwks",
        "service-account-key-file": str(p.pki("sa.pub")),
        "service-account-signing-key-file": str(p.pki("sa.key")),
        "service-cluster-ip-range": ctx.config.network.service_cidr,
        "shutdown-watch-termination-grace-period": f"{int(STOP_TIMEOUT) - 2}s",
        "tls-cert-file": str(p.pki("server.crt")),
        "tls-cipher-suites": ",".join(CIPHER_SUITES),
        "tls-min-version": "VersionTLS12",
        "tls-private-key-file": str(p.pki("server.key")),
        "v": "1",
        **storage_args(ctx),
    }
    files: tuple[FileSpec, ...] = ()
    if konn:
        defaults["egress-selector-config-file"] = str(p.egress_selector_conf)
        files = (FileSpec(path=p.egress_selector_conf, data=egress_selector_yaml(ctx), mode=MODE_CONFIG),)
    args, notes = assemble(defaults, extra=api.extra_args, extra_source="spec.api.extraArgs", raw=api.raw_args)
    port = port_of(flag_value(args, "secure-port", str(api.port)), api.port)
    reads = [p.pki(f) for f in ("ca.crt", "server.crt", "server.key", "apiserver-kubelet-client.crt",
                                "apiserver-kubelet-client.key", "front-proxy-ca.crt", "front-proxy-client.crt",
                                "front-proxy-client.key", "sa.key", "sa.pub")]
    if ctx.storage == StorageType.ETCD:
        reads += [p.etcd_pki("ca.crt"), p.pki("apiserver-etcd-client.crt"), p.pki("apiserver-etcd-client.key")]
    after: tuple[str, ...] = (etcd_component.NAME if ctx.storage == StorageType.ETCD else kine_component.NAME,)
    if konn:
        after += ("konnectivity-server",)
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        files=files,
        after=after,
        run_as=ctx.run_as(ctx.config.users.kube_apiserver_user),
        health=HttpCheck(
            url=f"https://localhost:{port}/readyz",
            ca_file=p.pki("ca.crt"),
            cert_file=p.pki("admin.crt"),
            key_file=p.pki("admin.key"),
        ),
        startup_timeout=120.0,
        stop_timeout=STOP_TIMEOUT,
        reads=tuple(reads),
        notes=notes,
    )
