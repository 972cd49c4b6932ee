"""``kagent worker --token-file`` end to end, in a network namespace of its own (the kubelet
double's fixed health port): a controller (real etcd + control-api, no Kubernetes
components) and a worker that joins with a worker token and runs real containerd and the
kubelet test double with the issued kubelet.conf. Bad tokens are refused before anything is
written; a token naming another CA is refused by the pinned TLS check; a worker that joined
before ignores its (now invalid) token; a second host under the same name gets a clear 409."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess

import pytest
import yaml

from kagent.config.model import KeyAlgorithm
from kagent.join.token import JoinToken, decode_token, encode_token
from kagent.pki import issue
from tests.conftest import kagent_cmd, kagent_env
from tests.doubles import install
from tests.integration.conftest import KUBE_COMPONENTS, base_config

pytestmark = pytest.mark.slow


def in_ns(ns: str, n, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *kagent_cmd(*n.flags(), *args)], capture_output=True, text=True,
                          env=kagent_env(), timeout=timeout)


def test_worker_joins_with_a_token_and_runs_containerd_and_kubelet(node_factory, netns):
    ctl = node_factory()
    ctl.write_config(base_config(ctl))
    ctl.start("controller", "--init", "--disable-components", KUBE_COMPONENTS, prefix=("ip", "netns", "exec", netns))
    ctl.wait_healthy(["etcd", "control-api"], timeout=90)

    made = in_ns(netns, ctl, "token", "create", "--role", "worker")
    assert made.returncode == 0, made.stderr
    tok = decode_token(made.stdout, "stdout")
    ctl_tok = decode_token(in_ns(netns, ctl, "token", "create", "--role", "controller").stdout, "stdout")

    w = node_factory()
    w.write_config(base_config(w))
    files = {
        "garbage": b"this is not a token\n",
        "truncated": made.stdout.strip()[: len(made.stdout) // 2].encode(),
        "controller": encode_token(ctl_tok).encode(),
        "bomb": base64.b64encode(gzip.compress(b"a" * (8 << 20))),
    }
    for name, data in files.items():
        (w.root / name).write_bytes(data)
    (w.root / "unreadable").mkdir()
    for name in [*files, "unreadable", "missing"]:
        r = w.kagent("worker", "--token-file", str(w.root / name))
        assert r.returncode == 4, (name, r.stderr)
        first = r.stderr.splitlines()[0]
        assert first.startswith(f"error: token file {w.root / name}: "), (name, r.stderr)
        assert not w.data.exists() and not w.run.exists(), name  # nothing written

    install(w.data / "bin", ("kubelet",))  # the kubelet test double (tests/doubles), not a real kubelet
    # a token naming another CA: the controller's certificate does not verify against it
    other_key = issue.new_key(KeyAlgorithm.ECDSA_P256)
    from datetime import datetime, timedelta, timezone

    other_ca = issue.cert_pem(issue.make_ca("other-ca", other_key, lifetime=timedelta(days=1),
                                            now=datetime.now(timezone.utc), serial=5))
    foreign = JoinToken(server=tok.server, ca_pem=other_ca, role=tok.role, token_id=tok.token_id, secret=tok.secret)
    (w.root / "foreign").write_text(encode_token(foreign))
    r = subprocess.run(["ip", "netns", "exec", netns, *kagent_cmd(*w.flags(), "worker", "--token-file", str(w.root / "foreign"))],
                       capture_output=True, text=True, env=kagent_env(), timeout=120)
    assert r.returncode == 4 and "pinned cluster CA" in r.stderr, r.stderr
    assert not (w.data / "kubelet.conf").exists()

    token_file = w.root / "token"
    token_file.write_text(made.stdout)
    token_file.chmod(0o600)
    w.start("worker", "--token-file", str(token_file), prefix=("ip", "netns", "exec", netns))
    comps = w.wait_healthy(["containerd", "kubelet"], timeout=120)
    assert set(comps) == {"containerd", "kubelet"}
    conf = w.data / "kubelet.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    kc = yaml.safe_load(conf.read_text())
    assert kc["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{ctl.ports['api']}"
    cert = issue.load_cert(base64.b64decode(kc["users"][0]["user"]["client-certificate-data"]))
    node = os.uname().nodename.lower()
    assert cert is not None and cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes"
    assert issue.signed_by(cert, issue.load_cert((ctl.data / "pki" / "ca.crt").read_bytes()))
    assert not (w.data / "join.key").exists()
    nodes = json.loads(in_ns(netns, ctl, "node", "list", "-o", "json").stdout)
    assert [x["name"] for x in nodes] == [node] and nodes[0]["tokenId"] == tok.token_id
    kubelet_pid = comps["kubelet"]["pid"]
    assert f"--kubeconfig={conf}" in open(f"/proc/{kubelet_pid}/cmdline").read().split("\0")

    # renewal through the API with the current cert (mTLS): kubelet.conf gets a new cert
    snippet = ("from datetime import datetime, timedelta, timezone; from kagent import log; from kagent.paths import Paths;"
               "from kagent.join.worker import renew; from kagent.config.model import KeyAlgorithm;"
               f"print(renew(Paths.build({str(w.data)!r}, {str(w.run)!r}), node={node!r}, renew_before=timedelta(days=9999),"
               " key_algorithm=KeyAlgorithm.ECDSA_P256, now=datetime.now(timezone.utc), log=log.get()))")
    rn = subprocess.run(["ip", "netns", "exec", netns, kagent_cmd()[0], "-c", snippet],
                        capture_output=True, text=True, env=kagent_env(), timeout=60)
    assert rn.returncode == 0 and "kubelet.conf" in rn.stdout, rn.stderr
    renewed = issue.load_cert(base64.b64decode(yaml.safe_load(conf.read_text())["users"][0]["user"]["client-certificate-data"]))
    assert renewed is not None and issue.fingerprint(renewed) != issue.fingerprint(cert)

    # joined before: restarts from its data dir, the (now invalidated) token is not used
    assert w.stop() == 0
    assert in_ns(netns, ctl, "token", "invalidate", tok.token_id).returncode == 0
    w.start("worker", "--token-file", str(token_file), prefix=("ip", "netns", "exec", netns))
    w.wait_healthy(["containerd", "kubelet"], timeout=120)
    assert any(e.get("event") == "worker_join_skipped" for e in w.events())
    assert w.stop() == 0

    # another host with a fresh token under the same node name: 409, with the fix in the hint
    w2 = node_factory()
    w2.write_config(base_config(w2))
    install(w2.data / "bin", ("kubelet",))
    fresh = in_ns(netns, ctl, "token", "create").stdout
    (w2.root / "token").write_text(fresh)
    r = subprocess.run(["ip", "netns", "exec", netns, *kagent_cmd(*w2.flags(), "worker", "--token-file", str(w2.root / "token"))],
                       capture_output=True, text=True, env=kagent_env(), timeout=120)
    assert r.returncode == 4 and "has already joined" in r.stderr and f"kagent node remove {node}" in r.stderr, r.stderr
    assert not (w2.data / "kubelet.conf").exists()
    # the secrets never reached a log
    for secret in (tok.secret, decode_token(fresh, "t").secret):
        assert secret not in ctl.log_text() and secret not in w.log_text() and secret not in r.stderr
    # with the controller stopped, the token commands say so (exit 4 and a hint)
    assert ctl.stop() == 0
    down = in_ns(netns, ctl, "token", "list")
    assert down.returncode == 4 and "is the controller running" in down.stderr and "hint:" in down.stderr, down.stderr
