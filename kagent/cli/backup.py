"""``kagent backup --save-path DIR|-``, ``kagent backup list [DIR]`` and
``kagent restore FILE|- [--config-out F]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
import click

from kagent.cli.app import AppContext
from kagent.errors import UsageError


@click.group(invoke_without_command=True)
@click.option("--save-path", metavar="DIR|-", help="Directory for the archive, or - for stdout.")
@click.pass_context
def backup(ctx: click.Context, save_path: str | None) -> int:
    """Back up this controller: an etcd snapshot (or the kine database), pki/, manifests/,
    images/ and the config, with a manifest of SHA-256 checksums, in one .tar.gz.

    Works while the controller runs (snapshot through etcd's API) and when it is stopped (a
    copy of etcd's db file, taken under the agent's lock)."""
    if ctx.invoked_subcommand is not None:
        if save_path is not None:
            raise UsageError("--save-path", f"is not used by `backup {ctx.invoked_subcommand}`")
        return 0
    if save_path is None:
        raise UsageError("--save-path", "is required", hint="pass a directory, or - to write the archive to stdout")
    from kagent.backup import backup_from_app

    app: AppContext = ctx.obj
    result = backup_from_app(app, save_path)
    for s in result.skipped:
        click.echo(f"skipped (not a regular file or directory): {s}", err=True)
    m = result.manifest
    files = sum(1 for e in m["entries"] if e["type"] == "file")
    summary = f"{m['storage']} snapshot ({m['snapshot']['kind']}), {files} files, {result.size} bytes"
    if result.path is None:
        click.echo(f"backup written to stdout: {summary}", err=True)
    else:
        click.echo(f"{result.path}: {summary}")
    return 0


@backup.command("list")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def list_cmd(app: AppContext, directory: Path | None, output: str) -> int:
    """List the backups in DIRECTORY (default: spec.backup.directory), oldest first."""
    from kagent.backup import list_backups

    if directory is None:
        spec = app.load_config().backup
        if spec is None:
            raise UsageError("DIRECTORY", "not given and the config has no spec.backup.directory",
                             hint="pass the directory: kagent backup list /var/backups/kagent")
        directory = Path(spec.directory)
    found = list_backups(directory)
    if output == "json":
        click.echo(json.dumps([{"path": str(x.path), "size": x.size, "created": x.created, "scheduled": x.scheduled}
                               for x in found], indent=2))
        return 0
    if not found:
        click.echo(f"no backups in {directory}")
    for x in found:
        click.echo(f"{x.created}  {x.size:>12}  {'scheduled' if x.scheduled else 'on-demand':9}  {x.path}")
    return 0


def _owner(user: str, is_root: bool) -> tuple[int, int] | None:
    """(uid, gid) of a component user that exists; None when not root (components then run as
    the agent's user) or when it does not exist yet (the agent creates it at its first start
    and applies the ownership plan then)."""
    import pwd

    if not is_root:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


@click.command()
@click.argument("archive", metavar="FILE|-")
@click.option("--config-out", type=click.Path(path_type=Path), default=None,
              help="Write the config stored in the archive to this (new) file.")
@click.pass_obj
def restore(app: AppContext, archive: str, config_out: Path | None) -> int:
    """Restore a backup into an empty data dir: etcd as a new single-member cluster (or the kine
    database), pki/, manifests/ and images/. The archive is verified in full (names, types,
    sizes, every SHA-256) before anything is written. Refused while an agent runs."""
    from kagent import backup as bk
    from kagent.config.load import load_config
    from kagent.node.facts import identity
    from kagent.urls import url_host

    paths = app.paths
    bk.refuse_if_running_or_not_empty(paths, config_out)
    spooled: Path | None = None
    try:
        if archive == "-":
            spooled = bk.spool(sys.stdin.buffer)
            path = spooled
        else:
            path = Path(archive)
            if not path.is_file():
                raise UsageError("FILE", f"{path} is not a file", hint="pass a backup archive, or - for stdin")
        verified = bk.verify_archive(path)
        cfg = (load_config(verified.config_text, host_address=lambda: app.facts().default_address,
                           source=f"{archive}:{bk.CONFIG_ENTRY}")
               if verified.config_text is not None else app.load_config())
        etcd = cfg.storage.etcd
        me = identity()  # the node name and root-ness: no interface scan
        target = bk.RestoreTarget(node_name=me.node_name, peer_url=f"https://{url_host(etcd.peer_address)}:{etcd.peer_port}",
                                  kine_data_source=cfg.storage.kine.data_source,
                                  etcd_user=_owner(cfg.users.etcd_user, me.is_root),
                                  kine_user=_owner(cfg.users.kine_user, me.is_root))
        result = bk.restore(paths, path, target, config_out=config_out, verified=verified)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    m = result.manifest
    click.echo(f"restored {m['storage']} backup of {m['created']} (cluster {m['cluster'].get('name')}) into {paths.data_dir}")
    if result.config_out is not None:
        click.echo(f"config written to {result.config_out}; start the controller with -c {result.config_out}")
    elif verified.config_text is not None:
        click.echo("the archive holds a config file: rerun with --config-out FILE into a fresh dir to get it, "
                   "or start the controller with your own -c")
    return 0
