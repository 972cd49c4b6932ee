"""Benchmark: time to build a full controller PKI from scratch, kagent vs an openssl script.

    python bench/pki.py               # 5 rounds per variant (about half a minute)
    python bench/pki.py --repeat 11   # more rounds
    python bench/pki.py --json        # machine-readable result on stdout

What runs, for RSA-2048 and for ECDSA P-256, each round in a fresh temp dir:
- kagent (in process): ``apply_pki(plan_pki(...))``, what ``kagent controller`` does at start:
  3 CAs, 2 key pairs (sa, etcd jwt), 11 leaves, 4 kubeconfigs, every file written
  atomically with fsync (file and folder);
- kagent (cold): the same in a fresh ``python`` process, so interpreter start-up and the
  imports of cryptography/structlog/yaml are counted too;
- openssl: a bash script generated from the same plan that makes the same files with the
  ``openssl`` command line, one ``openssl req -x509 [-CA]`` per certificate (key generated in
  the same call; the fastest form openssl 3 offers), ``genrsa``/``ecparam`` + ``pkey -pubout`` per key pair,
  kubeconfigs with ``base64``; no fsync. Its CA/leaf extensions match kagent's (CA
  keyCertSign|cRLSign, leaves' usages and SANs, SKI/AKI).

Reported: median and min wall time per variant and the ratios openssl / kagent (above 1 means
kagent is faster). Targets from the issue: kagent no slower than the openssl script; ECDSA full
set under 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kagent import log  # noqa: E402
from kagent.config.load import load_config  # noqa: E402
from kagent.config.model import KeyAlgorithm  # noqa: E402
from kagent.node.facts import NodeFacts  # noqa: E402
from kagent.paths import Paths  # noqa: E402
from kagent.pki.issue import Usage  # noqa: E402
from kagent.pki.plan import PkiPlan, plan_pki  # noqa: E402
from kagent.pki.store import apply_pki  # noqa: E402

FACTS = NodeFacts(hostname="bench", addresses=("10.0.0.5", "127.0.0.1", "::1"))
OPENSSL = shutil.which("openssl") or "openssl"


def config_text(alg: KeyAlgorithm) -> str:
    return f"spec:\n  api:\n    address: 10.0.0.5\n  pki:\n    keyAlgorithm: {alg.value}\n"


def make_plan(base: Path, alg: KeyAlgorithm) -> PkiPlan:
    cfg = load_config(config_text(alg), host_address="10.0.0.5")
    return plan_pki(cfg, Paths.build(base / "data", base / "run"), FACTS)


# ---- kagent ---------------------------------------------------------------------------------


def run_kagent_inprocess(base: Path, alg: KeyAlgorithm) -> float:
    plan = make_plan(base, alg)
    t0 = time.perf_counter()
    result = apply_pki(plan, now=datetime.now(timezone.utc))
    elapsed = time.perf_counter() - t0
    assert len(result.written) == len(plan.files())
    return elapsed


COLD = """
import sys
from datetime import datetime, timezone
from pathlib import Path
sys.path.insert(0, {repo!r})
from kagent import log
log.configure(fmt="json")
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING + 10))
from kagent.config.load import load_config
from kagent.node.facts import NodeFacts
from kagent.paths import Paths
from kagent.pki.plan import plan_pki
from kagent.pki.store import apply_pki
cfg = load_config({text!r}, host_address="10.0.0.5")
facts = NodeFacts(hostname="bench", addresses=("10.0.0.5", "127.0.0.1", "::1"))
apply_pki(plan_pki(cfg, Paths.build({data!r}, {run!r}), facts), now=datetime.now(timezone.utc))
"""


def run_kagent_cold(base: Path, alg: KeyAlgorithm) -> float:
    code = COLD.format(repo=str(REPO), text=config_text(alg), data=str(base / "data"), run=str(base / "run"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


# ---- openssl --------------------------------------------------------------------------------


def _newkey(alg: KeyAlgorithm) -> list[str]:
    if alg is KeyAlgorithm.ECDSA_P256:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    return ["-newkey", "rsa:2048"]


def _cnf(lines: list[str]) -> str:
    return "printf '%s\\n' " + " ".join(shlex.quote(x) for x in lines)


def openssl_script(plan: PkiPlan, alg: KeyAlgorithm) -> str:
    """bash that makes the plan's files with the openssl command line."""
    days_ca = max(1, int(plan.cas[0].lifetime.total_seconds() // 86400))
    days_leaf = max(1, int(plan.leaves[0].request.lifetime.total_seconds() // 86400))
    out = ["set -eu", f"mkdir -p {' '.join(shlex.quote(str(d)) for d in plan.dirs)}",
           f"chmod 700 {' '.join(shlex.quote(str(d)) for d in plan.dirs)}"]
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    for ca in plan.cas:
        cnf = ca.cert.with_suffix(".cnf")
        out.append(_cnf(["[req]", "distinguished_name=dn", "x509_extensions=ext", "prompt=no", "[dn]", f"CN={ca.common_name}",
                         "[ext]", "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                         "subjectKeyIdentifier=hash"]) + f" > {q(cnf)}")
        out.append(shlex.join([OPENSSL, "req", "-x509", "-new", "-noenc", *_newkey(alg), "-keyout", str(ca.key),
                               "-out", str(ca.cert), "-days", str(days_ca), "-sha256", "-config", str(cnf)]))
    for kp in plan.keypairs:
        if alg is KeyAlgorithm.ECDSA_P256:
            out.append(shlex.join([OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(kp.private)]))
        else:
            out.append(shlex.join([OPENSSL, "genrsa", "-traditional", "-out", str(kp.private), "2048"]) + " 2>/dev/null")
        out.append(shlex.join([OPENSSL, "pkey", "-in", str(kp.private), "-pubout", "-out", str(kp.public)]))
    for leaf in plan.leaves:
        ca = plan.ca(leaf.signer)
        cnf = leaf.cert.with_suffix(".cnf")
        req = leaf.request
        dn = [f"{i}.O={o}" for i, o in enumerate(req.organizations)] + [f"CN={req.common_name}"]
        ku = "digitalSignature,keyEncipherment" if alg is KeyAlgorithm.RSA_2048 else "digitalSignature"
        eku = ",".join({Usage.SERVER: "serverAuth", Usage.CLIENT: "clientAuth"}[u] for u in req.usages)
        ext = ["basicConstraints=critical,CA:FALSE", f"keyUsage=critical,{ku}", f"extendedKeyUsage={eku}",
               "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
        sans = [f"DNS:{d}" for d in req.dns_names] + [f"IP:{i}" for i in req.ip_addresses]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        out.append(_cnf(["[req]", "distinguished_name=dn", "x509_extensions=ext", "prompt=no", "[dn]", *dn, "[ext]", *ext])
                   + f" > {q(cnf)}")
        out.append(shlex.join([OPENSSL, "req", "-x509", "-new", "-noenc", *_newkey(alg), "-keyout", str(leaf.key),
                               "-out", str(leaf.cert), "-days", str(days_leaf), "-sha256", "-config", str(cnf),
                               "-CA", str(ca.cert), "-CAkey", str(ca.key)]))
    for kc in plan.kubeconfigs:
        leaf = plan.leaf(kc.client)
        ca = plan.ca(kc.ca)
        body = (f"apiVersion: v1\\nkind: Config\\nclusters:\\n- cluster:\\n    certificate-authority-data: %s\\n"
                f"    server: {kc.server}\\n  name: {kc.cluster}\\ncontexts:\\n- context:\\n    cluster: {kc.cluster}\\n"
                f"    user: {kc.user}\\n  name: {kc.context}\\ncurrent-context: {kc.context}\\nusers:\\n- name: {kc.user}\\n"
                f"  user:\\n    client-certificate-data: %s\\n    client-key-data: %s\\n")
        out.append(f"printf '{body}' \"$(base64 -w0 {q(ca.cert)})\" \"$(base64 -w0 {q(leaf.cert)})\" "
                   f"\"$(base64 -w0 {q(leaf.key)})\" > {q(kc.path)}")
    keys = [ca.key for ca in plan.cas] + [kp.private for kp in plan.keypairs] + [leaf.key for leaf in plan.leaves]
    out.append("chmod 600 " + " ".join(q(k) for k in keys) + " " + " ".join(q(kc.path) for kc in plan.kubeconfigs))
    return "\n".join(out) + "\n"


def run_openssl(base: Path, alg: KeyAlgorithm) -> float:
    plan = make_plan(base, alg)
    base.mkdir(parents=True, exist_ok=True)
    script = base / "make-pki.sh"
    script.write_text(openssl_script(plan, alg))
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True)  # openssl req prints progress on stderr
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"the openssl script failed ({script}):\n{r.stderr[-3000:]}")
    for leaf in plan.leaves:  # the script made real, verifiable certificates
        subprocess.run([OPENSSL, "verify", "-CAfile", str(plan.ca(leaf.signer).cert), str(leaf.cert)], check=True,
                       stdout=subprocess.DEVNULL)
    return elapsed


# ---- driver ---------------------------------------------------------------------------------

VARIANTS = {"kagent": run_kagent_inprocess, "kagent-cold": run_kagent_cold, "openssl": run_openssl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    log.configure(fmt="json")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING + 10))  # silence pki logs
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="kagent-bench-pki-") as tmp:
        root = Path(tmp)
        for alg in (KeyAlgorithm.RSA_2048, KeyAlgorithm.ECDSA_P256):
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            run_kagent_inprocess(root / f"warm-{alg.value}", alg)  # warm imports and OpenSSL tables once
            for i in range(args.repeat):
                for name, fn in VARIANTS.items():  # interleaved, so load changes hit every variant alike
                    times[name].append(fn(root / f"{alg.value}-{name}-{i}", alg))
            results[alg.value] = {n: {"median_s": statistics.median(t), "min_s": min(t)} for n, t in times.items()}

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"full controller PKI from scratch (3 CAs, 2 key pairs, 11 leaves, 4 kubeconfigs), {args.repeat} rounds, "
          f"{os.cpu_count()} CPUs")
    print(f"{'algorithm':<12}{'variant':<13}{'median':>10}{'min':>10}{'openssl/this':>14}")
    for alg, per in results.items():
        base = per["openssl"]["median_s"]
        for name, r in per.items():
            print(f"{alg:<12}{name:<13}{r['median_s']:>9.3f}s{r['min_s']:>9.3f}s{base / r['median_s']:>13.2f}x")
    ec = results["ecdsa-p256"]["kagent"]["median_s"]
    ok_fast = all(per["kagent"]["median_s"] <= per["openssl"]["median_s"] for per in results.values())
    print(f"target: kagent no slower than openssl ........ {'met' if ok_fast else 'NOT met'}")
    print(f"target: ECDSA full set under 0.3 s ........... {'met' if ec < 0.3 else 'NOT met'} ({ec:.3f} s)")


if __name__ == "__main__":
    main()
