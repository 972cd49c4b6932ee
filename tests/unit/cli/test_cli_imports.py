"""``kagent --help`` stays fast because the CLI root imports no heavy module: checked in a fresh
interpreter (behaviour, not timing; the timing is bench/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, kagent_env

HEAVY = ("cryptography", "yaml", "structlog", "psutil")

PROBE = """
import json, os, sys
argv = sys.argv[1:]
if argv:
    from kagent.cli import main
    try:
        main(["kagent", *argv])
    except SystemExit:
        pass
else:
    import kagent.cli
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(os.environ["HEAVY"])))
print(json.dumps(heavy), file=sys.stderr)
"""


def heavy_imports(*argv: str) -> list[str]:
    env = kagent_env({"HEAVY": json.dumps(HEAVY)})
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    return json.loads(r.stderr.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_module() -> None:
    assert heavy_imports() == []


@pytest.mark.parametrize("argv", [("--help",), ("version",), ("version", "--json"), ("config", "--help"), ("sysinfo", "--help")])
def test_help_and_version_import_no_heavy_module(argv: tuple[str, ...]) -> None:
    assert heavy_imports(*argv) == []


def test_the_probe_does_see_heavy_imports() -> None:
    # the check above could pass vacuously; a command that loads the config must show yaml
    assert "yaml" in heavy_imports("config", "create")
