"""Edge. Applies a ``PkiPlan`` to the disk: reads what is there, asks ``plan.needs_issue``,
writes only what it flags (atomically, keys and kubeconfigs 0600, certs 0644, dirs 0700),
and logs ``pki_file_written`` with the path and the reason for each file, never key material.

Interruption: every file is one atomic write, and a key is written before its certificate,
so a run killed between the two leaves a certificate that does not match its key; the next
run sees ``certificate does not match key`` (or ``certificate missing``) and repairs it.
Leftover ``.name.*.tmp`` files from a killed write are removed at the start of a run.

``stage_pki`` (what the agent's PKI child runs for every start, reload and renewal) decides
and writes the same files, but each new file stays a fsynced temp file next to its target
(``fsutil.stage``, final mode already): the agent renames them all once its reload is accepted
(``fsutil.commit_staged``), or removes them (``fsutil.discard_staged``), so a rejected reload
leaves the PKI files as they were. A run that fails removes what it staged itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from kagent import fsutil, log
from kagent.config.model import ClusterConfig, KeyAlgorithm
from kagent.errors import PreconditionError
from kagent.kubeconfig import Kubeconfig, parse_kubeconfig, render_kubeconfig
from kagent.paths import Paths
from kagent.pki import issue
from kagent.pki.check import CertStatus, describe_cert
from kagent.pki.issue import CertRequest, PrivateKey, Signer, Usage
from kagent.pki.plan import (
    CaSpec,
    Existing,
    KeyPairSpec,
    KubeconfigSpec,
    LeafSpec,
    PkiPlan,
    Reason,
    needs_issue,
)

_NEW_KEY_REASONS = frozenset({Reason.MISSING, Reason.KEY_MISSING, Reason.KEY_UNREADABLE, Reason.KEY_ALGORITHM_CHANGED})


@dataclass(frozen=True, slots=True)
class ApplyResult:
    written: tuple[Path, ...]
    reasons: Mapping[Path, str]
    # stage_pki: target -> its staged temp file, in write order (apply_pki: empty, written in place)
    staged: Mapping[Path, Path] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class _Run:
    now: datetime
    logger: Any
    staged: dict[Path, Path] | None = None  # None: write in place
    written: dict[Path, str] = field(default_factory=dict)

    def write(self, path: Path, data: bytes, mode: int, reason: str) -> None:
        if self.staged is None:
            if not fsutil.write_atomic(path, data, mode=mode):
                return
        else:
            tmp = fsutil.stage(path, data, mode=mode)
            if tmp is None:
                return
            self.staged[path] = tmp
        self.written[path] = reason
        extra: dict[str, Any] = {}
        if path.suffix == ".crt" and (cert := issue.load_cert(data)) is not None:
            extra["sha256"] = issue.fingerprint(cert)  # as `openssl x509 -fingerprint -sha256`, never key bytes
        if self.staged is not None:
            extra["staged"] = True  # in place once the agent commits it
        self.logger.info("pki_file_written", path=str(path), reason=reason, **extra)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _serial() -> int:
    return issue.serial_from(os.urandom(20))


def _reusable_key(pem: bytes | None, algorithm: KeyAlgorithm) -> PrivateKey | None:
    key = issue.load_key(pem) if pem is not None else None
    return key if key is not None and issue.key_algorithm_of(key) is algorithm else None


def _apply_ca(spec: CaSpec, run: _Run) -> Signer:
    cert_pem, key_pem = _read(spec.cert), _read(spec.key)
    reason = needs_issue(spec, Existing(cert=cert_pem, key=key_pem), run.now)
    if reason is None:
        assert cert_pem is not None and key_pem is not None
        cert, key = issue.load_cert(cert_pem), issue.load_key(key_pem)
        assert cert is not None and key is not None
        return Signer(cert, key)
    key = issue.load_key(key_pem) if key_pem is not None else None
    if key is None:
        # a new CA: everything it signed is reissued by the issuer check of each leaf
        key = issue.new_key(spec.key_algorithm)
        if reason is not Reason.MISSING:
            run.logger.warning("pki_ca_regenerated", ca=spec.name, path=str(spec.cert), reason=str(reason),
                               hint="nodes and kubeconfigs that hold the old CA certificate must be given the new one")
        run.write(spec.key, issue.key_pem(key), fsutil.MODE_PRIVATE_KEY, str(reason))
    cert = issue.make_ca(spec.common_name, key, lifetime=spec.lifetime, now=run.now, serial=_serial())
    run.write(spec.cert, issue.cert_pem(cert), fsutil.MODE_CERT, str(reason))
    return Signer(cert, key)


def _apply_keypair(spec: KeyPairSpec, run: _Run) -> None:
    private_pem, public_pem = _read(spec.private), _read(spec.public)
    reason = needs_issue(spec, Existing(cert=public_pem, key=private_pem), run.now)
    if reason is None:
        return
    key = None if reason in _NEW_KEY_REASONS else (issue.load_key(private_pem) if private_pem is not None else None)
    if key is None:
        key = issue.new_key(spec.key_algorithm)
        run.write(spec.private, issue.key_pem(key), fsutil.MODE_PRIVATE_KEY, str(reason))
    run.write(spec.public, issue.public_pem(key), fsutil.MODE_PUBLIC, str(reason))


def _apply_leaf(spec: LeafSpec, signer: Signer, run: _Run) -> tuple[bytes, bytes]:
    cert_pem, key_pem = _read(spec.cert), _read(spec.key)
    reason = needs_issue(spec, Existing(cert=cert_pem, key=key_pem, signer=signer.cert_pem), run.now)
    if reason is None:
        assert cert_pem is not None and key_pem is not None
        return cert_pem, key_pem
    key = None if reason in _NEW_KEY_REASONS else _reusable_key(key_pem, spec.key_algorithm)
    if key is None:
        key = issue.new_key(spec.key_algorithm)
        key_pem = issue.key_pem(key)
        run.write(spec.key, key_pem, fsutil.MODE_PRIVATE_KEY, str(reason))
    assert key_pem is not None
    cert_pem = issue.cert_pem(issue.issue_leaf(spec.request, key, signer, now=run.now, serial=_serial()))
    run.write(spec.cert, cert_pem, fsutil.MODE_CERT, str(reason))
    return cert_pem, key_pem


def _apply_kubeconfig(spec: KubeconfigSpec, ca_pem: bytes, client: tuple[bytes, bytes], run: _Run) -> None:
    text = render_kubeconfig(Kubeconfig(server=spec.server, ca_pem=ca_pem, cert_pem=client[0], key_pem=client[1],
                                        cluster=spec.cluster, context=spec.context, user=spec.user))
    reason = Reason.MISSING if not spec.path.exists() else Reason.CONTENT_CHANGED
    run.write(spec.path, text.encode(), fsutil.MODE_KUBECONFIG, str(reason))


SHARED_PRIVATE = 0o640  # a key or kubeconfig the ownership step shares with a second component user's group


def _fix_modes(plan: PkiPlan, run: _Run) -> None:
    """Files kept as they are still get the modes of DESIGN §2 (e.g. 0640 root-group keys from
    a k0s data dir become 0600). Not a write: nothing needs a restart for it. A private file
    that is 0640 with a group other than root's is what the ownership step makes of a file two
    component users read (``server.key``: konnectivity-server and kube-apiserver): kept, or every
    renewal check that rewrote nothing would take it away from the second reader."""
    for path in plan.files():
        want = fsutil.MODE_PRIVATE_KEY if path.suffix in (".key", ".conf") else fsutil.MODE_CERT
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        have = st.st_mode & 0o7777
        if want == fsutil.MODE_PRIVATE_KEY and have == SHARED_PRIVATE and st.st_gid != 0:
            continue
        if have != want:
            os.chmod(path, want)
            run.logger.info("pki_mode_fixed", path=str(path), mode=oct(want), was=oct(have))


def _remove_stale_temps(files: Iterable[Path]) -> None:
    """Delete ``.<name>.*.tmp`` left by a killed ``write_atomic`` of one of ``files``, or staged
    by a run (or an agent) killed before its commit (and nothing else: other writers' temp
    files in the data dir are not ours to touch). A folder that is a symlink is not followed
    (it may lead out of the data dir), and a link named like a temp file is not a temp file."""
    by_folder: dict[Path, set[str]] = {}
    for f in files:
        by_folder.setdefault(f.parent, set()).add(f.name)
    for folder, names in by_folder.items():
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            n = entry.name
            if (n.startswith(".") and n.endswith(".tmp") and n[1:].rsplit(".", 2)[0] in names
                    and not entry.is_symlink() and entry.is_file()):
                entry.unlink(missing_ok=True)


def _ensure_pki_dir(path: Path) -> None:
    """A PKI dir is made 0700; an existing one is made 0700 unless it is 0711, which the
    ownership step (``users.apply_ownership``) gives it so that the component users get through
    it to their files: a PKI run must not take that away from running components (it did:
    every reload and renewal check made ``pki/`` 0700 until the ownership step ran again, and
    etcd running as its own user refused every TLS client meanwhile, for good after a reload
    rejected in between, or a renewal check that rewrote nothing)."""
    keep = (fsutil.MODE_PRIVATE_DIR, fsutil.MODE_TRAVERSABLE_DIR)
    if path.is_dir() and not path.is_symlink() and (path.stat().st_mode & 0o7777) in keep:
        return
    fsutil.ensure_dir(path, fsutil.MODE_PRIVATE_DIR)


def _run(plan: PkiPlan, run: _Run) -> ApplyResult:
    for d in plan.dirs:
        _ensure_pki_dir(d)
    _remove_stale_temps(plan.files())
    signers = {ca.name: _apply_ca(ca, run) for ca in plan.cas}
    for kp in plan.keypairs:
        _apply_keypair(kp, run)
    leaves = {leaf.name: _apply_leaf(leaf, signers[leaf.signer], run) for leaf in plan.leaves}
    for kc in plan.kubeconfigs:
        _apply_kubeconfig(kc, signers[kc.ca].cert_pem, leaves[kc.client], run)
    _fix_modes(plan, run)
    return ApplyResult(written=tuple(run.written), reasons=MappingProxyType(dict(run.written)),
                       staged=MappingProxyType(dict(run.staged or {})))


def apply_pki(plan: PkiPlan, *, now: datetime) -> ApplyResult:
    """Bring the disk in line with ``plan``: create what is missing, reissue what
    ``needs_issue`` flags, touch nothing else. A second run writes nothing."""
    return _run(plan, _Run(now=now, logger=log.get()))


def stage_pki(plan: PkiPlan, *, now: datetime) -> ApplyResult:
    """``apply_pki``'s decisions, with every new file staged next to its target
    (``ApplyResult.staged``) instead of renamed onto it: nothing a running component reads
    changes until ``fsutil.commit_staged``. Should the run fail, what it staged is removed."""
    run = _Run(now=now, logger=log.get(), staged={})
    try:
        return _run(plan, run)
    except BaseException:
        fsutil.discard_staged((run.staged or {}).items())
        raise


def renew_pki(plan: PkiPlan, *, now: datetime) -> tuple[Path, ...]:
    """For a running agent, called periodically: the same rule as ``apply_pki`` (so only
    what is missing, changed or expiring within ``renewBefore`` is rewritten). Returns the
    rewritten paths; the components whose ``ComponentSpec.reads`` hold one are restarted
    (``supervisor.reload.readers``)."""
    return apply_pki(plan, now=now).written


# ---- the cluster CA for one-off clients (kubeconfig create, the join API) -----------------


def _no_ca(paths: Paths, missing: Path) -> PreconditionError:
    return PreconditionError(
        "pki", f"{missing} does not exist: {paths.data_dir} holds no cluster CA",
        hint="run this on a controller (kagent controller --init creates the PKI), or pass its --data-dir",
    )


def load_ca(paths: Paths) -> Signer:
    """The cluster CA (``pki/ca.crt`` + ``pki/ca.key``); PreconditionError (exit 4) when absent."""
    cert_path, key_path = paths.pki("ca.crt"), paths.pki("ca.key")
    key_pem, cert_pem = _read(key_path), _read(cert_path)
    if key_pem is None:
        raise _no_ca(paths, key_path)
    if cert_pem is None:
        raise _no_ca(paths, cert_path)
    key, cert = issue.load_key(key_pem), issue.load_cert(cert_pem)
    if key is None or cert is None:
        bad = key_path if key is None else cert_path
        raise PreconditionError("pki", f"{bad} is not a readable PEM {'key' if key is None else 'certificate'}")
    if not issue.same_public_key(cert.public_key(), key):  # type: ignore[arg-type]
        raise PreconditionError("pki", f"{cert_path} does not match {key_path}",
                                hint="start the controller once: it repairs the CA")
    return Signer(cert, key)


@dataclass(frozen=True, slots=True)
class ClientCert:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes  # the cluster CA that signed it


def issue_client_cert(paths: Paths, config: ClusterConfig, *, user: str, groups: Iterable[str] = (),
                      expires_after: timedelta, now: datetime) -> ClientCert:
    """A fresh client key and certificate (CN ``user``, one O per group) signed by the
    cluster CA, in memory only: for ``kubeconfig create`` and the join API's kubelet certs
    (``user="system:node:<name>", groups=["system:nodes"]``)."""
    ca = load_ca(paths)
    key = issue.new_key(config.pki.key_algorithm)
    request = CertRequest(common_name=user, organizations=tuple(groups), usages=(Usage.CLIENT,), lifetime=expires_after)
    cert = issue.issue_leaf(request, key, ca, now=now, serial=_serial())
    return ClientCert(cert_pem=issue.cert_pem(cert), key_pem=issue.key_pem(key), ca_pem=ca.cert_pem)


def issue_client_kubeconfig(
    paths: Paths,
    config: ClusterConfig,
    *,
    user: str,
    groups: Iterable[str] = (),
    expires_after: timedelta,
    context_name: str,
    server: str,
    now: datetime,
) -> str:
    """A kubeconfig for ``user`` (one O per group) with a fresh client cert signed by the
    cluster CA. Nothing is written: the key exists only in the returned text."""
    pair = issue_client_cert(paths, config, user=user, groups=groups, expires_after=expires_after, now=now)
    return render_kubeconfig(Kubeconfig(server=server, ca_pem=pair.ca_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem,
                                        cluster=context_name, context=context_name, user=user))


def read_admin_kubeconfig(paths: Paths, server: str) -> str:
    """``pki/admin.conf``'s identity, pointed at ``server`` (the external URL)."""
    load_ca(paths)
    conf = _read(paths.admin_conf)
    if conf is None:
        raise PreconditionError("pki", f"{paths.admin_conf} does not exist",
                                hint="start the controller once: it writes the admin kubeconfig")
    kc = parse_kubeconfig(conf.decode(), str(paths.admin_conf))
    return render_kubeconfig(Kubeconfig(server=server, ca_pem=kc.ca_pem, cert_pem=kc.cert_pem, key_pem=kc.key_pem,
                                        cluster=kc.cluster, context=kc.context, user=kc.user))


# ---- certs check --------------------------------------------------------------------------


def check_certs(paths: Paths, *, now: datetime, renew_before: timedelta) -> tuple[CertStatus, ...]:
    """Every ``*.crt`` under ``<data>/pki`` (and the client cert embedded in ``kubelet.conf``),
    sorted by path. PreconditionError (exit 4) when there is none."""
    found: list[CertStatus] = []
    if paths.pki_dir.is_dir():
        for path in sorted(paths.pki_dir.rglob("*.crt")):
            if path.is_file() and not path.name.startswith("."):
                found.append(describe_cert(path, path.read_bytes(), now=now, renew_before=renew_before))
    kubelet_conf = _read(paths.kubelet_conf)
    if kubelet_conf is not None:
        try:
            cert = parse_kubeconfig(kubelet_conf.decode(errors="replace"), str(paths.kubelet_conf)).cert_pem
        except PreconditionError:
            cert = b""
        if cert is not None:
            found.append(describe_cert(paths.kubelet_conf, cert, now=now, renew_before=renew_before))
    if not found:
        raise PreconditionError("certs", f"no certificates under {paths.pki_dir}",
                                hint="pass the data dir of a node (--data-dir) or start the controller once")
    return tuple(found)
