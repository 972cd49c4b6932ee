from __future__ import annotations

import pytest

from kagent.errors import (ComponentError, ConfigError, ExitCode, Interrupted, KagentError, PreconditionError,
                           UsageError)


@pytest.mark.parametrize(("cls", "code"), [
    (KagentError, 1), (UsageError, 2), (ConfigError, 3), (PreconditionError, 4), (ComponentError, 5), (Interrupted, 130)])
def test_exit_codes(cls: type[KagentError], code: int) -> None:
    err = cls("where", "what")
    assert int(err.exit_code) == code
    assert isinstance(err, KagentError)


def test_render_with_and_without_hint() -> None:
    assert PreconditionError("binary etcd", "not found", hint="install etcd").render() == (
        "error: binary etcd: not found\nhint: install etcd")
    assert ComponentError("etcd", "not healthy after 30s").render() == "error: etcd: not healthy after 30s"
    assert str(UsageError("--labels", "a=b=c is not key=value")) == "--labels: a=b=c is not key=value"


def test_config_error_names_the_dotted_path() -> None:
    err = ConfigError("spec.api.port", "70000 is not a TCP port (1-65535)")
    assert err.path == "spec.api.port"
    assert err.render() == "error: config spec.api.port: 70000 is not a TCP port (1-65535)"
    assert ConfigError("", "file x does not exist").render() == "error: config: file x does not exist"


def test_exit_code_values_are_the_design_contract() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 130]


def test_a_config_error_located_in_its_file_names_file_and_field() -> None:
    err = ConfigError("spec.api.port", "70000 is not a TCP port (1-65535)", hint="use 1-65535")
    located = err.located("/etc/kagent.yaml")
    assert located.render() == "error: /etc/kagent.yaml: spec.api.port: 70000 is not a TCP port (1-65535)\nhint: use 1-65535"
    assert located.located("other.yaml") is located  # an error that names its file keeps it
    assert ConfigError("(document)", "holds no config", source="stdin").render() == "error: stdin: holds no config"
