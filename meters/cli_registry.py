"""`meters accounts import` and `meters tariffs list|show` (``tariffs import|remove`` check prices
against billing, so billing adds them: ``billing/cli_tariffs.py``)."""
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

    from .heating import builtin_heating
    from .tariffs import builtin_catalog

    if Path(lake_path, "lake.json").exists():
        return load_tariffs(open_lake(lake_path), heating=True)
    out = dict(builtin_heating())
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
