"""The config is read with bounds: not a regular file (a device, a FIFO without a writer, a
directory) is refused at once, more than 1 MiB is refused (also on stdin), exit 3 each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import kagent_cmd, kagent_env, run_kagent


def test_dev_zero_is_refused_at_once() -> None:
    r = run_kagent("config", "validate", "-c", "/dev/zero", timeout=20)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == "error: config: /dev/zero is not a regular file (a character device)"


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "kagent.yaml"
    os.mkfifo(fifo)
    r = run_kagent("config", "validate", "-c", str(fifo), timeout=20)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == f"error: config: {fifo} is not a regular file (a FIFO)"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    r = run_kagent("config", "validate", "-c", str(tmp_path), timeout=20)
    assert (r.returncode, r.stderr.splitlines()[0]) == (3, f"error: config: {tmp_path} is a directory, not a config file")


def test_a_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 110_000)  # 1.1 MB of comments: valid YAML, but not a config
    r = run_kagent("config", "validate", "-c", str(big), timeout=20)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == f"error: config: {big} is larger than 1024 KiB, too large for a config file"


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    head = "spec:\n  api:\n    address: 127.0.0.1\n"
    f.write_text(head + "#" * (1024 * 1024 - len(head) - 1) + "\n")
    r = run_kagent("config", "validate", "-c", str(f), timeout=20)
    assert r.returncode == 0, r.stderr


def test_stdin_over_one_mib_is_refused_also_when_endless() -> None:
    with open("/dev/zero", "rb") as zero:
        r = subprocess.run(kagent_cmd("config", "validate", "-c", "-"), stdin=zero, capture_output=True, text=True,
                           env=kagent_env(), timeout=20)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == "error: config: stdin is larger than 1024 KiB, too large for a config file"


def test_stdin_config_is_still_read() -> None:
    r = run_kagent("config", "validate", "-c", "-", input="spec:\n  api:\n    port: 7443\n")
    assert (r.returncode, r.stdout) == (0, "stdin: valid\n"), r.stderr


@pytest.mark.parametrize("text, first", [
    ("spec:\n  api:\n    address: api.example.com\n", "error: {f}: spec.api.address: 'api.example.com' is not an IP address"),
    ("spec:\n  api:\n    port: 02370\n", "error: {f}: spec.api.port: '02370' is a string, expected a TCP port number (1-65535)"),
    ("spec:\n  containerd:\n    extraConfig: 'x = '\n", "error: {f}: spec.containerd.extraConfig: is not valid TOML: "),
])
def test_config_validate_exit_3_with_the_dotted_path(tmp_path: Path, text: str, first: str) -> None:
    f = tmp_path / "k.yaml"
    f.write_text(text)
    r = run_kagent("config", "validate", "-c", str(f))
    assert r.returncode == 3
    assert r.stderr.splitlines()[0].startswith(first.format(f=f)), r.stderr
