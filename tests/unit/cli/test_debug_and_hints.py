"""``--debug`` (anywhere on the command line) adds tracebacks, to CLI errors and to logged
exceptions; without it errors stay two lines. Every hint that names a kagent command names
one that exists."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click
import pytest

from tests.conftest import REPO, run_kagent


@pytest.mark.parametrize("where", ["root", "after"])
def test_debug_adds_a_traceback_to_an_error(tmp_path: Path, where: str) -> None:
    run = ["--run-dir", str(tmp_path / "r")]
    argv = ["--debug", "status", *run] if where == "root" else ["status", *run, "--debug"]
    r = run_kagent(*argv)
    assert r.returncode == 4
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert "kagent.errors.PreconditionError" in r.stderr
    assert r.stderr.splitlines()[-2].startswith(f"error: {tmp_path / 'r' / 'status.sock'}: no kagent is running")


def test_without_debug_an_error_is_two_lines(tmp_path: Path) -> None:
    r = run_kagent("status", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 4
    assert len(r.stderr.splitlines()) == 2 and "Traceback" not in r.stderr


@pytest.fixture
def restore_logging():
    """These tests configure structlog onto capsys's stderr; put the previous set-up back."""
    import structlog

    from kagent import log

    saved, was = structlog.get_config(), log._configured
    yield
    structlog.configure(**saved)
    log._configured = was


def _log_exception(capsys: pytest.CaptureFixture[str], **opts: bool) -> dict[str, object]:
    from kagent import log

    log.configure(fmt="json", **opts)
    try:
        raise ValueError("boom")
    except ValueError:
        log.get().exception("runner_crashed", component="etcd")
    return json.loads(capsys.readouterr().err.strip().splitlines()[-1])


def test_logged_exceptions_carry_a_traceback_only_with_debug(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    plain = _log_exception(capsys, debug=False)
    assert plain["error"] == "ValueError: boom" and "exception" not in plain
    full = _log_exception(capsys, debug=True)
    assert "Traceback" in str(full["exception"]) and "ValueError: boom" in str(full["exception"])


def test_verbose_enables_debug_level_events(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    from kagent import log

    log.configure(fmt="json", verbose=False, debug=False)
    log.get().debug("hidden_event")
    assert "hidden_event" not in capsys.readouterr().err
    log.configure(fmt="json", verbose=True, debug=False)
    log.get().debug("shown_event")
    assert json.loads(capsys.readouterr().err)["event"] == "shown_event"


# ---- hints name only commands that exist ---------------------------------------------------

_WORDS_AFTER_KAGENT = {"as", "is", "runs", "needs", "sets", "loads", "itself", "can", "will", "keeps"}


def _hint_texts() -> list[tuple[str, str]]:
    """(file:line, text) of every hint: ``hint=`` keyword values and the fix of sysinfo checks."""
    out = []
    for path in sorted((REPO / "kagent").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            values = [kw.value for kw in node.keywords if kw.arg == "hint"]
            if isinstance(node.func, ast.Name) and node.func.id == "Check" and len(node.args) >= 4:
                values.append(node.args[3])
            for v in values:
                parts = [n.value for n in ast.walk(v) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                out.append((f"{path.relative_to(REPO)}:{node.lineno}", "".join(parts)))
    return out


def test_every_hint_names_an_existing_command() -> None:
    from kagent.cli import COMMANDS, root

    ctx = click.Context(root)
    texts = _hint_texts()
    assert len(texts) > 20  # the walk does find the hints
    bad = []
    for where, text in texts:
        for m in re.finditer(r"\bkagent ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text):
            name, sub = m.group(1), m.group(2)
            if name in _WORDS_AFTER_KAGENT:
                continue
            if name not in COMMANDS:
                bad.append(f"{where}: {m.group(0)!r}")
                continue
            cmd = root.get_command(ctx, name)
            if isinstance(cmd, click.Group) and sub and cmd.get_command(ctx, sub) is None:
                bad.append(f"{where}: {m.group(0)!r}")
    assert bad == []
