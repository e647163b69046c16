"""``meters sql`` and ``meters report``: thin click wrappers over :mod:`meters.sql` and
:mod:`meters.reports`."""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import sys

import click

from .options import date_param, lake_option
from .reports import REPORTS, run_report
from .errors import MetersError

FORMATS = ("table", "csv", "json", "parquet")


def _plain(v):
    if isinstance(v, dt.datetime) and v.tzinfo is None and v.time() == dt.time():
        return v.date().isoformat()          # a DATE that pandas turned into a midnight timestamp
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v) if v == v.quantize(decimal.Decimal("0.01")) else str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dt.timedelta):
        return str(v)
    return v


def render(columns: list[str], rows: list[tuple], fmt: str, *, max_rows: int = 1000) -> str:
    """Text of a result in ``fmt`` (table, csv or json)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[_plain(v) for v in r] for r in rows])
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(columns, map(_plain, r))) for r in rows], indent=1, default=str) + "\n"
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows[:max_rows]:
        table.add_row(*["NULL" if v is None else str(_plain(v)) for v in r])
    buf = io.StringIO()
    Console(file=buf, width=max(100, 14 * len(columns)), color_system=None).print(table)
    more = len(rows) - max_rows
    plural = "" if len(rows) == 1 else "s"
    shown = f", {more} not shown: use --format csv or --out" if more > 0 else ""
    tail = f"({len(rows)} row{plural}{shown})\n"
    return buf.getvalue() + tail


def emit(rel, fmt: str, out: str | None, *, max_rows: int = 1000) -> None:
    """Write a relation's result in ``fmt`` to ``out`` (or stdout)."""
    from .sql import sql_error

    if rel is None:
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq
        from .sql import _to_arrow

        if not out:
            raise MetersError("--format parquet needs --out FILE")
        try:
            table = _to_arrow(rel)
        except Exception as e:  # duckdb errors raised lazily on fetch
            raise sql_error(e) from None
        pq.write_table(table, out)
        click.echo(f"wrote {out}", err=True)
        return
    columns = list(rel.columns)
    try:
        rows = rel.fetchall()
    except Exception as e:  # duckdb errors raised lazily on fetch
        raise sql_error(e) from None
    text = render(columns, rows, fmt, max_rows=max_rows)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {len(rows)} rows to {out}", err=True)
    else:
        click.echo(text, nl=False)


def shell(con, fmt: str, stdin=None, timeout: float | None = None) -> None:
    """A minimal interactive shell: statements end with ``;``; ``.tables`` lists the views,
    ``.quit`` (or end of input) leaves. An error (or a statement over ``timeout`` seconds) is
    printed and the shell goes on."""
    from .sql import run, time_limit

    def execute(text: str) -> None:
        try:
            with time_limit(con, timeout):
                emit(run(con, text), fmt, None)
        except MetersError as e:
            click.echo(f"error: {e}", err=True)

    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    click.echo("meters sql (read-only). End statements with ';'. .tables lists views, .quit leaves.")
    buf: list[str] = []
    while True:
        if interactive:
            click.echo("meters> " if not buf else "   ...> ", nl=False)
        line = stdin.readline()
        if not line:
            break
        s = line.strip()
        if not buf and s in (".quit", ".exit", "\\q"):
            break
        if not buf and s == ".tables":
            names = [r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                           "ORDER BY 1").fetchall()]
            click.echo(" ".join(names))
            continue
        if not s and not buf:
            continue
        buf.append(line)
        if s.endswith(";"):
            text, buf = "".join(buf), []
            execute(text)
    if "".join(buf).strip():
        execute("".join(buf))


@click.command("sql")
@lake_option
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format (parquet needs --out).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result to this file instead of stdout.")
@click.option("--max-rows", type=click.IntRange(1), default=1000, show_default=True,
              help="Rows shown by --format table.")
@click.option("--timeout", type=click.FloatRange(0), default=300, show_default=True,
              help="Seconds a statement may run before it is interrupted (0: no limit).")
@click.option("--memory-limit", default="50%", show_default=True,
              help="DuckDB memory limit: a size (4GB) or a share of the machine's RAM (50%).")
def sql(lake_path, query, fmt, out, max_rows, timeout, memory_limit):
    """Query the lake in SQL (DuckDB, read-only). Views: readings, deadletter, meters, accounts,
    contacts, tariffs, intervals, charges, bills, bill_lines, ledger, alerts (readings_raw keeps
    duplicates). Without QUERY, read statements from stdin (an interactive shell). Only the lake's
    files can be read (docs/security.md)."""
    from .lake import Lake
    from .sql import connect, run, time_limit

    if query is None and (fmt == "parquet" or out):
        raise MetersError("the interactive shell prints to the terminal: give a QUERY to use --out/parquet")
    con = connect(Lake(lake_path), memory_limit=memory_limit)
    try:
        if query is None:
            shell(con, fmt, timeout=timeout)
            return
        with time_limit(con, timeout):
            emit(run(con, query), fmt, out, max_rows=max_rows)
    finally:  # closed here, not at interpreter exit (where DuckDB's teardown can abort the process)
        con.close()


@click.command("report", help="Canned reports: " + ", ".join(f"{n} ({f.about})" for n, f in REPORTS.items()) + ".")
@click.argument("name", type=click.Choice(list(REPORTS)))
@lake_option
@click.option("--png", type=click.Path(dir_okay=False), help="Also save the report's chart as a PNG file.")
@click.option("--meter", type=int, help="Meter id (load-curve).")
@click.option("--month", help="Month YYYY-MM (tiers; default the latest billed month).")
@click.option("--from", "start", callback=date_param, help="First local day YYYY-MM-DD.")
@click.option("--to", "end", callback=date_param, help="Last local day YYYY-MM-DD (inclusive).")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="Rows of the top report.")
@click.option("--format", "fmt", type=click.Choice(FORMATS[:3]), default="table", show_default=True,
              help="Output format.")
def report(name, lake_path, png, meter, month, start, end, limit, fmt):
    from .lake import Lake
    r = run_report(Lake(lake_path), name, png=png, meter=meter, month=month, start=start, end=end, limit=limit)
    data = r.data.drop(columns=[c for c in ("series", "label") if c in r.data.columns])
    if fmt == "table":
        click.echo(r.title)
    rows = [tuple(None if _isna(v) else v for v in row) for row in data.itertuples(index=False, name=None)]
    click.echo(render(list(data.columns), rows, fmt), nl=False)
    for n in r.notes:
        click.echo(f"note: {n}", err=True)
    if png:
        click.echo(f"chart saved to {png}", err=True)


def _isna(v) -> bool:
    try:
        import pandas as pd
        return v is pd.NaT or (not isinstance(v, (str, bytes)) and bool(pd.isna(v)))
    except (TypeError, ValueError):
        return False
