"""``kagent certs check [-o text|json]``: every certificate under ``<data>/pki`` with its
subject, issuer, SANs, not-after and days left."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from kagent.cli.app import AppContext

# exit code when a certificate is expired, expires within renewBefore, or is unreadable
EXIT_NEEDS_RENEWAL = 4


@click.group()
def certs() -> None:
    """Check every certificate's expiry."""


@certs.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def check(app: AppContext, output: str) -> int:
    """List every certificate under <data>/pki (and kubelet.conf's client certificate).

    \b
    Exit codes:
      0  every certificate is valid beyond spec.pki.renewBefore
      4  one is expired, expires within renewBefore, is not yet valid or is unreadable
         (also when the data dir holds no certificate at all)"""
    from kagent.pki.store import check_certs

    config = app.load_config()
    now = datetime.now(timezone.utc)
    found = check_certs(app.paths, now=now, renew_before=config.pki.renew_before)
    healthy = all(c.ok for c in found)
    if output == "json":
        doc = {"ok": healthy, "renew_before_days": config.pki.renew_before.total_seconds() / 86400,
               "certificates": [c.as_dict() for c in found]}
        click.echo(json.dumps(doc, indent=2))
    else:
        base = app.paths.data_dir
        rows = [("FILE", "SUBJECT", "ISSUER", "NOT AFTER", "DAYS", "STATE", "SANS")]
        for c in found:
            rel = str(c.file.relative_to(base)) if c.file.is_relative_to(base) else str(c.file)
            rows.append((rel, c.subject, c.issuer, c.not_after.strftime("%Y-%m-%d %H:%M") if c.not_after else "-",
                         "-" if c.days_left is None else str(c.days_left), str(c.state), ",".join(c.sans)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    return 0 if healthy else EXIT_NEEDS_RENEWAL
