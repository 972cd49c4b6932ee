"""``kagent install controller|worker``, ``kagent uninstall``, ``kagent start``, ``kagent stop``.

``install <role>`` takes every run flag of ``kagent <role>`` (the same click options, so a
flag added to the run command is installable at once) and writes only the flags given, as
``--name=value`` with paths made absolute, plus the root options that differ from their
defaults (``-c`` is loaded and checked first, ``--data-dir``, ``--run-dir``, ``--log-format``,
``-v``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from kagent.cli.app import AppContext

# run flags that make no sense in a service
_NOT_INSTALLED = {"init_only"}
# run-flag values that are paths (besides click.Path options): written absolute
_PATH_FLAGS = {"token_file", "log_dir", "kubelet_root_dir"}

_INIT = click.option("--init", "init_system", type=click.Choice(["systemd", "openrc"]), default=None,
                     help="The init system (default: detected).")


def _flag_name(p: click.Option) -> str:
    longs = [o for o in p.opts if o.startswith("--")]
    return longs[0] if longs else p.opts[0]


def render_run_flags(ctx: click.Context, params: list[click.Option], values: dict[str, Any]) -> list[str]:
    """The run flags given on this command line, in the order of the run command's options."""
    out: list[str] = []
    for p in params:
        name = p.name or ""
        if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            continue
        value = values.get(name)
        if p.is_flag:
            if value:
                out.append(_flag_name(p))
            continue
        for v in (tuple(value or ()) if p.multiple else (value,)):
            if v is None:
                continue
            text = str(v)
            if isinstance(p.type, click.Path) or name in _PATH_FLAGS:
                text = str(Path(text).absolute())
            out.append(f"{_flag_name(p)}={text}")
    return out


def _split_init(role: str, given: tuple[str, ...]) -> tuple[str | None, bool]:
    """(init system, whether the bare run flag --init was given) from the --init values."""
    from kagent.errors import UsageError

    systems = [v for v in given if v]
    bad = [v for v in systems if v not in ("systemd", "openrc")]
    if bad:
        raise UsageError("--init", f"{bad[0]!r} is not an init system", hint="write --init systemd or --init openrc")
    if len(set(systems)) > 1:
        raise UsageError("--init", f"given as both {systems[0]} and {systems[1]}")
    bare = "" in given
    if bare and role != "controller":
        raise UsageError("--init", "alone is a controller run flag", hint="pass --init systemd|openrc to pick the init system")
    return (systems[0] if systems else None), bare


def _root_flags(app: AppContext) -> list[str]:
    from kagent.errors import UsageError
    from kagent.paths import DEFAULT_DATA_DIR, DEFAULT_RUN_DIR

    out = []
    if app.config_arg is not None:
        if app.config_arg == "-":
            raise UsageError("-c", "a service cannot read its config from stdin", hint="pass a file: -c /etc/kagent/kagent.yaml")
        app.load_config()  # a bad config is exit 3 here, before anything is written
        out.append(f"--config={Path(app.config_arg).absolute()}")
    if app.data_dir != DEFAULT_DATA_DIR:
        out.append(f"--data-dir={app.data_dir}")
    if app.run_dir != DEFAULT_RUN_DIR:
        out.append(f"--run-dir={app.run_dir}")
    if app.log_format:
        out.append(f"--log-format={app.log_format}")
    if app.verbose:
        out.append("--verbose")
    return out


def _install_command(role: str) -> click.Command:
    from kagent.cli import run

    source: click.Command = getattr(run, role)
    run_params = [copy.copy(p) for p in source.params
                  if isinstance(p, click.Option) and p.expose_value and p.name not in (*_NOT_INSTALLED, "init")]

    @click.pass_context
    def callback(ctx: click.Context, /, **values: Any) -> int:
        from kagent.bins import self_argv
        from kagent.service.install import detect_init, install
        from kagent.service.render import Init, ServiceSpec, parse_env

        app: AppContext = ctx.find_object(AppContext)  # type: ignore[assignment]
        root: Path | None = values.pop("root")
        force, start = values.pop("force"), values.pop("start")
        env = values.pop("env")
        init_system, run_init = _split_init(role, values.pop("init_opt"))
        if root is not None and start:
            from kagent.errors import UsageError

            raise UsageError("--start", "cannot be used with --root", hint="--root only writes the file; start it on the host it is for")
        root = root.absolute() if root is not None else Path("/")
        init = Init(init_system) if init_system else detect_init(root)
        flags = [*_root_flags(app), *(["--init"] if run_init else []), *render_run_flags(ctx, run_params, values)]
        exe, *prefix = self_argv()
        spec = ServiceSpec(role=role, init=init, executable=Path(exe), prefix=tuple(prefix), args=tuple(flags),
                           env=parse_env(tuple(env)))
        unit = install(spec, root=root, force=force, start=start)
        click.echo(f"installed {unit.path} ({init})" + (", started" if start else ""))
        return 0

    own = [
        click.Option(["--force"], is_flag=True, help="Replace an existing unit."),
        click.Option(["--start"], is_flag=True, help="Start the service after installing it."),
        click.Option(["-e", "--env", "env"], multiple=True, metavar="NAME=VALUE",
                     help="Environment variable of the service (repeatable)."),
        # one --init for both meanings: `--init systemd|openrc` picks the init system, a bare
        # `--init` is the controller's run flag (create the cluster when the data dir holds none)
        click.Option(["--init", "init_opt"], multiple=True, is_flag=False, flag_value="", default=(),
                     metavar="[systemd|openrc]",
                     help="With a value: the init system (default: detected; with --root: from the prefix's files). "
                          "Bare (controller): the run flag --init, create the cluster when the data dir holds none."),
        click.Option(["--root"], type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Install into this prefix (DIR/etc/...) without calling the init system."),
    ]
    return click.Command(role, callback=callback, params=[*own, *run_params],
                         help=f"Install `kagent {role}` as a service, with the run flags given here.")


class _InstallGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["controller", "worker"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in ("controller", "worker"):
            return None
        if name not in self.commands:
            self.add_command(_install_command(name), name)
        return self.commands[name]


@click.group(cls=_InstallGroup)
def install() -> None:
    """Install kagent as a systemd or OpenRC service (kagentcontroller / kagentworker)."""


@click.command()
@_INIT
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Remove from this prefix without calling the init system.")
def uninstall(init_system: str | None, root: Path | None) -> int:
    """Stop, disable and remove the installed kagent service(s). Nothing installed is fine."""
    from kagent.service.install import remove_installed
    from kagent.service.render import Init

    removed = remove_installed(root.absolute() if root else Path("/"), Init(init_system) if init_system else None)
    for u in removed:
        click.echo(f"removed {u.path} ({u.init})")
    if not removed:
        click.echo("no kagent service installed", err=True)
    return 0


def _control(action: str) -> int:
    from kagent.service.install import control
    from kagent.service.render import Init

    app_init = click.get_current_context().params.get("init_system")
    u = control(action, Init(app_init) if app_init else None)
    click.echo(f"{action}: {u.name} ({u.init})")
    return 0


@click.command()
@_INIT
def start(init_system: str | None) -> int:
    """Start the installed kagent service (systemctl start waits until the node is up)."""
    return _control("start")


@click.command()
@_INIT
def stop(init_system: str | None) -> int:
    """Stop the installed kagent service."""
    return _control("stop")
