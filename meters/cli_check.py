"""``meters check``: a thin click wrapper over :func:`meters.integrity.check_lake`."""
from __future__ import annotations

import json

import click

from .options import lake_option


@click.command("check")
@lake_option
@click.option("--repair", is_flag=True,
              help="Move corrupt files to <lake>/_quarantine/ (same relative path) and write the report there.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(lake_path, repair, as_json):
    """Verify the lake: every Parquet file readable (footer, pages, checksums), manifests, and balances
    re-adding from the ledger. Exit 6 when damage is found and not repaired."""
    from .errors import LakeDamaged
    from .integrity import check_lake
    from .lake import Lake

    report = check_lake(Lake(lake_path), repair=repair)
    click.echo(json.dumps(report.as_dict(), indent=2, default=str) if as_json else report.summary())
    if report.written:
        click.echo(f"report written to {', '.join(report.written)}", err=True)
    left = report.unrepaired
    if left:
        raise LakeDamaged(f"{len(left)} problem(s) left in {report.lake}, first: {left[0].kind} {left[0].path}")
