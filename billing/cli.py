"""``meters bill``: thin click wrappers over :mod:`billing.batch` (``meters pay`` writes to the
account store: ``accounts/cli.py``)."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import click

from meters.options import echo_json, lake_option
from meters.times import parse_date
from meters.errors import MetersError

from .config import BLOCK_SIZE


def _date(value: str | None, name: str) -> dt.date | None:
    return None if value is None else parse_date(value, name)


@click.group(invoke_without_command=True)
@lake_option
@click.option("--date", "date_", help="Billing day (lake-local), YYYY-MM-DD.")
@click.option("--from", "from_", help="First day of a range (with --to).")
@click.option("--to", "to_", help="Last day of a range (with --from).")
@click.option("--through", "through", help="Without --date/--from: catch up only through this day "
                                            "(default yesterday in the lake's time zone).")
@click.option("--allow-estimates", is_flag=True, help="Bill a day whose readings cover fewer meters than "
                                                      "the minimum (billing.json min_coverage, default 95 %); "
                                                      "its bills and alerts say they are estimated.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another run holding the billing lock (then exit 5).")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write Prometheus metrics of the run here (node_exporter textfile format, atomically).")
@click.option("--cluster", help="Map the run over meter shards with Dask: local:N (N worker processes) "
                                "or tcp://HOST:PORT (a scheduler whose workers see the lake).")
@click.option("--db", "db", default=None, envvar="METERS_DB", metavar="URL",
              help="The account store to read payments and settings from: postgresql://… (default: the "
                   "lake's accounts.db when it has one). Also $METERS_DB.")
@click.option("--block-size", type=click.IntRange(min=1), default=BLOCK_SIZE, show_default=True, metavar="N",
              help="Accounts billed at a time (the night's memory is bounded by it; the unit --cluster "
                   "distributes).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def bill(ctx, lake_path, date_, from_, to_, through, allow_estimates, wait, metrics_file, cluster, db, block_size,
         as_json):
    """Run the nightly billing batch: every unsettled day up to yesterday (lake time, or --through D),
    one day (--date) or a range (--from/--to): VEE, tariff engine, prepaid settlement, alerts, postpaid
    bills. Re-running a day gives the same money. Exit status: 0 done, 3 nothing to do, 4 data not
    ready, 5 busy, 6 lake damaged (docs/operations.md). Subcommands: status, reset."""
    if ctx.invoked_subcommand is not None:
        return
    import time

    from meters.lake import open_lake

    day, first, last = _date(date_, "--date"), _date(from_, "--from"), _date(to_, "--to")
    until = _date(through, "--through")
    if (first is None) != (last is None):
        raise MetersError("give --from and --to together")
    if day is not None and first is not None:
        raise MetersError("give either --date or --from/--to, not both")
    if until is not None and (day or first):
        raise MetersError("--through goes with a catch-up run (no --date, --from or --to)")
    if first is not None and last < first:
        raise MetersError(f"--to {last} is before --from {first}")
    t0 = time.monotonic()
    results, code, lake = [], 1, None
    try:
        lake = open_lake(lake_path)
        results = _run(lake, day, first, last, until, allow_estimates, wait, cluster, as_json, db, block_size)
        code = 0
    except MetersError as e:
        code = e.exit_code
        raise
    finally:
        if metrics_file:
            _write_metrics(metrics_file, lake, results, code, time.monotonic() - t0)
    _print_summary(results, as_json)


def _run(lake, day, first, last, until, allow_estimates, wait, cluster, as_json, db=None, block_size=BLOCK_SIZE):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .batch import bill_day, bill_due, bill_range

    n_days = 1 if day else (last - first).days + 1 if first else None
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]billing[/] {task.description}"), BarColumn(),
                   TextColumn("{task.completed:.0f} days"), TimeElapsedColumn(),
                   console=console, disable=as_json or not console.is_terminal, transient=True)
    task = bar.add_task("", total=n_days)
    started = []

    def progress(d, phase):  # the bar appears once the run has passed its checks
        if not started:
            bar.start()
            started.append(True)
        bar.update(task, advance=1 if phase == "commit" else 0, description=f"{d} {phase}")

    kw = dict(progress=progress, cluster=cluster, allow_estimates=allow_estimates, wait=wait, db=db,
              block_size=block_size)
    try:
        if day:
            return bill_day(lake, day, **kw)
        if first:
            return bill_range(lake, first, last, **kw)
        return bill_due(lake, until, **kw)
    finally:
        if started:
            bar.stop()


def _write_metrics(path, lake, results, code, seconds):
    from . import metrics
    from .state import settled_days

    last_end = None
    if lake is not None:
        days = settled_days(lake)
        last_end = lake.day_bounds_utc(days[-1])[1] if days else None
    metrics.write(path, results, exit_code=code, seconds=seconds, last_settled_end=last_end)


def _print_summary(results, as_json):
    from rich.console import Console
    from rich.table import Table

    from .money_io import fmt

    alerts = sum((r.alerts for r in results), Counter())
    vee = Counter()
    for r in results:
        vee.update({k: v for k, v in r.vee.items() if v})
    summary = {"days": [r.day.isoformat() for r in results], "accounts": results[-1].accounts if results else 0,
               "readings": sum(r.readings for r in results), "intervals": sum(r.intervals for r in results),
               "money": fmt(sum(r.money_cents for r in results)),
               "adjustments": fmt(sum(r.adjustments_cents for r in results)),
               "bills": sum(r.bills for r in results), "alerts": dict(sorted(alerts.items())),
               "vee": dict(sorted(vee.items())), "seconds": round(sum(r.seconds for r in results), 3),
               "coverage": {r.day.isoformat(): round(r.coverage, 4) for r in results},
               "estimated_days": [r.day.isoformat() for r in results if r.estimated]}
    if as_json:
        echo_json(summary)
        return
    t = Table(title=f"billing {summary['days'][0]}" + (f" … {summary['days'][-1]}" if len(results) > 1 else ""))
    t.add_column("item")
    t.add_column("value", justify="right")
    for k in ("accounts", "readings", "intervals", "money", "adjustments", "bills"):
        t.add_row(k, str(summary[k]))
    t.add_row("coverage (lowest)", f"{min(r.coverage for r in results):.1%}")
    if summary["estimated_days"]:
        t.add_row("ESTIMATED days", ", ".join(summary["estimated_days"]))
    for k, v in summary["alerts"].items():
        t.add_row(f"alerts: {k}", str(v))
    for k, v in summary["vee"].items():
        t.add_row(f"VEE: {k}", str(v))
    t.add_row("time", f"{summary['seconds']:.2f} s")
    Console().print(t)


@bill.command("status")
@lake_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def bill_status(lake_path, as_json):
    """Where billing stands: last settled day, billing start, the run in flight, the next day and the
    share of meters its readings cover, the last run."""
    from meters.lake import open_lake

    from .status import status

    st = status(open_lake(lake_path))
    if as_json:
        echo_json(st)
        return
    cov = st["next_day_coverage"]
    lines = [f"lake {st['lake']} ({st['timezone']})",
             f"billing start      {st['billing_start'] or '-'}",
             f"last settled day   {st['last_settled'] or '-'}",
             f"unsettled days     {st['unsettled_through_yesterday']} (through yesterday, {st['yesterday']})"]
    if cov:
        share = f"{cov['share']:.1%}" if cov["share"] is not None else "-"
        lines.append(f"next day           {st['next_day']} ({'ended' if st['next_day_ended'] else 'not ended'}): "
                     f"readings for {cov['with_readings']} of {cov['meters']} meters ({share}, minimum "
                     f"{st['min_coverage']:.0%})")
    if st["in_flight"]:
        from .runlock import describe
        lines.append(f"run in flight      {describe(st['in_flight'])}")
    if st["interrupted"]:
        lines.append(f"INTERRUPTED        the run of {st['interrupted']} did not commit; re-run it")
    if st["last_run"]:
        r = st["last_run"]
        lines.append(f"last run           {r['day']} {r['outcome']} by {r['who']} at {r['finished_at']} "
                     f"(money {r['money']}, coverage {r['coverage']})")
    click.echo("\n".join(lines))


@bill.command("reset")
@click.option("--before", "before", required=True,
              help="The new billing start, YYYY-MM-DD: days before it are never billed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for a billing run holding the lock.")
@click.option("--db", "db", default=None, envvar="METERS_DB", metavar="URL",
              help="The account store whose settled days are forgotten too (default: the lake's accounts.db).")
@lake_option
def bill_reset(before, yes, wait, db, lake_path):
    """Move the billing start of a lake that has issued no bill yet (operator): what billing wrote is
    removed (runs stay as the audit) and the next run starts on --before with opening balances."""
    from meters.lake import open_lake

    from .status import reset

    day = _date(before, "--before")
    lake = open_lake(lake_path)
    if not yes:
        click.confirm(f"Remove every billing output of {lake.root} and start billing on {day}?", abort=True,
                      err=True)
    r = reset(lake, day, wait=wait, db=db)
    click.echo(f"billing start is now {r['billing_start']} (was {r['previous_start'] or 'not set'}); "
               f"{r['days_removed']} billed day(s) removed")
