"""The application context every command gets in ``ctx.obj``: global options, and the
few loaders commands share (config, facts). Built once by the root group."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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

        return load_config(self.config_text(), host_address=self.facts().default_address, source=self.config_source())

    def reload_config(self) -> ClusterConfig:
        """Re-read the file (SIGHUP). Stdin configs cannot be re-read: the first text is reused."""
        if self.config_arg != "-":
            self._config_loaded = False
        return self.load_config()


def read_config_text(config_arg: str | None) -> str | None:
    if config_arg == "-":
        return sys.stdin.read()
    if config_arg is None:
        return DEFAULT_CONFIG.read_text() if DEFAULT_CONFIG.exists() else None
    path = Path(config_arg)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError("", f"file {path} does not exist", hint="pass an existing file with -c, or run `kagent config create > FILE`") from None
    except IsADirectoryError:
        raise ConfigError("", f"{path} is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError("", f"{path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text") from None


def env_default(name: str, fallback: str) -> str:
    return os.environ.get(name) or fallback
