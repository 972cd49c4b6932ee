"""Root options (-c, --data-dir, --run-dir, --log-format, -v, --debug) work after the
subcommand at any depth, as k0s's persistent flags do, through one mechanism in kagent.cli;
the value nearest the command wins; passthrough commands keep their own flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, kagent_env, run_kagent

PROBE = """
import sys
from kagent.cli import main, register
register("probe", "tests.fixtures.cli_probe:probe")
main(["kagent", *sys.argv[1:]])
"""


def probe(*argv: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=kagent_env(),
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def good_config(tmp_path: Path) -> Path:
    f = tmp_path / "good.yaml"
    f.write_text("spec:\n  api:\n    address: 127.0.0.1\n")
    return f


@pytest.mark.parametrize("argv", [
    ("-c", "{f}", "config", "validate"),
    ("config", "-c", "{f}", "validate"),
    ("config", "validate", "-c", "{f}"),
    ("config", "validate", "--config", "{f}"),
    ("config", "validate", "--config={f}"),
])
def test_config_validate_takes_c_at_every_depth(good_config: Path, argv: tuple[str, ...]) -> None:
    r = run_kagent(*(a.format(f=good_config) for a in argv))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{good_config}: valid\n", "")


def test_the_value_nearest_the_command_wins(tmp_path: Path, good_config: Path) -> None:
    missing = tmp_path / "missing.yaml"
    r = run_kagent("-c", str(missing), "config", "validate", "-c", str(good_config))
    assert r.returncode == 0, r.stderr
    r = run_kagent("-c", str(good_config), "config", "-c", str(good_config), "validate", "-c", str(missing))
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == f"error: config: file {missing} does not exist"


def test_status_run_dir_after_the_subcommand(tmp_path: Path) -> None:
    r = run_kagent("status", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 4
    assert r.stderr.splitlines()[0] == f"error: {tmp_path / 'r' / 'status.sock'}: no kagent is running with this run dir"


def test_kubeconfig_admin_data_dir_after_the_subcommand(tmp_path: Path) -> None:
    r = run_kagent("kubeconfig", "admin", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 4
    assert f"{tmp_path / 'd'} holds no cluster CA" in r.stderr.splitlines()[0]
    assert not (tmp_path / "d").exists()


def test_controller_takes_c_and_data_dir_after_its_flags(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  api:\n    port: 70000\n")
    r = run_kagent("controller", "--init", "-c", str(bad), "--data-dir", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 3
    assert r.stderr.splitlines()[-2:] == [f"error: {bad}: spec.api.port: 70000 is not a TCP port (1-65535)",
                                          "hint: use a whole number from 1 to 65535, unquoted"]
    ok = tmp_path / "ok.yaml"
    ok.write_text("spec:\n  api:\n    address: 127.0.0.1\n")
    r = run_kagent("controller", "-c", str(ok), "--data-dir", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 4
    assert f"error: {tmp_path / 'd'}: holds no cluster (no pki/ca.crt)" in r.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def test_a_command_added_later_gets_every_root_option_at_any_depth(tmp_path: Path) -> None:
    d, r = tmp_path / "d", tmp_path / "r"
    got = probe("probe", "create", "--ttl", "2h", "-c", "x.yaml", "--data-dir", str(d), "--run-dir", str(r),
                "--log-format", "json", "-v", "--debug")
    assert got == {"config": "x.yaml", "data_dir": str(d), "run_dir": str(r), "log_format": "json",
                   "verbose": True, "debug": True}
    # a subgroup that loads its commands lazily: its commands get them too, nearest wins
    got = probe("--data-dir", "/root-level", "probe", "--data-dir", "/group-level", "nested", "late", "--data-dir", str(d))
    assert got["data_dir"] == str(d)
    got = probe("--data-dir", str(d), "probe", "nested", "late", "-o", "json")
    assert got["data_dir"] == str(d) and got["verbose"] is False


def test_a_relative_data_dir_after_the_subcommand_is_made_absolute(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, "probe", "create", "--data-dir", "rel"], capture_output=True,
                       text=True, env=kagent_env(), cwd=tmp_path, timeout=60)
    assert json.loads(r.stdout)["data_dir"] == str(tmp_path / "rel")


def test_passthrough_commands_keep_their_own_flags() -> None:
    from kagent.cli import inject_root_options
    from kagent.cli.passthrough import ctr, kubectl

    for cmd in (kubectl, ctr):
        inject_root_options(cmd)
        flags = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert not flags & {"-c", "-v", "--data-dir", "--debug"}, cmd.name


def test_a_commands_own_flag_is_not_shadowed() -> None:
    import click

    from kagent.cli import inject_root_options

    @click.command()
    @click.option("-v", "--version-of", "version_of")
    def own(version_of: str) -> None:
        pass

    inject_root_options(own)
    owners = [p.name for p in own.params if "-v" in getattr(p, "opts", [])]
    assert owners == ["version_of"]
    assert any("--data-dir" in getattr(p, "opts", []) for p in own.params)
