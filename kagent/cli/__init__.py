"""The root click group. Commands are thin and loaded lazily so ``kagent --help`` stays fast:
heavy modules (cryptography, yaml, structlog renderers) are imported inside commands."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from kagent import __version__
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
    "api": "kagent.cli.api:api",
    "token": "kagent.cli.token:token",
    "node": "kagent.cli.node:node",
}


# run by the agent itself, not by operators: callable, but not listed in --help
HIDDEN: frozenset[str] = frozenset({"api"})


def register(name: str, target: str) -> None:
    COMMANDS[name] = target


class LazyGroup(click.Group):
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
        self.add_command(cmd, name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # help lists names and one-line summaries without importing every command module
        rows = [(name, _SUMMARIES.get(name, "")) for name in self.list_commands(ctx) if name not in HIDDEN]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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
    "token": "Create, list or invalidate join tokens (on a running controller).",
    "node": "List or remove the worker nodes that joined with a token.",
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
@click.option("-v", "--verbose", is_flag=True, help="More log output.")
@click.option("--debug", is_flag=True, help="Debug logs and tracebacks on errors.")
@click.version_option(__version__, "--version", prog_name="kagent")
@click.pass_context
def root(ctx: click.Context, config: str | None, data_dir: Path, run_dir: Path, log_format: str | None,
         verbose: bool, debug: bool) -> None:
    """kagent: turn this host into a Kubernetes node (k0s-style, one agent, supervised children)."""
    from kagent.cli.app import AppContext

    ctx.obj = AppContext(data_dir=data_dir.absolute(), run_dir=run_dir.absolute(), config_arg=config,
                         log_format=log_format, verbose=verbose, debug=debug)
    if debug:
        os.environ["KAGENT_DEBUG"] = "1"


def _multicall_argv(argv: list[str]) -> list[str]:
    """Invoked through a link named kubectl or ctr: behave as ``kagent kubectl|ctr``."""
    prog = Path(argv[0]).name if argv else "kagent"
    for tool in ("kubectl", "ctr"):
        if prog in (tool, f"kagent-{tool}"):
            return [tool, *argv[1:]]
    return argv[1:]


def main(argv: list[str] | None = None) -> None:
    args = _multicall_argv(list(sys.argv if argv is None else argv))
    debug = "--debug" in args or os.environ.get("KAGENT_DEBUG") == "1"
    try:
        rv: Any = root.main(args=args, prog_name="kagent", standalone_mode=False)
    except KagentError as err:
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
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: internal: {type(err).__name__}: {err}", err=True)
        click.echo("hint: this is a bug in kagent; rerun with --debug for a traceback and report it", err=True)
        sys.exit(int(ExitCode.BUG))
    sys.exit(int(rv) if isinstance(rv, int) else 0)
