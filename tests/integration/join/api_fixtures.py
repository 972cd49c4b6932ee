"""Shared by the join tests (imported, not a conftest): a running etcd-only controller (real
etcd + the real control-api child) per module, and a small HTTPS client for its API that pins
the cluster CA."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import free_port, traversable_tmpdir
from tests.integration.conftest import KUBE_COMPONENTS, Node, _kill_marked_children, base_config


@dataclass
class Answer:
    status: int
    doc: Any


def api_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def api_call(port: int, method: str, path: str, body: Any = None, *, ca: Path, token: str | None = None,
             cert: Path | None = None, key: Path | None = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> Answer:
    conn = http.client.HTTPSConnection(host, port, context=api_context(ca, cert, key), timeout=30)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        text = resp.read()
    finally:
        conn.close()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text.decode(errors="replace")
    return Answer(resp.status, doc)


@pytest.fixture(scope="module")
def controller() -> Iterator[Node]:
    root = traversable_tmpdir("kj")  # etcd runs as the etcd user: it must get through
    n = Node(root=root, data=root / "d", run=root / "r", config=root / "kagent.yaml")
    n.ports = {"api": free_port(), "control": free_port(), "etcd_client": free_port(), "etcd_peer": free_port()}
    try:
        n.write_config(base_config(n))
        n.start("controller", "--init", "--disable-components", KUBE_COMPONENTS)
        n.wait_healthy(["etcd", "control-api"], timeout=90)
        yield n
    finally:
        try:
            n.stop(timeout=30)
        finally:
            _kill_marked_children(n.run)
            shutil.rmtree(root, ignore_errors=True)
