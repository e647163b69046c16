"""``meters import nem12|greenbutton|csv FILE --lake DIR``: real interval data into the lake."""
from __future__ import annotations

from pathlib import Path

import click

from .options import lake_option
from .errors import MetersError


def import_file(lake, fmt: str, path, *, show_progress: bool = False, **options) -> dict:
    """Parse ``path`` with the ``fmt`` reader and store it (see :func:`meters.iotools.store`)."""
    from .iotools import check_nonempty, store

    path = Path(path)
    if not path.exists():
        raise MetersError(f"{path}: no such file")
    if fmt == "nem12":
        from .iotools.nem12 import read_nem12
        tz = options.get("timezone")
        parsed = read_nem12(path, tz=_zone(tz) if tz else None)
    elif fmt == "greenbutton":
        from .iotools.greenbutton import read_greenbutton
        parsed = read_greenbutton(path, uom=options.get("uom"), power=options.get("multiplier"))
    elif fmt == "csv":
        from .iotools.csv import read_csv
        parsed = read_csv(path, timezone=options.get("timezone") or lake.timezone_name,
                          mapping=options.get("mapping"), ts_label=options.get("ts_label", "end"),
                          interval_s=options.get("interval_s"), utility=options.get("utility", "electricity"),
                          unit=options.get("unit"))
    else:
        raise MetersError(f"unknown import format {fmt!r}")
    check_nonempty(parsed, path)
    if not show_progress:
        return store(lake, parsed, fmt)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"importing {path.name}", total=parsed.series.num_rows)
        return store(lake, parsed, fmt, progress=lambda n: bar.advance(task, n))


def _zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetersError(f"unknown time zone {name!r}") from None


def _summary(path, r: dict) -> None:
    click.echo(f"{Path(path).name}: {r['rows']} rows for {r['meters']} meter(s) over {r['days']} day(s); "
               f"written {r['written']}, already in the lake {r['already_present']}, "
               f"repeated in the file {r['repeated_in_file']}; new meters {r['new_meters']}")
    for n in r["notes"]:
        click.echo(f"note: {n}")


def _open(lake_path):
    from .lake import Lake
    return Lake(lake_path)


@click.group("import")
def import_():
    """Import interval data from files (NEM12, Green Button, CSV). External ids (NMI/suffix, usage
    point, LCLid …) map to meter ids in the `meters` table; importing a file twice changes nothing."""


@import_.command("nem12")
@click.argument("file", type=click.Path(dir_okay=False))
@lake_option
@click.option("--timezone", help="Time zone of the file's dates (default NEM time, UTC+10).")
def nem12(file, lake_path, timezone):
    """Import an AEMO NEM12 interval file (100/200/300/400/500/900 records)."""
    lake = _open(lake_path)
    _summary(file, import_file(lake, "nem12", file, show_progress=True, timezone=timezone))


@import_.command("greenbutton")
@click.argument("file", type=click.Path(dir_okay=False))
@lake_option
@click.option("--uom", type=int, help="ESPI unit code for feeds whose ReadingType does not say (72 Wh, 169 therm, 42 m3).")
@click.option("--multiplier", type=int, help="Power-of-ten multiplier for feeds whose ReadingType does not say.")
def greenbutton(file, lake_path, uom, multiplier):
    """Import a Green Button (ESPI Atom XML) feed: IntervalBlocks with their reading quality."""
    lake = _open(lake_path)
    _summary(file, import_file(lake, "greenbutton", file, show_progress=True, uom=uom, multiplier=multiplier))


@import_.command("csv")
@click.argument("file", type=click.Path(dir_okay=False))
@lake_option
@click.option("--map", "maps", multiple=True, metavar="OURS=THEIRS",
              help="Rename a header: ts=tstp, external_id=LCLid, quantity=energy(kWh/hh) (repeatable).")
@click.option("--ts-label", type=click.Choice(["start", "end"]), default="end", show_default=True,
              help="Whether ts labels the start or the end of its interval.")
@click.option("--interval", "interval", help="Interval length (15m, 30m, 1h); default: inferred per meter.")
@click.option("--timezone", help="Time zone of timestamps without an offset (default: the lake's).")
@click.option("--utility", type=click.Choice(["electricity", "water", "gas", "heat"]), default="electricity",
              show_default=True, help="Utility of the file's meters.")
@click.option("--unit", help="Unit of the values (default: kWh for electricity and heat, m3 for water and gas).")
def csv_(file, lake_path, maps, ts_label, interval, timezone, utility, unit):
    """Import a CSV with meter_id or external_id, ts, and quantity or register columns (gzip ok)."""
    from .iotools import parse_interval
    from .iotools.csv import parse_mapping

    lake = _open(lake_path)
    r = import_file(lake, "csv", file, show_progress=True, mapping=parse_mapping(maps), ts_label=ts_label,
                    interval_s=parse_interval(interval) if interval else None, timezone=timezone,
                    utility=utility, unit=unit)
    _summary(file, r)

