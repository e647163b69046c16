"""``meters sql`` and ``meters report``: thin click wrappers over :mod:`meters.sql` (views),
:mod:`meters.sql_output` (streamed printing), :mod:`meters.sql_shell`, :mod:`meters.sql_export` and
:mod:`meters.reports`."""
from __future__ import annotations

import re
import sys

import click

from .errors import MetersError
from .options import date_param, lake_option
from .reports import REPORTS, run_report
from .sql_output import DEFAULT_TERMINAL_ROWS, FORMATS, render  # noqa: F401 - render: meters.demo prints with it


def _max_rows(fmt: str, out, max_rows: int | None) -> int | None:
    """Rows shown: --max-rows for table output, else 40 on a terminal, unlimited when piped or saved."""
    if fmt != "table":
        return None
    if max_rows is not None:
        return max_rows
    return DEFAULT_TERMINAL_ROWS if out is None and sys.stdout.isatty() else None


def print_query(con, query: str, fmt: str, out: str | None, max_rows: int | None) -> None:
    """Run ``query`` (one or more statements) and stream each result to ``out`` or stdout."""
    from .sql import run_each
    from .sql_output import print_result, save_parquet

    if fmt == "parquet":
        if not out:
            raise MetersError("--format parquet needs --out FILE")
        rels = [r for r in run_each(con, query) if r is not None]
        if len(rels) != 1:
            raise MetersError("--format parquet holds one result: give one statement that returns rows")
        n = save_parquet(rels[0], out)
        click.echo(f"wrote {n:,} rows to {out}", err=True)
        return
    shown = _max_rows(fmt, out, max_rows)
    stream = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout
    n = 0
    try:
        for rel in run_each(con, query):
            n += print_result(rel, fmt, stream, max_rows=shown)
            stream.flush()
    finally:
        if out:
            stream.close()
    if out:
        click.echo(f"wrote {n:,} rows to {out}", err=True)


@click.command("sql")
@lake_option
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format (ndjson: one JSON object per line; parquet needs --out).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result to this file instead of stdout.")
@click.option("--max-rows", type=click.IntRange(1), default=None,
              help=f"Rows shown by --format table, the rest counted [default: {DEFAULT_TERMINAL_ROWS} on a terminal, "
                   "all when piped or with --out].")
@click.option("--timeout", type=click.FloatRange(0), default=300, show_default=True,
              help="Seconds a statement may run before it is interrupted (0: no limit).")
@click.option("--memory-limit", default="50%", show_default=True,
              help="DuckDB memory limit: a size (4GB) or a share of the machine's RAM (50%).")
@click.option("--export", "export", type=click.Path(dir_okay=False),
              help="Write a DuckDB file (FILE.duckdb) holding only views over the lake's files, for other tools.")
@click.option("--relative-paths", is_flag=True,
              help="With --export: file paths relative to the export file's directory (default absolute).")
@click.pass_context
def sql(ctx, lake_path, query, fmt, out, max_rows, timeout, memory_limit, export, relative_paths):
    """Query the lake in SQL (DuckDB, read-only). Views: readings, deadletter, meters, accounts,
    contacts, tariffs, intervals, charges, bills, bill_lines, ledger, alerts (readings_raw keeps
    duplicates). Results stream as they come. Without QUERY, read statements from stdin (an interactive
    shell on a terminal; a script stops at the first error and exits 1). Only the lake's files can be
    read (docs/security.md)."""
    from .lake import Lake
    from .sql import connect

    if export:
        from .sql_export import export_duckdb

        if query is not None or out:
            raise click.UsageError("--export writes views only: give no QUERY and no --out")
        views = export_duckdb(Lake(lake_path), export, relative=relative_paths)
        click.echo(f"wrote {export}: {len(views)} views over the lake's files "
                   f"({'relative' if relative_paths else 'absolute'} paths; open it with duckdb -readonly)", err=True)
        return
    if relative_paths:
        raise click.UsageError("--relative-paths goes with --export")
    if query is None and (fmt == "parquet" or out):
        raise MetersError("the shell prints results to stdout: give a QUERY to use --out/parquet")
    con = connect(Lake(lake_path), memory_limit=memory_limit)
    try:
        if query is None:
            from .sql_shell import shell

            code = shell(con, fmt, timeout=timeout, max_rows=max_rows)
        else:
            from .sql import time_limit

            with time_limit(con, timeout):
                print_query(con, query, fmt, out, max_rows)
            code = 0
    finally:  # closed here, not at interpreter exit (where DuckDB's teardown can abort the process)
        con.close()
    ctx.exit(code)


def month_param(ctx, param, value):
    """A click callback: ``YYYY-MM`` with a real month (a usage error otherwise)."""
    if value is None:
        return None
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter(f"{value!r} is not a month YYYY-MM")
    return value


@click.command("report", help="Canned reports: " + ", ".join(f"{n} ({f.about})" for n, f in REPORTS.items()) + ".")
@click.argument("name", type=click.Choice(list(REPORTS)))
@lake_option
@click.option("--png", type=click.Path(dir_okay=False), help="Also save the report's chart as a PNG file.")
@click.option("--meter", type=int, help="Meter id (load-curve).")
@click.option("--month", callback=month_param, help="Month YYYY-MM (tiers, monthly; default the latest billed month).")
@click.option("--from", "start", callback=date_param, help="First local day YYYY-MM-DD.")
@click.option("--to", "end", callback=date_param, help="Last local day YYYY-MM-DD (inclusive).")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True,
              help="Rows of the top report (per utility and unit).")
@click.option("--format", "fmt", type=click.Choice(FORMATS[:4]), default="table", show_default=True,
              help="Output format.")
def report(name, lake_path, png, meter, month, start, end, limit, fmt):
    import pyarrow as pa

    from .lake import Lake
    from .sql_output import write_result

    if start and end and start > end:
        raise click.BadParameter(f"--from {start} is after --to {end}", param_hint="'--from'/'--to'")
    r = run_report(Lake(lake_path), name, png=png, meter=meter, month=month, start=start, end=end, limit=limit)
    data = r.data.drop(columns=[c for c in ("series", "label") if c in r.data.columns])
    if fmt == "table":
        click.echo(r.title)
    table = pa.Table.from_pandas(data, preserve_index=False)
    write_result(list(data.columns), iter(table.to_batches()), fmt, sys.stdout)
    for n in r.notes:
        click.echo(f"note: {n}", err=True)
    if png:
        click.echo(f"chart saved to {png}", err=True)
