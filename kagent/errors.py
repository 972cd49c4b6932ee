"""Pure. The one error tree of kagent and the exit codes it maps to.

    KagentError (exit 1)
    ├── UsageError          2  a flag or argument is wrong (click raises its own for parse errors)
    ├── ConfigError         3  the config file is invalid: names the dotted path and the value
    ├── PreconditionError   4  not root, already running, binary missing, bad token, no CA
    ├── ComponentError      5  a component failed to start or become healthy
    └── Interrupted       130  SIGINT during a one-shot command

Every error renders as ``error: <where>: <what>`` and, where useful, ``hint: <fix>``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BUG = 1
    USAGE = 2
    CONFIG = 3
    PRECONDITION = 4
    COMPONENT = 5
    INTERRUPTED = 130


class KagentError(Exception):
    """Base of every error kagent expects; anything else is a bug (exit 1)."""

    exit_code: ExitCode = ExitCode.BUG

    def __init__(self, where: str, what: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what
        self.hint = hint

    def render(self) -> str:
        lines = [f"error: {self.where}: {self.what}"]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UsageError(KagentError):
    exit_code = ExitCode.USAGE


class ConfigError(KagentError):
    """``where`` names the field: ``<source>: <dotted.path>`` when the file (or ``stdin``) is
    known (``located``), else ``config <dotted.path>``."""

    exit_code = ExitCode.CONFIG

    def __init__(self, path: str, what: str, *, hint: str | None = None, source: str | None = None) -> None:
        self.path = path
        self.source = source
        if source:
            where = f"{source}: {path}" if path and path != "(document)" else source
        else:
            where = f"config {path}" if path else "config"
        super().__init__(where, what, hint=hint)

    def located(self, source: str) -> ConfigError:
        """The same error naming the file it is in (an error that names one already is kept)."""
        return self if self.source else ConfigError(self.path, self.what, hint=self.hint, source=source)


class PreconditionError(KagentError):
    exit_code = ExitCode.PRECONDITION


class ComponentError(KagentError):
    exit_code = ExitCode.COMPONENT


class Interrupted(KagentError):
    exit_code = ExitCode.INTERRUPTED
