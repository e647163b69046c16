"""`meters accounts import` and `meters tariffs list|show|import`."""
from __future__ import annotations

import click

from .options import echo_json, lake_option
from .errors import MetersError
from .lake import open_lake
from .registry import import_accounts, load_tariffs


@click.group()
def accounts():
    """The customer registry: accounts, their meters and contacts."""


@accounts.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@lake_option
def accounts_import(file, lake_path):
    """Import FILE.csv (all rows or none; importing the same file again changes nothing)."""
    result = import_accounts(open_lake(lake_path), file)
    click.echo(f"imported {result['accounts']} accounts and {result['contacts']} contacts "
               f"({result['accounts_changed']} accounts new or changed)")


@click.group()
def tariffs():
    """The tariff catalog: built-in Chinese residential tariffs plus imported ones."""


def _catalog(lake_path):
    from pathlib import Path

    from .tariffs import builtin_catalog

    if Path(lake_path, "lake.json").exists():
        return load_tariffs(open_lake(lake_path))
    out: dict = {}
    for t in builtin_catalog():
        out.setdefault(t.tariff_id, []).append(t)
    return out


@tariffs.command("list")
@lake_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def tariffs_list(lake_path, as_json):
    """List tariffs (the lake's catalog, or the built-in one when there is no lake)."""
    cat = _catalog(lake_path)
    rows = [{"tariff_id": tid, "utility": v[-1].utility, "unit": v[-1].unit, "currency": v[-1].currency,
             "versions": len(v), "effective_from": str(v[-1].effective_from), "description": v[-1].description}
            for tid, v in sorted(cat.items())]
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("tariff", "utility", "unit", "from", "description")
    for r in rows:
        table.add_row(r["tariff_id"], r["utility"], r["unit"], r["effective_from"], r["description"])
    Console().print(table)


@tariffs.command("show")
@click.argument("tariff_ids", nargs=-1)
@lake_option
def tariffs_show(tariff_ids, lake_path):
    """Show tiers, seasons, bands and prices of TARIFF_IDS (all when none given)."""
    cat = _catalog(lake_path)
    for tid in tariff_ids or sorted(cat):
        if tid not in cat:
            raise MetersError(f"unknown tariff {tid!r}; known: {', '.join(sorted(cat))}")
        for t in cat[tid]:
            click.echo("\n".join(t.describe()))
            click.echo()


@tariffs.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--id", "tariff_id", default=None, help="Tariff id to store under (default: urdb-<label>).")
@click.option("--ignore-unsupported", is_flag=True,
              help="Import the energy part of rates with demand charges etc.; omissions go to the tariff's notes.")
@lake_option
def tariffs_import(file, tariff_id, ignore_unsupported, lake_path):
    """Import an OpenEI URDB rate JSON (or one of our tariff files) into the lake's catalog. A version
    with prices outside the sane bounds, or that cannot price a test day for its accounts, is refused."""
    from billing.tariff_check import import_tariffs

    from .iotools.urdb import import_file

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

    from billing.tariff_check import remove_version

    try:
        day = dt.date.fromisoformat(version)
    except ValueError:
        raise MetersError(f"--version {version!r} is not a date (YYYY-MM-DD)") from None
    remove_version(open_lake(lake_path), tariff_id, day)
    click.echo(f"removed tariff {tariff_id} version {day}")
