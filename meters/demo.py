"""``meters demo``: the whole pipeline on an embedded default, end to end.

A managed Mosquitto on a free loopback port, a fresh lake (a temporary directory or ``--lake``), a
seeded small city (default 10k meters, 3 days of 15-minute registers, with faults) published over MQTT
while one ingest worker writes the lake; then compaction, the nightly billing of each day, and a summary
read back from the lake with the same SQL views analysts use. The lake is left for ``meters sql``.
"""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import click

from .errors import MetersError

DEFAULT_FAULTS = ("lost=0.001,duplicate=0.01,late=0.005,spike=0.0005,rollover=0.01,replacement=0.005,"
                  "skew=0.01,malformed=0.01")

QUERY_DAILY = """SELECT c.day, m.utility, count(*) AS accounts, round(sum(c.quantity), 1) AS quantity,
       sum(c.amount) AS amount
FROM charges c JOIN accounts a USING (account_id) JOIN meters m USING (meter_id)
GROUP BY ALL ORDER BY c.day, m.utility"""
QUERY_TOP = """SELECT a.account_id, m.utility, a.mode, round(sum(c.quantity), 1) AS quantity, sum(c.amount) AS amount
FROM charges c JOIN accounts a USING (account_id) JOIN meters m USING (meter_id)
GROUP BY ALL ORDER BY amount DESC, a.account_id LIMIT 5"""


def _echo(out, text=""):
    (out or click.echo)(text)


def default_first_day(today: dt.date, days: int) -> dt.date:
    """The demo's first day when none is given: ``days`` days that end the day before yesterday, so every
    simulated reading has arrived and every billed day has ended."""
    return today - dt.timedelta(days=days + 1)


def run_demo(lake_path: str | Path | None = None, *, meters: int = 10_000, days: int = 3, interval: str = "15m",
             faults: str = DEFAULT_FAULTS, seed: int = 1, start: dt.date | None = None, out=None,
             show_progress: bool = True, serve: bool = False) -> dict:
    """Run the demo; print through ``out`` (default click.echo); return the figures it printed."""
    from billing.batch import bill_day
    from ingest.compact import compact

    from .lake import CONFIG_NAME, init_lake
    from .nightly_inputs import open_nightly_store
    from .sql import connect, run

    if meters < 1 or days < 1:
        raise MetersError("--meters and --days must be at least 1")
    t_all = time.monotonic()
    root = Path(lake_path) if lake_path else Path(tempfile.mkdtemp(prefix="meters-demo-")) / "lake"
    if (root / CONFIG_NAME).exists() and any((root / "readings").glob("day=*")):
        raise MetersError(f"{root} already holds readings; the demo needs a fresh lake (omit --lake for a temporary one)")
    lake = init_lake(root)
    first = start or default_first_day(dt.datetime.now(lake.tz).date(), days)
    if first + dt.timedelta(days=days) > dt.datetime.now(lake.tz).date():
        raise MetersError(f"--start {first} with --days {days} reaches today or later in {lake.timezone_name}; "
                          f"the demo bills only days that have ended")
    broker_dir = Path(tempfile.mkdtemp(prefix="meters-demo-broker-"))
    _echo(out, f"meters demo: {meters:,} meters, {days} day(s) from {first} at {interval}, faults {faults or 'none'}")
    _echo(out, f"lake: {lake.root}")
    try:
        sim, result, t_ingest = _simulate_and_ingest(lake, broker_dir, meters, first, days, interval, seed, faults,
                                                     show_progress, out)
    finally:
        shutil.rmtree(broker_dir, ignore_errors=True)
    _echo(out, f"simulated and published {sim['readings']:,} readings in {sim['messages']:,} messages; "
               f"ingested {result['written']:,} readings, {result['deadlettered']:,} dead letters "
               f"in {t_ingest:.1f} s")
    if sim.get("heat"):
        h = sim["heat"]
        _echo(out, f"heating season: {h['meters']:,} heat meters on {h['concentrators']:,} concentrators published "
                   f"{h['readings']:,} more readings ({h['energy_kwh']:,.0f} kWh of heat)")
    done = [r for r in compact(lake) if not r.skipped]
    _echo(out, f"compacted {len(done)} day partition(s): {sum(r.duplicates for r in done):,} duplicate readings dropped")
    night = open_nightly_store(lake, create=True)   # billing reads accounts, contacts and payments from it
    if night is not None:
        night.close()
        _echo(out, f"account store: {lake.root / 'accounts.db'} (the registry adopted; `meters serve` answers from it)")
    receiver = _alert_receiver(lake)
    t0 = time.monotonic()
    results = []
    for i in range(days):
        results.extend(bill_day(lake, first + dt.timedelta(days=i)))
    t_bill = time.monotonic() - t0
    vee = Counter()
    alerts = Counter()
    for r in results:
        vee.update({k: v for k, v in r.vee.items() if v})
        alerts.update(r.alerts)
    con = connect(lake)
    one = lambda q: run(con, q).fetchall()[0]  # noqa: E731
    n_readings, n_meters = one("SELECT count(*), count(DISTINCT meter_id) FROM readings")
    n_dead, = one("SELECT count(*) FROM deadletter")
    money, = one("SELECT coalesce(sum(amount), 0) FROM charges")
    quantity = dict(run(con, "SELECT coalesce(m.unit, '?'), sum(c.quantity) FROM charges c LEFT JOIN accounts a "
                             "USING (account_id) LEFT JOIN meters m USING (meter_id) GROUP BY 1 ORDER BY 1").fetchall())
    n_alerts, = one("SELECT count(*) FROM alerts")
    by_kind = run(con, "SELECT kind, count(*) FROM alerts GROUP BY kind ORDER BY count(*) DESC, kind").fetchall()
    est, = one("SELECT count(*) FILTER (WHERE quality <> 'actual') FROM intervals")
    samples = run(con, "SELECT kind, account_id, recipient, message FROM alerts "
                       "ORDER BY kind = 'data_gap', kind, ts, account_id, recipient LIMIT 2").fetchall()
    from .cli_sql import render

    _echo(out)
    _echo(out, f"billing: {days} day(s) in {t_bill:.1f} s")
    _echo(out, f"  readings in the lake   {n_readings:,} from {n_meters:,} meters (deduplicated)")
    _echo(out, f"  dead letters           {n_dead:,}")
    _echo(out, "  VEE                    " + (", ".join(f"{k} {v:,}" for k, v in sorted(vee.items())) or "nothing to fix")
          + f"; estimated intervals {est:,}")
    _echo(out, f"  money billed           {money:,.2f} CNY for "
          + (", ".join(f"{q:,.1f} {u}" for u, q in quantity.items()) or "nothing"))
    _echo(out, f"  alerts                 {n_alerts:,}" + (" (" + ", ".join(f"{k} {v:,}" for k, v in by_kind) + ")"
                                                          if by_kind else ""))
    for kind, account, recipient, message in samples:
        _echo(out, f"    [{kind}] to {recipient} ({account}): {message}")
    delivered = _show_delivery(lake, receiver, out)
    for title, q in (("daily charges by utility", QUERY_DAILY), ("top 5 accounts by amount", QUERY_TOP)):
        rel = run(con, q)
        _echo(out)
        _echo(out, f"SQL — {title}:")
        _echo(out, q)
        _echo(out, render(list(rel.columns), rel.fetchall(), "table").rstrip("\n"))
    _echo(out)
    _echo(out, f"done in {time.monotonic() - t_all:.0f} s. The lake stays at {lake.root}; try:")
    _echo(out, f"  meters sql --lake {lake.root} \"SELECT kind, count(*) FROM alerts GROUP BY kind\"")
    _echo(out, f"  meters report daily --lake {lake.root} --png daily.png")
    pages = _pages(lake, out, serve)
    return {"pages": pages, "lake": str(lake.root), "published": sim["readings"], "ingested": result["written"],
            "deadlettered": result["deadlettered"], "readings": n_readings, "meters": n_meters,
            "deadletter": n_dead, "vee": dict(vee), "estimated": est, "money": money, "quantity": quantity,
            "alerts": n_alerts, "alerts_by_kind": dict(by_kind), "samples": samples,
            "days": [r.day.isoformat() for r in results], "delivered": delivered}


def _alert_receiver(lake):
    """A local webhook receiver for the residents' channel (``sms``) of the demo's account store."""
    from accounts.channels import add_channel
    from accounts.store import open_store
    from delivery.demo import LocalReceiver

    receiver, store = LocalReceiver(), open_store(lake)
    add_channel(store, "sms", webhook=receiver.url, secret=receiver.secret)
    store.close()
    return receiver


def _show_delivery(lake, receiver, out) -> dict:
    """Deliver the queued alerts to the local receiver and show two of the messages it got."""
    from delivery.demo import deliver

    try:
        totals = deliver(lake)
    finally:
        receiver.close()
    _echo(out, f"  delivered              {len(receiver.messages):,} messages to a webhook on {receiver.url} "
               f"(signatures verified; operator alerts wait for an operator channel)")
    for m in sorted(receiver.messages.values(), key=lambda m: (m["kind"] != "auto_topup", m["id"]))[:2]:
        _echo(out, f"    {m['recipient']} [{m['kind']}, {m['language']}]: {m['text']}")
    return {"sent": totals["sent"], "received": len(receiver.messages), "rejected": receiver.rejected}


def _heat_share(first: dt.date, days: int) -> float:
    """A tenth of the households get heat meters when a simulated day is in Beijing's heating season."""
    from .heating import builtin_heating, heating_in_force

    t = heating_in_force(builtin_heating()["cn-bj-res-heat-area"], first)
    return 0.1 if any(t.season(first + dt.timedelta(days=i)) for i in range(days)) else 0.0


def _pages(lake, out, serve: bool) -> dict:
    """Configure the web pages' store, channel and operator; serve them on a free loopback port
    until Ctrl-C when ``serve``."""
    from accounts.web import demo as web_demo

    from .broker import free_port

    store, who = web_demo.configure(lake)
    _echo(out, f"web pages: resident page as channel {who['channel']}; console operator {who['operator']}, "
               f"password {who['password']}")
    if serve:
        url = f"http://127.0.0.1:{free_port()}"
        _echo(out, f"serving the pages at {url}/ and {url}/console (Ctrl-C stops)")
        web_demo.serve(store, "127.0.0.1", int(url.rsplit(":", 1)[1]))
    store.close()
    return who


def _simulate_and_ingest(lake, broker_dir, meters, first, days, interval, seed, faults, show_progress, out):
    """Managed broker + one ingest worker (a thread) while the simulator publishes; returns
    (simulator summary, ingest counters, seconds)."""
    from ingest.decode import Limits
    from ingest.service import Ingest
    from simulator.run import simulate

    from .broker import managed_broker
    from .mqtt import parse_broker_url

    with managed_broker(broker_dir) as broker:
        _echo(out, f"broker: Mosquitto on 127.0.0.1:{broker.port} (managed, password auth and ACLs)")
        ing = Ingest(parse_broker_url(broker.url("ingest")), lake, client_id="meters-demo-ingest",
                     batch_rows=500_000, flush_seconds=0.5, receive_maximum=1000, limits=Limits())
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(ing.run(None, log_every=3600).as_dict()),
                                  name="ingest", daemon=True)
        worker.start()
        t0 = time.monotonic()
        try:
            if not ing.connected.wait(15) or ing.connect_error:
                raise MetersError(f"the ingest worker could not connect to the demo broker ({ing.connect_error})")
            sim = simulate(meters, first.isoformat(), days, broker_dir=str(broker_dir), lake=lake.root,
                           interval=interval, seed=seed, speed="max", faults=faults, show_progress=show_progress,
                           heat=_heat_share(first, days))
            while time.monotonic() - ing.last_message < 1.5:   # the broker has handed everything over
                time.sleep(0.1)
        finally:
            ing.stop.set()
            ing.wake.set()
            worker.join(60)
        if worker.is_alive() or not result:
            raise MetersError("the ingest worker did not stop cleanly")
        return sim, result, time.monotonic() - t0


@click.command("demo")
@click.option("--lake", "lake_path", type=click.Path(file_okay=False),
              help="Lake directory to create (default: a new temporary directory).")
@click.option("--meters", type=click.IntRange(1), default=10_000, show_default=True, help="Meters in the city.")
@click.option("--days", type=click.IntRange(1, 31), default=3, show_default=True, help="Days to simulate and bill.")
@click.option("--interval", default="15m", show_default=True, help="Reading interval.")
@click.option("--faults", default=DEFAULT_FAULTS, show_default=True,
              help="Simulator fault rates (see meters simulate --help); 'none' for a clean run.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the simulated city.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First simulated day, YYYY-MM-DD in the lake's time zone (default: the days that end yesterday).")
@click.option("--no-serve", is_flag=True, help="End after the summary instead of serving the web pages (scripts, tests).")
def demo(lake_path, meters, days, interval, faults, seed, start, no_serve):
    """Run the whole pipeline on a small simulated city: broker, simulate, ingest, bill, summary; then
    serve the resident page and the operator console on a free loopback port (Ctrl-C stops)."""
    run_demo(lake_path, meters=meters, days=days, interval=interval, faults=faults, seed=seed,
             start=start.date() if start else None, serve=not no_serve)
