"""`meters tariffs import|remove`: the registry's ``tariffs`` group plus the two commands that check a
tariff version against billing (sane price bounds, a test day priced for its accounts; no version a
settled day used is removed)."""
from __future__ import annotations

import click

from meters.cli_registry import tariffs
from meters.errors import MetersError
from meters.lake import open_lake
from meters.options import lake_option

__all__ = ["tariffs"]


@tariffs.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--id", "tariff_id", default=None, help="Tariff id to store under (default: urdb-<label>).")
@click.option("--ignore-unsupported", is_flag=True,
              help="Import the energy part of rates with demand charges etc.; omissions go to the tariff's notes.")
@lake_option
def tariffs_import(file, tariff_id, ignore_unsupported, lake_path):
    """Import an OpenEI URDB rate JSON (or one of our tariff files) into the lake's catalog. A version
    with prices outside the sane bounds, or that cannot price a test day for its accounts, is refused."""
    from meters.iotools.urdb import import_file

    from .tariff_check import import_tariffs

    lake = open_lake(lake_path)
    result = import_file(file, tariff_id=tariff_id, ignore_unsupported=ignore_unsupported)
    try:
        changed = import_tariffs(lake, result.tariffs)
    except MetersError as e:
        raise MetersError(f"{file}: {e}") from None
    for t in result.tariffs:
        click.echo("\n".join(t.describe()))
    for u in result.omitted:
        click.echo(f"warning: not modelled: {u}", err=True)
    click.echo(f"imported {len(result.tariffs)} tariff version(s) ({changed} new or changed)")


@tariffs.command("remove")
@click.argument("tariff_id")
@click.option("--version", "version", required=True, help="The version's effective_from date, YYYY-MM-DD.")
@lake_option
def tariffs_remove(tariff_id, version, lake_path):
    """Remove one version of TARIFF_ID that no settled billing day used (e.g. a bad import)."""
    import datetime as dt

    from .tariff_check import remove_version

    try:
        day = dt.date.fromisoformat(version)
    except ValueError:
        raise MetersError(f"--version {version!r} is not a date (YYYY-MM-DD)") from None
    remove_version(open_lake(lake_path), tariff_id, day)
    click.echo(f"removed tariff {tariff_id} version {day}")
