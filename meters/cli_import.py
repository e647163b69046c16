"""``meters import <reader> FILE --lake DIR``: real interval data into the lake, one subcommand per
reader of :data:`meters.iotools.readers.READERS` (its options come with it)."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import MetersError
from .iotools.readers import READERS
from .options import lake_option


def import_file(lake, fmt: str, path, *, show_progress: bool = False, **options) -> dict:
    """Parse ``path`` with the ``fmt`` reader and store it (see :func:`meters.iotools.store`)."""
    from .iotools import check_nonempty, store

    path = Path(path)
    if not path.exists():
        raise MetersError(f"{path}: no such file")
    if fmt not in READERS:
        raise MetersError(f"unknown import format {fmt!r}")
    parsed = READERS[fmt].read(path, lake_timezone=lake.timezone_name, **options)
    check_nonempty(parsed, path)
    if not show_progress:
        return store(lake, parsed, fmt)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"importing {path.name}", total=parsed.series.num_rows)
        return store(lake, parsed, fmt, progress=lambda n: bar.advance(task, n))


def _summary(path, r: dict) -> None:
    click.echo(f"{Path(path).name}: {r['rows']} rows for {r['meters']} meter(s) over {r['days']} day(s); "
               f"written {r['written']}, already in the lake {r['already_present']}, "
               f"repeated in the file {r['repeated_in_file']}; new meters {r['new_meters']}")
    for n in r["notes"]:
        click.echo(f"note: {n}")


def _open(lake_path):
    from .lake import Lake
    return Lake(lake_path)


@click.group("import", help=f"Import interval data from files ({', '.join(r.title for r in READERS.values())}). "
                            "External ids (NMI/suffix, usage point, LCLid …) map to meter ids in the `meters` "
                            "table; importing a file twice changes nothing.")
def import_():
    pass


def _click_option(o) -> click.Option:
    def convert(ctx, param, value):
        return o.convert(value) if value not in (None, ()) else None

    return click.Option([o.flag, o.name], type=click.Choice(list(o.choices)) if o.choices else o.type,
                        default=o.default, show_default=o.default is not None, multiple=o.multiple,
                        metavar=o.metavar, help=o.help, callback=convert if o.convert else None)


def _command(reader) -> click.Command:
    def run(file, lake_path, **options):
        _summary(file, import_file(_open(lake_path), reader.name, file, show_progress=True, **options))

    cmd = click.Command(reader.name, callback=run, help=reader.help,
                        params=[click.Argument(["file"], type=click.Path(dir_okay=False))])
    lake_option(cmd)
    cmd.params += [_click_option(o) for o in reader.options]
    return cmd


for _reader in READERS.values():
    import_.add_command(_command(_reader))
