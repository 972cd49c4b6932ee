"""The root click group. Commands are thin and loaded lazily so ``kagent --help`` stays fast:
heavy modules (cryptography, yaml, structlog renderers) are imported inside commands."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from kagent import __version__, log
from kagent.errors import ExitCode, KagentError
from kagent.paths import DEFAULT_DATA_DIR, DEFAULT_RUN_DIR

# command name -> "module:attribute"; one line per command, no discovery magic
COMMANDS: dict[str, str] = {
    "version": "kagent.cli.version:version",
    "config": "kagent.cli.config:config",
    "sysinfo": "kagent.cli.sysinfo:sysinfo",
    "controller": "kagent.cli.run:controller",
    "worker": "kagent.cli.run:worker",
    "kubectl": "kagent.cli.passthrough:kubectl",
    "ctr": "kagent.cli.passthrough:ctr",
    "status": "kagent.cli.status:status",
    "reload": "kagent.cli.status:reload",
    "kubeconfig": "kagent.cli.kubeconfig:kubeconfig",
    "certs": "kagent.cli.certs:certs",
    "etcd": "kagent.cli.etcd:etcd",
    "api": "kagent.cli.api:api",
    "pki-apply": "kagent.cli.pki_child:pki_apply",
    "token": "kagent.cli.token:token",
    "node": "kagent.cli.node:node",
    "reset": "kagent.cli.reset:reset",
    "backup": "kagent.cli.backup:backup",
    "restore": "kagent.cli.backup:restore",
    "bins": "kagent.cli.bins:bins",
    "install": "kagent.cli.service:install",
    "uninstall": "kagent.cli.service:uninstall",
    "start": "kagent.cli.service:start",
    "stop": "kagent.cli.service:stop",
}


# run by the agent itself, not by operators: callable, but not listed in --help
HIDDEN: frozenset[str] = frozenset({"api", "pki-apply"})


def register(name: str, target: str) -> None:
    COMMANDS[name] = target


class LazyGroup(click.Group):
    """Loads each command on first use and gives it the root options (``inject_root_options``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        inject_root_options(cmd)
        self.add_command(cmd, name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # help lists names and one-line summaries without importing every command module
        rows = [(name, _SUMMARIES.get(name, "")) for name in self.list_commands(ctx) if name not in HIDDEN]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# ---- root options after the subcommand ---------------------------------------------------
# k0s's persistent flags: `kagent controller --init -c F`, `kagent config validate -c F` and
# `kagent kubeconfig admin --data-dir D` mean what `kagent -c F controller --init` means. Every
# command the root loads (and every command of its subgroups, also ones loaded later) gets a
# copy of these options; their callbacks write into the one AppContext, and because click
# parses the root, then each subgroup, then the command, the value nearest the command wins.
# Commands that pass their arguments through to another tool (ignore_unknown_options: kubectl,
# ctr) get none: `kagent kubectl -v 6` is kubectl's -v. A command that defines one of these
# flags itself keeps its own.

_ROOT_OPTS_MARK = "_kagent_root_options"


def _root_option_specs() -> list[click.Option]:
    return [
        click.Option(["-c", "--config", "config"], metavar="FILE", expose_value=False, callback=_set_root_option,
                     help="Cluster config file ('-' = stdin); as the root option."),
        click.Option(["--data-dir"], metavar="DIR", expose_value=False, callback=_set_root_option,
                     help="Data dir; as the root option."),
        click.Option(["--run-dir"], metavar="DIR", expose_value=False, callback=_set_root_option,
                     help="Run dir; as the root option."),
        click.Option(["--log-format"], type=click.Choice(["console", "json"]), expose_value=False,
                     callback=_set_root_option, help="Log format; as the root option."),
        click.Option(["-v", "--verbose"], is_flag=True, default=False, expose_value=False, callback=_set_root_option,
                     help="Debug-level log events; as the root option."),
        click.Option(["--debug"], is_flag=True, default=False, expose_value=False, callback=_set_root_option,
                     help="Debug logs and tracebacks on errors; as the root option."),
    ]


def _set_root_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    from click.core import ParameterSource

    from kagent.cli.app import AppContext

    if ctx.get_parameter_source(param.name or "") != ParameterSource.COMMANDLINE:
        return  # not given here: the root's (or a nearer group's) value stands
    app = ctx.find_object(AppContext)
    if app is None:  # the command runs outside kagent's root (a test's CliRunner): nothing to set
        return
    _apply_root_option(app, str(param.name), value)


def _apply_root_option(app: Any, name: str, value: Any) -> None:
    if name == "config":
        app.config_arg = value
        app._config_loaded = False
    elif name in ("data_dir", "run_dir"):
        setattr(app, name, Path(value).absolute())
    elif name == "log_format":
        app.log_format = value
    elif name in ("verbose", "debug") and value:
        setattr(app, name, True)
        if name == "debug":
            _enable_debug()
    from kagent import log

    log.preset(fmt=app.log_format, verbose=app.verbose, debug=app.debug)


_debug = False  # --debug was given somewhere on the command line (or KAGENT_DEBUG=1)


def _enable_debug() -> None:
    global _debug
    _debug = True


def _is_passthrough(cmd: click.Command) -> bool:
    return bool(cmd.context_settings.get("ignore_unknown_options") or getattr(cmd, "ignore_unknown_options", False))


def inject_root_options(cmd: click.Command) -> None:
    """Give ``cmd`` (and, for a group, each of its commands, now and when loaded later) the
    root options. Idempotent."""
    if getattr(cmd, _ROOT_OPTS_MARK, False):
        return
    setattr(cmd, _ROOT_OPTS_MARK, True)
    if not _is_passthrough(cmd):
        taken = {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        names = {p.name for p in cmd.params}
        cmd.params.extend(o for o in _root_option_specs() if o.name not in names and not taken & {*o.opts})
    if isinstance(cmd, click.Group):
        for sub in list(cmd.commands.values()):
            inject_root_options(sub)
        loader = cmd.get_command

        def get_command(ctx: click.Context, name: str) -> click.Command | None:
            sub = loader(ctx, name)
            if sub is not None:
                inject_root_options(sub)
            return sub

        setattr(cmd, "get_command", get_command)  # this instance only


_SUMMARIES: dict[str, str] = {
    "version": "Print kagent's version and the component versions it targets.",
    "config": "Create, validate or explain the cluster config.",
    "sysinfo": "Preflight checks: kernel, cgroups, modules, binaries, ports.",
    "controller": "Run a controller node (etcd, apiserver, ... as supervised children).",
    "worker": "Run a worker node (containerd and kubelet).",
    "status": "Show the running agent and each component's state.",
    "reload": "Re-read the config and restart only the components that changed.",
    "kubeconfig": "Print the admin kubeconfig or create one for a user.",
    "certs": "Check every certificate's expiry.",
    "etcd": "List the etcd members, or leave the etcd cluster.",
    "token": "Create, list or invalidate join tokens (on a running controller).",
    "node": "List or remove the worker nodes that joined with a token.",
    "reset": "Stop leftovers, unmount and remove this node's data dir and run dir.",
    "backup": "Back up a controller (etcd snapshot or kine db, pki, manifests, images, config); backup list.",
    "restore": "Restore a backup into an empty data dir.",
    "bins": "Component binaries: list what is found (and its version), fetch the pinned release.",
    "install": "Install kagent controller|worker as a systemd or OpenRC service.",
    "uninstall": "Stop, disable and remove the installed kagent service.",
    "start": "Start the installed kagent service.",
    "stop": "Stop the installed kagent service.",
    "kubectl": "kubectl with the admin kubeconfig preset.",
    "ctr": "ctr with the containerd socket and the k8s.io namespace preset.",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config", metavar="FILE", envvar="KAGENT_CONFIG",
              help="Cluster config file ('-' = stdin). Default /etc/kagent/kagent.yaml if present. Env KAGENT_CONFIG.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="KAGENT_DATA_DIR", default=DEFAULT_DATA_DIR,
              show_default=True, help="Data dir. Env KAGENT_DATA_DIR.")
@click.option("--run-dir", type=click.Path(path_type=Path), envvar="KAGENT_RUN_DIR", default=DEFAULT_RUN_DIR,
              show_default=True, help="Run dir (pidfiles, sockets, lock). Env KAGENT_RUN_DIR.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default=None,
              help="Log format (default: console on a TTY, JSON lines otherwise).")
@click.option("-v", "--verbose", is_flag=True, help="Debug-level log events.")
@click.option("--debug", is_flag=True, help="Debug logs and tracebacks on errors.")
@click.version_option(__version__, "--version", prog_name="kagent")
@click.pass_context
def root(ctx: click.Context, config: str | None, data_dir: Path, run_dir: Path, log_format: str | None,
         verbose: bool, debug: bool) -> None:
    """kagent: turn this host into a Kubernetes node (k0s-style, one agent, supervised children)."""
    from kagent.cli.app import AppContext

    from kagent import log

    ctx.obj = AppContext(data_dir=data_dir.absolute(), run_dir=run_dir.absolute(), config_arg=config,
                         log_format=log_format, verbose=verbose, debug=debug)
    if debug:
        _enable_debug()
    log.preset(fmt=log_format, verbose=verbose, debug=debug)


def _multicall_argv(argv: list[str]) -> list[str]:
    """Invoked through a link named kubectl or ctr: behave as ``kagent kubectl|ctr``."""
    prog = Path(argv[0]).name if argv else "kagent"
    for tool in ("kubectl", "ctr"):
        if prog in (tool, f"kagent-{tool}"):
            return [tool, *argv[1:]]
    return argv[1:]


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def main(argv: list[str] | None = None) -> None:
    args = _multicall_argv(list(sys.argv if argv is None else argv))
    if os.environ.get("KAGENT_DEBUG") == "1":
        _enable_debug()
    try:
        try:
            rv: Any = root.main(args=args, prog_name="kagent", standalone_mode=False)
        finally:
            log.release()  # lines an agent command held come out before its error
    except KagentError as err:
        if _debug:
            _print_traceback()
        click.echo(err.render(), err=True)
        sys.exit(int(err.exit_code))
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.ClickException as err:
        err.show()
        sys.exit(int(ExitCode.USAGE) if isinstance(err, click.UsageError) else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        sys.exit(0)
    except Exception as err:  # a bug: say so, traceback only with --debug
        if _debug:
            _print_traceback()
        click.echo(f"error: internal: {type(err).__name__}: {err}", err=True)
        click.echo("hint: this is a bug in kagent; rerun with --debug for a traceback and report it", err=True)
        sys.exit(int(ExitCode.BUG))
    sys.exit(int(rv) if isinstance(rv, int) else 0)
