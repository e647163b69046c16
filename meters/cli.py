"""The ``meters`` command line: a thin click layer over the library API.

Commands of other stages are loaded lazily (``LAZY_COMMANDS``) so that ``meters --help`` stays fast
and a stage's heavy imports (numba, paho) load only when that stage runs.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from . import __version__
from .errors import MetersError
from .config import add_envvars, defaults_for, effective, find_config, inherited, load_config, section
from .options import echo_json, lake_option

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
    "check": "meters.cli_check:check",
    "bill": "billing.cli:bill",
    "pay": "accounts.cli:pay",
    "serve": "accounts.cli:serve",
    "channels": "accounts.cli:channels",
    "balance": "accounts.cli:balance",
    "notify": "delivery.cli:notify",
    "alerts": "delivery.cli:alerts",
}


class MetersGroup(click.Group):
    """A click group that loads lazy commands and turns :class:`MetersError` into one stderr line."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            cmd = getattr(importlib.import_module(module), attr)
        else:
            cmd = super().get_command(ctx, name)
        if cmd is not None:
            add_envvars(cmd, (name,))
        return cmd

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MetersError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=MetersGroup)
@click.version_option(__version__, prog_name="meters")
@click.option("--config", "config_path", envvar="METERS_CONFIG", default=None, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Configuration file (TOML; default $METERS_CONFIG, else ./meters.toml if it exists).")
@click.pass_context
def cli(ctx, config_path):
    """meters — read a city's smart meters over MQTT and bill them.

    The lake (a directory of Parquet tables) is shared by every command: `meters init` creates it.
    Every option is also read from $METERS_<COMMAND>_<OPTION>, $METERS_<OPTION> and the configuration
    file, in that order (docs/operations.md).
    """
    path = find_config(config_path)
    table = load_config(path) if path else {}
    ctx.meta["meters.config"] = (path, table)
    name = ctx.invoked_subcommand
    if table and name:
        cmd = ctx.command.get_command(ctx, name)
        ctx.default_map = {name: defaults_for(cmd, section(table, name), inherited(table),
                                              path.resolve().parent)}


@cli.group("config")
def config_():
    """Show the configuration: the file in use and where each option takes its value from."""


@config_.command("show")
@click.argument("command", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def config_show(ctx, command, as_json):
    """Show each option of COMMAND (e.g. `ingest`, `broker start`) with its value and its source
    (env, file, default); passwords and secrets are masked."""
    path, table = ctx.find_root().meta["meters.config"]
    cmd, sub_ctx, scalars, tab = cli, ctx.find_root(), inherited(table), table
    for name in command:
        cmd = cmd.get_command(sub_ctx, name) if isinstance(cmd, click.Group) else None
        if cmd is None:
            raise MetersError(f"no command {' '.join(command)!r}")
        sub_ctx = click.Context(cmd, parent=sub_ctx, info_name=name)
        tab = section(tab, name)
        scalars.update(inherited(tab))  # the keys of every enclosing table apply
    base = path.resolve().parent if path else Path.cwd()
    rows = effective(cmd, defaults_for(cmd, {}, scalars, base)) if command else []
    out = {"config_file": str(path.resolve()) if path else None, "options": rows}
    if as_json:
        echo_json(out)
        return
    click.echo(f"configuration file: {out['config_file'] or '(none)'}")
    for r in rows:
        click.echo(f"  {r['option']:24s} {r['value']!s:40s} {r['source']}")


@cli.command()
@lake_option
@click.option("--timezone", default="Asia/Shanghai", show_default=True,
              help="IANA time zone that defines billing days and months.")
def init(lake_path, timezone):
    """Create a lake (idempotent) with its time zone and the built-in tariff catalog."""
    from .lake import init_lake

    lake = init_lake(lake_path, timezone)
    click.echo(f"lake {lake.root} ready (time zone {lake.timezone_name})")
