"""Edge. The HTTPS plumbing of the controller API, on aiohttp: TLS 1.2+ with the server
certificate, client certificates verified when presented (``CERT_OPTIONAL``, against every CA
given) and handed to handlers, request bodies capped, slow clients cut off, JSON errors.

Why aiohttp: a well-kept asyncio HTTP/1.1 server with routing, a streaming body reader that
enforces ``client_max_size``, and a per-connection keep-alive timer we use as the
request-head deadline; the standard library has no asyncio HTTP server, and writing an HTTP
parser for untrusted input is exactly what this project should not do itself.

Limits against slow or hostile clients:
- TLS handshake: ``HANDSHAKE_TIMEOUT`` (asyncio's ``ssl_handshake_timeout``);
- request line and headers: ``HEAD_TIMEOUT`` from the connection (or from the end of the
  previous response) to a complete request head (aiohttp's keep-alive timer closes a
  connection whose next request has not arrived by then, however slowly it trickles in);
- body and handling: ``REQUEST_TIMEOUT`` per request (408 and the connection is closed);
- body size: ``MAX_BODY`` (64 KiB; a larger ``Content-Length`` is refused before reading).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web
from cryptography import x509

from kagent.components.common import CIPHER_SUITES

MAX_BODY = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0
HEAD_TIMEOUT = 10.0
REQUEST_TIMEOUT = 15.0  # k0s's control API: read/write timeout 15 s

# OpenSSL names of the six TLS 1.2 suites k0s allows (TLS 1.3 suites are always on)
_OPENSSL_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def server_ssl_context(cert: Path, key: Path, client_cas: Sequence[Path] = ()) -> ssl.SSLContext:
    """TLS 1.2+ with k0s's six TLS 1.2 suites; a client certificate is asked for and, when
    one is presented, must chain to one of ``client_cas`` (else the handshake fails)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(":".join(_OPENSSL_CIPHERS[c] for c in CIPHER_SUITES))
    ctx.load_cert_chain(str(cert), str(key))
    if client_cas:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        for ca in client_cas:
            ctx.load_verify_locations(cafile=str(ca))
    return ctx


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client certificate of this request's connection, already verified by the TLS
    handshake against the server's client CAs; None when the client sent none. Handlers still
    check which CA signed it (the cluster CA and the etcd CA are both trusted)."""
    transport = request.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_obj is None:
        return None
    der = ssl_obj.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der)


def json_error(status: int, error: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if hint:
        body["hint"] = hint
    return web.json_response(body, status=status)


class HttpError(Exception):
    """Raised by handlers: becomes a JSON ``{"error", "hint"}`` answer with ``status``."""

    def __init__(self, status: int, error: str, hint: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.hint = status, error, hint


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (bounded by ``MAX_BODY``); HttpError 400/413 otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(413, f"request body larger than {MAX_BODY // 1024} KiB") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "request body is not JSON") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "request body is not a JSON object")
    return doc


def _limits_middleware(log: Any, request_timeout: float) -> Any:
    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            resp = json_error(413, f"request body larger than {MAX_BODY // 1024} KiB")
            resp.force_close()
            return resp
        try:
            async with asyncio.timeout(request_timeout):
                return await handler(request)
        except TimeoutError:
            log.warning("api_request_timed_out", method=request.method, path=request.path, timeout_s=request_timeout)
            resp = json_error(408, f"request not completed within {request_timeout:g}s")
            resp.force_close()
            return resp
        except HttpError as err:
            return json_error(err.status, err.error, err.hint)
        except web.HTTPException as err:
            if err.status == 413:
                return json_error(413, f"request body larger than {MAX_BODY // 1024} KiB")
            return json_error(err.status, err.reason)
        except Exception as err:  # a bug or an unexpected backend failure: answer 500, keep serving
            log.error("api_request_failed", method=request.method, path=request.path, error=f"{type(err).__name__}: {err}")
            return json_error(500, "internal error", "see the control-api log on the controller")

    return limits


def make_app(log: Any, *, request_timeout: float = REQUEST_TIMEOUT) -> web.Application:
    """An application with the limits above; route modules add their routes to it."""
    return web.Application(client_max_size=MAX_BODY, middlewares=[_limits_middleware(log, request_timeout)])


class Server:
    """A running HTTPS server (``start``/``close``), bound to ``host:port``."""

    def __init__(self, app: web.Application, host: str, port: int, ssl_ctx: ssl.SSLContext, *,
                 head_timeout: float = HEAD_TIMEOUT) -> None:
        self.app, self.host, self.port, self.ssl_ctx = app, host, port, ssl_ctx
        self.head_timeout = head_timeout
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, keepalive_timeout=self.head_timeout)
        await self._runner.setup()
        assert self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._runner.server, self.host or None, self.port, ssl=self.ssl_ctx,
                                                ssl_handshake_timeout=min(HANDSHAKE_TIMEOUT, self.head_timeout), reuse_address=True,
                                                backlog=512)

    @property
    def bound_port(self) -> int:
        assert isinstance(self._server, asyncio.base_events.Server)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
