"""What every command line shares: common options, JSON output, date arguments. A leaf module:
stage CLIs import it (never :mod:`meters.cli`, which only assembles the commands)."""
from __future__ import annotations

import json

import click

from .errors import MetersError
from .times import parse_date

lake_option = click.option("--lake", "lake_path", default="lake", show_default=True,
                           type=click.Path(file_okay=False), help="Lake directory (or an object-store URL such as s3://bucket/lake, see docs/object-storage.md).")

db_option = click.option("--db", "db", default=None, envvar="METERS_DB", metavar="URL",
                         help="Account store: postgresql://user@host:port/dbname (default: the lake's "
                              "accounts.db, SQLite). Also $METERS_DB.")


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def date_param(ctx, param, value):
    """A click callback: ``YYYY-MM-DD`` → date (a usage error otherwise)."""
    if value is None:
        return None
    try:
        return parse_date(value)
    except MetersError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
