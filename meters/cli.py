"""The ``meters`` command line: a thin click layer over the library API.

Commands of other stages are loaded lazily (``LAZY_COMMANDS``) so that ``meters --help`` stays fast
and a stage's heavy imports (numba, paho) load only when that stage runs.
"""
from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import MetersError
from .options import lake_option

# name -> "module:attribute" of a click command or group
LAZY_COMMANDS: dict[str, str] = {
    "broker": "meters.cli_broker:broker",
    "accounts": "accounts.cli:accounts",
    "tariffs": "billing.cli_tariffs:tariffs",
    "simulate": "simulator.cli:simulate",
    "sql": "meters.cli_sql:sql",
    "report": "meters.cli_sql:report",
    "import": "meters.cli_import:import_",
    "replay": "simulator.cli:replay",
    "demo": "meters.demo:demo",
    "ingest": "ingest.cli:ingest",
    "compact": "ingest.cli:compact",
    "bill": "billing.cli:bill",
    "pay": "accounts.cli:pay",
    "serve": "accounts.cli:serve",
    "channels": "accounts.cli:channels",
    "balance": "accounts.cli:balance",
}


class MetersGroup(click.Group):
    """A click group that loads lazy commands and turns :class:`MetersError` into one stderr line."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MetersError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=MetersGroup)
@click.version_option(__version__, prog_name="meters")
def cli():
    """meters — read a city's smart meters over MQTT and bill them.

    The lake (a directory of Parquet tables) is shared by every command: `meters init` creates it.
    """


@cli.command()
@lake_option
@click.option("--timezone", default="Asia/Shanghai", show_default=True,
              help="IANA time zone that defines billing days and months.")
def init(lake_path, timezone):
    """Create a lake (idempotent) with its time zone and the built-in tariff catalog."""
    from .lake import init_lake

    lake = init_lake(lake_path, timezone)
    click.echo(f"lake {lake.root} ready (time zone {lake.timezone_name})")
