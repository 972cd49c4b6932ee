"""kagent.pki.child and kagent.pki.wire: the PKI applied by a real child process (``python -m
kagent pki-apply``), its JSON protocol decoded strictly both ways, and every way the child can
fail turned into one KagentError naming ``pki``, with nothing written for a bad request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kagent.errors import KagentError, PreconditionError
from kagent.paths import Paths
from kagent.pki import wire
from kagent.pki.child import apply_in_child
from kagent.pki.plan import PkiPlan, plan_pki
from tests.conftest import kagent_cmd, kagent_env, mapped_cryptography
from tests.fixtures.pki_env import FACTS, make_config, utcnow

EC = "spec:\n  pki:\n    keyAlgorithm: ecdsa-p256\n  storage:\n    etcd:\n      peerAddress: 127.0.0.1\n"


def _plan(base: Path, text: str = EC) -> PkiPlan:
    return plan_pki(make_config(text), Paths.build(base / "data", base / "run"), FACTS, kubelet_node="node-a",
                    etcd_member="node-a-1")


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def _child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the child is `python -m kagent`: it must import this checkout's kagent
    for k, v in kagent_env().items():
        monkeypatch.setenv(k, v)


def test_a_plan_survives_the_wire_unchanged() -> None:
    plan = _plan(Path("/nonexistent-base"), "")  # RSA, every kind of spec
    doc = json.loads(json.dumps(wire.request(plan, utcnow())))
    got, now = wire.parse_request(doc)
    assert got == plan and now.tzinfo is not None


@pytest.mark.parametrize("field,value,message", [
    (("cas", 0, "cert"), "relative/ca.crt", "plan.cas[0].cert: expected an absolute path"),
    (("leaves", 0, "key_algorithm"), "dsa-1024", "plan.leaves[0].key_algorithm: 'dsa-1024' is not a KeyAlgorithm"),
    (("leaves", 0, "request", "usages"), "server", "plan.leaves[0].request.usages: expected a list"),
    (("renew_before",), 86400, "plan.renew_before: expected [days, seconds, microseconds]"),
    (("keypairs", 0, "rekey_on_algorithm_change"), 1, "expected true or false"),
])
def test_a_garbled_request_is_refused_naming_the_field(field: tuple[object, ...], value: object, message: str) -> None:
    doc = wire.request(_plan(Path("/b")), utcnow())
    target = doc["plan"]
    for key in field[:-1]:
        target = target[key]  # type: ignore[index]
    target[field[-1]] = value  # type: ignore[index]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        wire.parse_request(json.loads(json.dumps(doc)))


def test_an_extra_or_missing_field_is_refused() -> None:
    doc = wire.request(_plan(Path("/b")), utcnow())
    doc["plan"]["cas"][0]["evil"] = "x"
    with pytest.raises(ValueError, match="plan.cas.0.: fields"):
        wire.parse_request(doc)


def test_the_child_applies_the_plan_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    written = apply_in_child(plan, now=utcnow())
    assert set(written) == set(plan.files()) and all(p.is_file() for p in plan.files())
    assert written[plan.ca("ca").cert] == "missing"
    assert apply_in_child(plan, now=utcnow()) == {}
    # the same rule as in-process: a file removed is the one file rewritten
    plan.leaf("etcd/server").cert.unlink()
    assert apply_in_child(plan, now=utcnow()) == {plan.leaf("etcd/server").cert: "certificate missing"}


def test_a_child_that_cannot_write_names_the_file_and_the_agent_side_raises_once(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pki").write_text("not a directory\n")
    with pytest.raises(PreconditionError) as err:
        apply_in_child(plan, now=utcnow())
    assert err.value.where == "pki" and str(tmp_path / "data" / "pki") in err.value.what
    assert err.value.render().count("\n") == 1  # one error line and one hint
    assert _files(tmp_path) == [tmp_path / "data" / "pki"]


def test_a_garbled_request_to_the_real_child_writes_nothing(tmp_path: Path) -> None:
    doc = wire.request(_plan(tmp_path), utcnow())
    doc["plan"]["leaves"][0]["cert"] = "../../etc/evil.crt"
    r = subprocess.run(kagent_cmd("pki-apply", "--parent-pid", str(os.getpid())), input=json.dumps(doc), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    answer = json.loads(r.stdout)["error"]
    assert answer["where"] == "pki" and "invalid request" in answer["what"] and "expected an absolute path" in answer["what"]
    assert _files(tmp_path) == [] and not (tmp_path / "data").exists()


def _fake_child(code: str) -> list[str]:
    # stands in for kagent only where kagent cannot be made to misbehave: dying, garbage, hanging
    return [sys.executable, "-c", code]


def test_a_child_that_dies_or_answers_garbage_is_one_clear_error(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    with pytest.raises(KagentError, match="pki: the PKI child exited 3 without an answer"):
        apply_in_child(plan, now=utcnow(), argv=_fake_child("import sys; sys.exit(3)"))
    with pytest.raises(KagentError, match=r"was killed by signal 9"):
        apply_in_child(plan, now=utcnow(), argv=_fake_child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    outside = "import json; print(json.dumps({'written': [['/etc/passwd', 'missing']], 'staged': []}))"
    with pytest.raises(KagentError, match="answer is invalid: written.0.: /etc/passwd is not a file of the plan"):
        apply_in_child(plan, now=utcnow(), argv=_fake_child(outside))
    # a staged "temp file" that is not a temp file beside its target is never renamed onto it
    ca = plan.ca("ca").cert
    for tmp in ("/etc/passwd", f"{ca.parent}/../.ca.crt.x.tmp", f"{ca.parent}/.ca.crt..tmp", f"{ca.parent}/ca.crt"):
        doc = {"written": [[str(ca), "missing"]], "staged": [[str(ca), tmp]]}
        with pytest.raises(KagentError, match="answer is invalid: staged.0.: .* is not a temp file beside"):
            apply_in_child(plan, now=utcnow(), argv=_fake_child(f"print({json.dumps(json.dumps(doc))})"))
    assert not ca.exists()
    with pytest.raises(PreconditionError, match="did not finish within 0.5 s and was killed"):
        apply_in_child(plan, now=utcnow(), argv=_fake_child("import time; time.sleep(60)"), timeout=0.5)


def test_the_helper_sees_cryptography_in_a_process_that_loaded_it() -> None:
    from kagent.pki import issue  # noqa: F401 - this test process loads it

    assert any("_rust" in p for p in mapped_cryptography(os.getpid()))


def test_a_kagent_error_raised_in_the_child_is_raised_again_as_it_was() -> None:
    from kagent.errors import ConfigError
    from kagent.pki.child import _error_doc, _error_from

    for err in (ConfigError("spec.pki.keyAlgorithm", "bad", hint="fix it", source="/etc/k.yaml"),
                PreconditionError("pki", "no CA", hint="start once")):
        again = _error_from(json.loads(json.dumps(_error_doc(err))))
        assert type(again) is type(err) and again.render() == err.render() and again.exit_code == err.exit_code
    bug = _error_from(_error_doc(RuntimeError("boom")))
    assert bug.render().startswith("error: pki: internal error in the PKI child: RuntimeError: boom\nhint: ")


def test_an_agent_killed_while_its_pki_child_writes_keeps_the_instance_lock_held_until_the_child_ends(tmp_path: Path) -> None:
    import signal
    import time

    from kagent.node.lock import InstanceLock, is_held

    lock_file, pid_file = tmp_path / "kagent.lock", tmp_path / "child.pid"
    # the child stands in for a slow PKI apply (an RSA CA on a busy host): it says its pid, then works
    slow = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    agent = (f"import sys\nfrom pathlib import Path\nfrom kagent.node.lock import InstanceLock\n"
             f"from kagent.pki.child import apply_in_child\nfrom tests.unit.pki.test_pki_child import _plan\n"
             f"from tests.fixtures.pki_env import utcnow\n"
             f"lock = InstanceLock(Path({str(lock_file)!r})).acquire()\n"
             f"apply_in_child(_plan(Path({str(tmp_path)!r})), now=utcnow(), argv=[sys.executable, '-c', {slow!r}], "
             f"lock_fd=lock.fd)\n")
    proc = subprocess.Popen([sys.executable, "-c", agent], env=kagent_env(), cwd=str(Path(__file__).parents[3]))
    child_pid = None
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the agent stand-in did not start its PKI child"
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        proc.kill()  # the agent dies; its PKI child goes on writing
        proc.wait(timeout=10)
        assert is_held(lock_file)  # so no new agent starts on these files yet
        with pytest.raises(PreconditionError):
            InstanceLock(lock_file).acquire()
        os.kill(child_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while is_held(lock_file):
            assert time.monotonic() < deadline, "the lock outlived the PKI child"
            time.sleep(0.05)
        child_pid = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child_pid is not None:
            os.kill(child_pid, signal.SIGKILL)


def test_an_answer_over_the_cap_is_garbage_and_the_child_is_killed(tmp_path: Path) -> None:
    from kagent.pki.child import MAX_ANSWER

    flood = f"import sys, time; sys.stdout.write('x' * {MAX_ANSWER + 1}); sys.stdout.flush(); time.sleep(60)"
    with pytest.raises(KagentError, match=rf"answered more than {MAX_ANSWER} bytes and was killed"):
        apply_in_child(_plan(tmp_path), now=utcnow(), argv=_fake_child(flood), timeout=30)


def test_a_cancelled_runner_kills_its_hung_child_by_pid_and_reaps_it(tmp_path: Path) -> None:
    import threading
    import time

    from kagent import cancel

    pid_file = tmp_path / "child.pid"
    hang = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    event, raised = threading.Event(), []

    def runner() -> None:
        try:
            cancel.run(event, lambda: apply_in_child(_plan(tmp_path), now=utcnow(), argv=_fake_child(hang), timeout=60))
        except KagentError as e:
            raised.append(e)

    fds_before = len(os.listdir("/proc/self/fd"))
    t = threading.Thread(target=runner)
    t.start()
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the hanging child did not start"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    event.set()
    t.join(10)
    try:
        assert not t.is_alive(), "the runner did not give up"
        assert len(raised) == 1 and isinstance(raised[0], cancel.Cancelled)
        assert f"the PKI child (pid {pid}) was killed: the agent is stopping" in raised[0].render()
        with pytest.raises(ProcessLookupError):  # gone and reaped: not even a zombie is left
            os.kill(pid, 0)
        assert len(os.listdir("/proc/self/fd")) == fds_before  # its pipes are closed
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    # and once cancelled, no child is started at all
    pid_file.unlink()
    with pytest.raises(cancel.Cancelled, match="was not started"):
        cancel.run(event, lambda: apply_in_child(_plan(tmp_path), now=utcnow(), argv=_fake_child(hang)))
    assert not pid_file.exists()


def test_a_pki_child_whose_agent_is_already_gone_writes_nothing(tmp_path: Path) -> None:
    """The agent died before the child's prctl(PR_SET_PDEATHSIG): the child sees another parent
    than the pid it was given and exits 4 at once, before it reads its plan."""
    doc = wire.request(_plan(tmp_path), utcnow())
    not_the_parent = os.getpid() + 1  # this test process is the child's parent
    r = subprocess.run(kagent_cmd("pki-apply", "--parent-pid", str(not_the_parent)), input=json.dumps(doc),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith(f"error: pki: the agent (pid {not_the_parent}) that started this PKI child is gone")
    assert r.stdout == "" and _files(tmp_path) == []


def test_the_pki_child_asks_to_be_killed_with_its_parent() -> None:
    """PR_SET_PDEATHSIG is set in the child process itself (read back with PR_GET_PDEATHSIG)."""
    code = ("import ctypes, os, signal, sys; from kagent.pki.child import die_with_parent;"
            "ok = die_with_parent(os.getppid()); sig = ctypes.c_int(0);"
            "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0); print(ok, sig.value)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", str(int(signal.SIGKILL))], r.stderr
