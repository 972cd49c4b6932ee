from tests.conftest import run_kagent


def test_help_lists_commands_and_exits_zero():
    r = run_kagent("--help")
    assert r.returncode == 0
    assert "version" in r.stdout and "config" in r.stdout


def test_unknown_command_is_usage_error():
    r = run_kagent("no-such-command")
    assert r.returncode == 2
    assert "No such command" in r.stderr


def test_missing_config_file_is_exit_3_naming_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    r = run_kagent("-c", str(missing), "config", "validate")
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == f"error: config: file {missing} does not exist"
    assert r.stderr.splitlines()[1].startswith("hint: ")
