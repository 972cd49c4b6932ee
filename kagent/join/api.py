"""Edge. The controller API (DESIGN §7), run by the hidden ``kagent api`` as its own
supervised child (``control-api``): the app, bearer-token authentication, and the route
modules it mounts.

Mounting routes: a route module is listed in ``ROUTE_MODULES`` and has
``def routes(api: ApiContext) -> list[web.RouteDef]``. Its handlers call
``await api.authenticate(request, TokenRole.X)`` (bearer token: 401 for a bad, expired,
invalidated or wrong-role token) or ``api.client_cert(request)`` (mTLS: the verified client
certificate, or None; the handler checks which CA signed it), raise ``HttpError`` for
errors, and run blocking etcd calls through ``await api.call(fn, ...)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NoReturn, TypeVar

from aiohttp import web
from cryptography import x509

from kagent import log
from kagent.join.server import (
    HEAD_TIMEOUT,
    REQUEST_TIMEOUT,
    HttpError,
    Server,
    make_app,
    peer_certificate,
    server_ssl_context,
)
from kagent.join.store import JoinStore, Kv
from kagent.join.token import TokenRecord, TokenRole, hash_secret, secret_matches, split_value
from kagent.paths import Paths
from kagent.pki.issue import Signer

# one line per route module; each has routes(api) -> list[web.RouteDef]
ROUTE_MODULES: tuple[str, ...] = (
    "kagent.join.api_worker",
    "kagent.join.api_etcd",
    "kagent.join.worker_leave",
)

T = TypeVar("T")
ETCD_THREADS = 16
_DUMMY_HASH = hash_secret("0" * 16)  # compared against when the id is unknown: same work either way


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ApiContext:
    paths: Paths
    kv: Kv
    ca: Signer  # the cluster CA: signs kubelet client certs, verifies node certs
    apiserver_url: str  # what joined workers put in kubelet.conf
    cert_lifetime: timedelta  # of the kubelet client certs it signs
    now: Callable[[], datetime] = utcnow
    log: Any = field(default_factory=log.get)
    store: JoinStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = JoinStore(self.kv, self.log)

    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """A blocking (etcd) call, off the event loop."""
        return await asyncio.to_thread(fn, *args, **kw)

    async def authenticate(self, request: web.Request, role: TokenRole) -> TokenRecord:
        """The token record behind ``Authorization: Bearer <id>.<secret>``; HttpError 401 for
        anything else. The secret is compared as a SHA-256 in constant time and never logged."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        parts = split_value(value.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            return self._refuse(request, None, "no bearer token of the form <id>.<secret>")
        token_id, secret = parts
        rec = await self.call(self.store.get_token, token_id)
        matches = secret_matches(secret, rec.secret_sha256 if rec is not None else _DUMMY_HASH)
        if rec is None:
            return self._refuse(request, token_id, "unknown or invalidated token")
        if not matches:
            return self._refuse(request, token_id, "wrong secret")
        if rec.expired(self.now()):
            return self._refuse(request, token_id, "expired")
        if rec.role is not role:
            return self._refuse(request, token_id, f"a {rec.role} token, this needs a {role} token")
        return rec

    def _refuse(self, request: web.Request, token_id: str | None, reason: str) -> NoReturn:
        self.log.warning("api_auth_refused", path=request.path, token_id=token_id, reason=reason, peer=request.remote)
        raise HttpError(401, "unauthorized", "create a valid token with `kagent token create` on a controller")

    def client_cert(self, request: web.Request) -> x509.Certificate | None:
        return peer_certificate(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def build_app(api: ApiContext, modules: tuple[str, ...] = ROUTE_MODULES, *,
              request_timeout: float = REQUEST_TIMEOUT) -> web.Application:
    app = make_app(api.log, request_timeout=request_timeout)
    app.router.add_get("/healthz", _healthz)
    for name in modules:
        app.router.add_routes(importlib.import_module(name).routes(api))
    return app


async def serve_api(api: ApiContext, host: str, port: int, *, ready: Callable[[int], None] | None = None,
                    head_timeout: float = HEAD_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT) -> int:
    """Serve until SIGTERM/SIGINT (then close the listener and finish the requests in flight)."""
    ctx = server_ssl_context(api.paths.pki("control-api.crt"), api.paths.pki("control-api.key"),
                             (api.paths.pki("ca.crt"), api.paths.etcd_pki("ca.crt")))
    server = Server(build_app(api, request_timeout=request_timeout), host, port, ctx, head_timeout=head_timeout)
    loop = asyncio.get_running_loop()
    # etcd calls run in threads: enough of them that concurrent joins do not queue behind each other
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=ETCD_THREADS, thread_name_prefix="etcd"))
    await server.start()
    api.log.info("control_api_listening", address=host or "*", port=server.bound_port)
    if ready is not None:
        ready(server.bound_port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()
        api.log.info("control_api_stopped")
    return 0
