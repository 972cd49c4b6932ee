"""The application context every command gets in ``ctx.obj``: global options, and the
few loaders commands share (config, facts). Built once by the root group."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kagent.errors import ConfigError
from kagent.paths import DEFAULT_CONFIG, Paths

if TYPE_CHECKING:
    from kagent.config.model import ClusterConfig
    from kagent.node.facts import NodeFacts


@dataclass
class AppContext:
    data_dir: Path
    run_dir: Path
    config_arg: str | None  # None: the default path (optional); "-": stdin
    log_format: str | None = None
    verbose: bool = False
    debug: bool = False
    _facts: NodeFacts | None = field(default=None, repr=False)
    _config_text: str | None = field(default=None, repr=False)
    _config_loaded: bool = field(default=False, repr=False)

    @property
    def config_path(self) -> Path | None:
        if self.config_arg == "-":
            return None
        if self.config_arg is None:
            return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
        return Path(self.config_arg).absolute()

    @property
    def paths(self) -> Paths:
        cfg = self.config_path
        return Paths.build(self.data_dir, self.run_dir, cfg.parent if cfg else None)

    def facts(self) -> NodeFacts:
        if self._facts is None:
            from kagent.node.facts import gather

            self._facts = gather()
        return self._facts

    def config_text(self) -> str | None:
        """The config file's text, read once (stdin can only be read once). None: no file."""
        if not self._config_loaded:
            self._config_text = read_config_text(self.config_arg)
            self._config_loaded = True
        return self._config_text

    def config_source(self) -> str:
        if self.config_arg == "-":
            return "stdin"
        p = self.config_path
        return str(p) if p else "built-in defaults"

    def load_config(self) -> ClusterConfig:
        from kagent.config.load import load_config

        return load_config(self.config_text(), host_address=lambda: self.facts().default_address, source=self.config_source())

    def reload_config(self) -> ClusterConfig:
        """Re-read the file (SIGHUP). Stdin configs cannot be re-read: the first text is reused."""
        if self.config_arg != "-":
            self._config_loaded = False
        return self.load_config()


MAX_CONFIG_BYTES = 1024 * 1024  # a real config is a few KiB; more is a mistake or hostile


def read_config_text(config_arg: str | None) -> str | None:
    """The config's text, read with bounds: a path that is not a regular file (a device such
    as /dev/zero, a FIFO, a directory) is refused before reading, and a file or stdin larger
    than MAX_CONFIG_BYTES is refused after reading at most one byte more. ConfigError (exit 3)."""
    if config_arg == "-":
        return _decode(_read_bounded(sys.stdin.buffer.read, "stdin"), "stdin")
    if config_arg is None:
        return _read_file(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None
    return _read_file(Path(config_arg))


def _limit_error(what: str) -> ConfigError:
    return ConfigError("", f"{what} is larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a config file",
                       hint="pass the cluster config (a few KiB of YAML) with -c")


def _read_bounded(read: Callable[[int], bytes], what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_CONFIG_BYTES:
        chunk = read(min(65536, MAX_CONFIG_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > MAX_CONFIG_BYTES:
        raise _limit_error(what)
    return b"".join(chunks)


def _read_file(path: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once (and is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError("", f"file {path} does not exist", hint="pass an existing file with -c, or run `kagent config create > FILE`") from None
    except PermissionError:
        raise ConfigError("", f"{path} is not readable (permission denied)",
                          hint="run as root, or make the file readable by this user") from None
    except OSError as err:
        raise ConfigError("", f"{path} cannot be opened: {err.strerror}", hint="pass a readable config file with -c") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError("", f"{path} is a directory, not a config file", hint="pass the file inside it with -c, e.g. -c DIR/kagent.yaml")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("", f"{path} is not a regular file ({_kind(st.st_mode)})", hint="pass a config file with -c, or -c - to read stdin")
        if st.st_size > MAX_CONFIG_BYTES:
            raise _limit_error(str(path))
        os.set_blocking(fd, True)
        try:
            data = _read_bounded(lambda n: os.read(fd, n), str(path))
        except OSError as err:
            raise ConfigError("", f"{path} cannot be read: {err.strerror}", hint="pass a readable config file with -c") from None
    finally:
        os.close(fd)
    return _decode(data, str(path))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", f"{what} is not UTF-8 text", hint="save the config as UTF-8 (YAML is text)") from None


def env_default(name: str, fallback: str) -> str:
    return os.environ.get(name) or fallback
