"""Edge. Join tokens and joined nodes in the cluster's etcd, under ``/kagent/`` (so every
controller sees them):

    /kagent/tokens/<id>                 TokenRecord JSON (id, role, created, expires, SHA-256 of the secret)
    /kagent/token-uses/<id>/<what>      one key per successful use (a join), so concurrent joins
                                        never contend on one counter
    /kagent/nodes/<name>                NodeRecord JSON (name, cert fingerprint, time, token id)

The secret is never stored: only ``token.hash_secret(secret)``. Works on any client with the
small ``Kv`` interface below (``kagent.join.etcdclient.EtcdClient`` has it); calls are
synchronous (the API server runs them in a thread).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Protocol, Sequence

from kagent.errors import PreconditionError
from kagent.paths import Paths
from kagent.join.nodes import NodeRecord
from kagent.join.token import JoinToken, TokenRecord, TokenRole, credentials_from, new_record

PREFIX = "/kagent/"
TOKENS = PREFIX + "tokens/"
TOKEN_USES = PREFIX + "token-uses/"
NODES = PREFIX + "nodes/"


class KeyValueLike(Protocol):
    key: bytes
    value: bytes
    mod_revision: int


class Kv(Protocol):
    def get(self, key: str | bytes, *, timeout: float | None = None) -> Any: ...
    def range_prefix(self, prefix: str | bytes, *, limit: int = 0, keys_only: bool = False,
                     timeout: float | None = None) -> Sequence[Any]: ...
    def put(self, key: str | bytes, value: str | bytes, *, timeout: float | None = None) -> int: ...
    def delete(self, key: str | bytes, *, timeout: float | None = None) -> int: ...
    def delete_prefix(self, prefix: str | bytes, *, timeout: float | None = None) -> int: ...
    def create(self, key: str | bytes, value: str | bytes, *, timeout: float | None = None) -> bool: ...
    def create_with(self, key: str | bytes, value: str | bytes, also: Sequence[tuple[str | bytes, str | bytes]],
                    *, timeout: float | None = None) -> bool: ...
    def replace(self, key: str | bytes, value: str | bytes, mod_revision: int, *, timeout: float | None = None) -> bool: ...


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **kw: None


class JoinStore:
    """``logger``: where token/node changes are logged (the API's log); None for one-off CLI
    commands, which report on stdout instead."""

    def __init__(self, kv: Kv, logger: Any = None) -> None:
        self.kv = kv
        self.log = logger if logger is not None else _Quiet()

    # ---- tokens --------------------------------------------------------------------------
    def create_token(self, *, role: TokenRole, expiry: timedelta, now: datetime, server: str, ca_pem: bytes) -> JoinToken:
        """A new token: its record stored (hash only), the token (with the secret) returned once."""
        for _ in range(5):
            token_id, secret = credentials_from(secrets.token_bytes(64))
            rec = new_record(token_id, secret, role, now=now, expiry=expiry)
            if self.kv.create(TOKENS + token_id, rec.to_json()):
                self.log.info("token_created", token_id=token_id, role=str(role),
                              expires=rec.expires.isoformat() if rec.expires else "never")
                return JoinToken(server=server, ca_pem=ca_pem, role=role, token_id=token_id, secret=secret)
        raise PreconditionError("token create", "could not pick an unused token id")  # 36^6 ids: practically never

    def get_token(self, token_id: str) -> TokenRecord | None:
        kv = self.kv.get(TOKENS + token_id)
        if kv is None:
            return None
        try:
            return TokenRecord.from_json(kv.value)
        except (ValueError, KeyError, TypeError):
            self.log.warning("token_record_unreadable", token_id=token_id)
            return None

    def list_tokens(self) -> list[tuple[TokenRecord, int]]:
        out: list[tuple[TokenRecord, int]] = []
        uses: dict[str, int] = {}
        for kv in self.kv.range_prefix(TOKEN_USES, keys_only=True):
            tid = kv.key.decode(errors="replace")[len(TOKEN_USES):].split("/", 1)[0]
            uses[tid] = uses.get(tid, 0) + 1
        for kv in self.kv.range_prefix(TOKENS):
            try:
                rec = TokenRecord.from_json(kv.value)
            except (ValueError, KeyError, TypeError):
                continue
            out.append((rec, uses.get(rec.token_id, 0)))
        return out

    def invalidate(self, token_id: str) -> bool:
        deleted = self.kv.delete(TOKENS + token_id) > 0
        self.kv.delete_prefix(f"{TOKEN_USES}{token_id}/")
        if deleted:
            self.log.info("token_invalidated", token_id=token_id)
        return deleted

    def record_use(self, token_id: str, what: str, now: datetime) -> None:
        self.kv.put(*self._use(token_id, what, now))

    @staticmethod
    def _use(token_id: str, what: str, now: datetime) -> tuple[str, str]:
        return f"{TOKEN_USES}{token_id}/{what}", now.isoformat(timespec="seconds")

    # ---- nodes ---------------------------------------------------------------------------
    def get_node(self, name: str) -> tuple[NodeRecord, int] | None:
        """The record and its mod revision (for ``replace_node``), or None."""
        kv = self.kv.get(NODES + name)
        if kv is None:
            return None
        try:
            return NodeRecord.from_json(kv.value), int(kv.mod_revision)
        except (ValueError, KeyError, TypeError):
            self.log.warning("node_record_unreadable", node=name)
            return None

    def create_node(self, rec: NodeRecord, *, token_use: tuple[str, datetime] | None = None) -> bool:
        """Record a node unless its name is taken (one transaction, which also records the
        ``(token id, time)`` use when given)."""
        if token_use is None:
            return self.kv.create(NODES + rec.name, rec.to_json())
        return self.kv.create_with(NODES + rec.name, rec.to_json(), [self._use(token_use[0], rec.name, token_use[1])])

    def replace_node(self, rec: NodeRecord, mod_revision: int) -> bool:
        return self.kv.replace(NODES + rec.name, rec.to_json(), mod_revision)

    def list_nodes(self) -> list[NodeRecord]:
        out = []
        for kv in self.kv.range_prefix(NODES):
            try:
                out.append(NodeRecord.from_json(kv.value))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def remove_node(self, name: str) -> bool:
        removed = self.kv.delete(NODES + name) > 0
        if removed:
            self.log.info("node_removed", node=name)
        return removed


def local_store(paths: Paths, client_port: int) -> JoinStore:
    """The store of the controller running on this host, through its etcd on loopback with
    the apiserver-etcd-client cert. PreconditionError (exit 4) with a hint when there is no
    such etcd (no controller here, not started, or a kine controller)."""
    from kagent.join.etcdclient import EtcdError, EtcdUnavailable, local_client

    if not paths.etcd_pki("ca.crt").exists():
        raise PreconditionError(str(paths.data_dir), "holds no etcd PKI: this is not an etcd controller's data dir",
                                hint="run this on a controller (not a worker, not --single/kine), or pass its --data-dir")
    try:
        kv = local_client(paths, client_port, timeout=5.0)
        kv.get(PREFIX + "ping")
    except EtcdUnavailable as err:
        raise PreconditionError(err.where, "no etcd answers: is the controller running on this host?",
                                hint="start it (kagent controller), or run this on a running controller") from None
    except EtcdError:
        raise
    return JoinStore(kv)
