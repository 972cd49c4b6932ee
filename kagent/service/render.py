"""Pure. The service files of ``kagent install``: a ``ServiceSpec`` (role, init system, the
kagent executable, its run flags, environment) rendered into the template text of the
top-level ``systemd/`` or ``openrc/`` folder. The one function is ``render_service``; the
edge (``service/install.py``) loads the template and writes the result.

Quoting is per target, so any argument survives exactly:

- systemd ``ExecStart=``: words in double quotes where needed, ``\\`` and ``"`` escaped, ``%``
  doubled (specifiers) and ``$`` doubled (systemd expands ``$VAR`` in ExecStart);
  ``Environment="NAME=VALUE"`` with the same escapes except ``$`` (not expanded there).
- OpenRC: ``command_args`` is evaluated again by ``openrc-run`` (``eval``), so each argument is
  single-quoted and the whole list is then double-quoted for the assignment itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from kagent.errors import UsageError


class Init(StrEnum):
    SYSTEMD = "systemd"
    OPENRC = "openrc"


ROLES = ("controller", "worker")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MARKER = re.compile(r"@[A-Z_]+@")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    role: str  # controller | worker
    init: Init
    executable: Path  # absolute path of the kagent (or its Python) that the service runs
    prefix: tuple[str, ...] = ()  # between the executable and the role: ("-m", "kagent") for a venv
    args: tuple[str, ...] = ()  # after the role: ("--data-dir=/srv/kagent", "--init", ...)
    env: tuple[tuple[str, str], ...] = ()  # -e NAME=VALUE, in the order given


def service_name(role: str) -> str:
    """``kagentcontroller`` / ``kagentworker`` (k0s: ``k0scontroller``)."""
    return f"kagent{role}"


def template_name(init: Init, role: str) -> str:
    """The file in the top-level ``systemd/`` or ``openrc/`` folder."""
    return f"{service_name(role)}.service" if init is Init.SYSTEMD else service_name(role)


def unit_relpath(init: Init, role: str) -> PurePosixPath:
    """Where the rendered file goes, relative to the root (``/`` or ``--root DIR``)."""
    if init is Init.SYSTEMD:
        return PurePosixPath("etc/systemd/system") / f"{service_name(role)}.service"
    return PurePosixPath("etc/init.d") / service_name(role)


def unit_mode(init: Init) -> int:
    return 0o644 if init is Init.SYSTEMD else 0o755


def parse_env(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``-e NAME=VALUE`` values -> pairs; UsageError naming the bad one."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise UsageError("-e", f"{item!r} is not NAME=VALUE", hint="write e.g. -e HTTPS_PROXY=http://proxy:3128")
        _check_text("-e", value)
        out.append((name, value))
    return tuple(out)


def _check_text(where: str, value: str) -> None:
    if any(c in value for c in "\n\r\0"):
        raise UsageError(where, f"{value!r} holds a newline or NUL, which a service file cannot carry")


def systemd_word(arg: str) -> str:
    """One ExecStart word that systemd splits back into exactly ``arg``."""
    esc = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if not arg or esc != arg or any(c.isspace() or c in "'\";" for c in arg):
        return f'"{esc}"'
    return esc


def systemd_env(name: str, value: str) -> str:
    esc = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{esc}"'


def sh_single(arg: str) -> str:
    """``arg`` single-quoted for a POSIX shell."""
    return "'" + arg.replace("'", "'\\''") + "'"


def sh_double(text: str) -> str:
    """``text`` double-quoted for a POSIX shell (``\\ " $ ` `` escaped)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def render_service(spec: ServiceSpec, template: str) -> str:
    """The unit file (systemd) or init script (OpenRC) text for ``spec``."""
    if spec.role not in ROLES:
        raise UsageError("role", f"{spec.role!r} is not one of {', '.join(ROLES)}")
    exe = str(spec.executable)
    if not spec.executable.is_absolute():
        raise UsageError("executable", f"{exe} is not an absolute path")
    for a in (exe, *spec.prefix, *spec.args):
        _check_text("run flags", a)
    words = [*spec.prefix, spec.role, *spec.args]
    if spec.init is Init.SYSTEMD:
        values = {
            "@EXECUTABLE@": exe.replace("%", "%%"),
            "@EXEC_START@": " ".join(systemd_word(w) for w in [exe, *words]),
            "@ENVIRONMENT@": "\n".join(systemd_env(k, v) for k, v in spec.env),
        }
    else:
        if any(c.isspace() for c in exe):
            raise UsageError("executable", f"{exe!r} holds whitespace, which openrc-run's $command cannot carry",
                             hint="move the executable to a folder whose path has no spaces")
        values = {
            "@EXPORTS@": "\n".join(f"export {k}={sh_single(v)}" for k, v in spec.env),
            "@COMMAND@": sh_single(exe),
            "@COMMAND_ARGS@": sh_double(" ".join(sh_single(w) for w in words)),
        }
    unknown = sorted(set(_MARKER.findall(template)) - set(values))
    if unknown:
        raise ValueError(f"template for {spec.init}/{spec.role} has unknown markers {unknown}")
    lines = []
    for line in template.splitlines():
        if line.strip() in values and not values[line.strip()]:
            continue  # an empty Environment/exports block leaves no blank line behind
        # one pass: a value that happens to look like a marker is never substituted again
        lines.append(_MARKER.sub(lambda m: values.get(m.group(0), m.group(0)), line))
    return "\n".join(lines) + "\n"
