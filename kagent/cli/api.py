"""``kagent api`` (hidden): the controller API, run by the agent as its ``control-api`` child."""

from __future__ import annotations

import click

from kagent.cli.app import AppContext


@click.command(hidden=True)
@click.option("--bind-address", default="", help="Address to listen on (default: every address).")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="spec.api.controlApiPort.")
@click.option("--etcd-endpoint", required=True, metavar="URL", help="The local etcd client URL.")
@click.option("--apiserver-url", required=True, metavar="URL", help="The apiserver URL joined workers use.")
@click.option("--certificate-expiry", default="8760h", show_default=True, help="Lifetime of the kubelet certs it signs.")
@click.option("--head-timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="Seconds a client has to send a complete request head (after connecting or the last answer).")
@click.option("--request-timeout", type=click.FloatRange(0.1, 300), default=15.0, show_default=True,
              help="Seconds a client has to send the body and get its answer.")
@click.pass_obj
def api(app: AppContext, bind_address: str, port: int, etcd_endpoint: str, apiserver_url: str, certificate_expiry: str,
        head_timeout: float, request_timeout: float) -> int:
    """Serve the controller API (join tokens, worker join and renewal) over TLS."""
    import asyncio

    from kagent import log
    from kagent.config.load import parse_duration
    from kagent.join.api import ApiContext, serve_api
    from kagent.join.etcdclient import EtcdClient
    from kagent.pki.store import load_ca

    log.configure(fmt=app.log_format, verbose=app.verbose, debug=app.debug)
    paths = app.paths
    lifetime = parse_duration(certificate_expiry, "--certificate-expiry")
    kv = EtcdClient(etcd_endpoint, ca=paths.etcd_pki("ca.crt"), cert=paths.pki("apiserver-etcd-client.crt"),
                    key=paths.pki("apiserver-etcd-client.key"))
    ctx = ApiContext(paths=paths, kv=kv, ca=load_ca(paths), apiserver_url=apiserver_url, cert_lifetime=lifetime)
    try:
        return asyncio.run(serve_api(ctx, bind_address, port, head_timeout=head_timeout, request_timeout=request_timeout))
    finally:
        kv.close()
