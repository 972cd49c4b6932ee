"""``kagent version [--json]``."""

from __future__ import annotations

import json
import platform

import click

from kagent import __version__, versions


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json: bool) -> None:
    """Print kagent's version, Python's, and the component versions it targets."""
    info = {"kagent": __version__, "python": platform.python_version(), "components": dict(versions.COMPONENTS)}
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"kagent {__version__} (python {info['python']})")
    for name, ver in versions.COMPONENTS.items():
        click.echo(f"  {name:<13} {ver}")
