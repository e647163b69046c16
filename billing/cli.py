"""``meters bill`` and ``meters pay``: thin click wrappers over :mod:`billing.batch` and
:mod:`billing.payments`."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import click

from meters.options import echo_json, lake_option
from meters.times import parse_date, parse_instant
from meters.errors import MetersError


def _date(value: str | None, name: str) -> dt.date | None:
    return None if value is None else parse_date(value, name)


@click.command()
@lake_option
@click.option("--date", "date_", help="Billing day (lake-local), YYYY-MM-DD.")
@click.option("--from", "from_", help="First day of a range (with --to).")
@click.option("--to", "to_", help="Last day of a range (with --from).")
@click.option("--cluster", help="Map the run over meter shards with Dask: local:N (N worker processes) "
                                "or tcp://HOST:PORT (a scheduler whose workers see the lake).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def bill(lake_path, date_, from_, to_, cluster, as_json):
    """Run the nightly billing batch for one day (--date) or a range (--from/--to): VEE, tariff
    engine, prepaid settlement, alerts, postpaid bills. Re-running a day gives the same money."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from meters.lake import open_lake

    from .batch import bill_day, bill_range
    from .money_io import fmt

    day, first, last = _date(date_, "--date"), _date(from_, "--from"), _date(to_, "--to")
    if day is None and (first is None or last is None):
        raise MetersError("give --date D, or --from D1 --to D2")
    if day is not None and (first or last):
        raise MetersError("give either --date or --from/--to, not both")
    if day is None and last < first:
        raise MetersError(f"--to {last} is before --from {first}")
    lake = open_lake(lake_path)
    n_days = 1 if day else (last - first).days + 1
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]billing[/] {task.description}"), BarColumn(),
                   TextColumn("{task.completed:.0f}/{task.total:.0f} days"), TimeElapsedColumn(),
                   console=console, disable=as_json, transient=True)
    task = bar.add_task("", total=n_days)
    started = []

    def progress(d, phase):  # the bar appears once the run has passed its checks
        if not started:
            bar.start()
            started.append(True)
        bar.update(task, advance=1 if phase == "commit" else 0, description=f"{d} {phase}")

    try:
        results = (bill_day(lake, day, progress=progress, cluster=cluster) if day
                   else bill_range(lake, first, last, progress=progress, cluster=cluster))
    finally:
        if started:
            bar.stop()
    alerts = sum((r.alerts for r in results), Counter())
    vee = Counter()
    for r in results:
        vee.update({k: v for k, v in r.vee.items() if v})
    summary = {"days": [r.day.isoformat() for r in results], "accounts": results[-1].accounts if results else 0,
               "readings": sum(r.readings for r in results), "intervals": sum(r.intervals for r in results),
               "money": fmt(sum(r.money_cents for r in results)),
               "adjustments": fmt(sum(r.adjustments_cents for r in results)),
               "bills": sum(r.bills for r in results), "alerts": dict(sorted(alerts.items())),
               "vee": dict(sorted(vee.items())), "seconds": round(sum(r.seconds for r in results), 3)}
    if as_json:
        echo_json(summary)
        return
    t = Table(title=f"billing {summary['days'][0]}" + (f" … {summary['days'][-1]}" if len(results) > 1 else ""))
    t.add_column("item")
    t.add_column("value", justify="right")
    for k in ("accounts", "readings", "intervals", "money", "adjustments", "bills"):
        t.add_row(k, str(summary[k]))
    for k, v in summary["alerts"].items():
        t.add_row(f"alerts: {k}", str(v))
    for k, v in summary["vee"].items():
        t.add_row(f"VEE: {k}", str(v))
    t.add_row("time", f"{summary['seconds']:.2f} s")
    Console().print(t)


@click.command(context_settings={"ignore_unknown_options": True})  # AMOUNT may look like -5
@click.argument("account")
@click.argument("amount")
@click.option("--ref", required=True, help="Payment reference (applied once however often it is sent).")
@click.option("--at", "at", help="Payment time, ISO 8601 with offset (default now).")
@lake_option
def pay(account, amount, ref, at, lake_path):
    """Record a payment or top-up of AMOUNT to ACCOUNT (the user number) — e.g. a son paying for his
    mother. The nightly run credits it on the day it was paid."""
    from meters.lake import open_lake

    from .payments import pay as do_pay

    when = parse_instant(at, name="--at") if at else None
    r = do_pay(open_lake(lake_path), account, amount, ref, when)
    if r["status"] == "duplicate":
        click.echo(f"payment {r['ref']} was already applied ({r['amount']} to account {r['account_id']}); "
                   f"nothing changed")
    else:
        click.echo(f"paid {r['amount']} to account {r['account_id']} (ref {r['ref']}); balance {r['balance']}")
