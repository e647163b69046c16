"""``meters notify`` (the dispatcher) and ``meters alerts`` (delivery state, retry, queue)."""
from __future__ import annotations

import logging

import click

from meters.logs import log_format_option, setup_logging
from meters.options import date_param, db_option, echo_json, json_option, lake_option



def _engine(lake_path, db):
    from meters.lake import open_lake
    from meters.outbox import open_outbox

    return open_outbox(open_lake(lake_path), db)


@click.command()
@lake_option
@db_option
@click.option("--until-idle", "until_idle", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="Stop once SECONDS pass without a delivery sent or given up (default: run until SIGTERM).")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=512, show_default=True,
              help="Deliveries in flight at once.")
@click.option("--pipeline", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Webhook requests in flight on one connection (HTTP/1.1 pipelining; 1: one at a time).")
@click.option("--lease", "lease_s", type=click.FloatRange(0.1), default=120.0, show_default=True, metavar="SECONDS",
              help="A claimed delivery is tried again after SECONDS if this dispatcher dies before its outcome.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
@click.option("--broker", "broker_url", default=None, envvar="METERS_BROKER", metavar="URL",
              help="MQTT broker for channels delivered by MQTT (default: the managed broker's notify role).")
@click.option("--broker-dir", type=click.Path(file_okay=False), default=None,
              help="State directory of the managed broker (default .meters/broker).")
@json_option
@log_format_option
def notify(lake_path, db, until_idle, concurrency, pipeline, lease_s, metrics_port, broker_url, broker_dir, as_json,
           log_format):
    """Deliver queued alerts to their channels' webhooks, MQTT topics and apprise URLs."""
    from .dispatcher import Settings, broker_for, run
    from .metrics import Metrics

    engine = _engine(lake_path, db)
    broker = broker_for(engine, broker_url, broker_dir)
    metrics = Metrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, "127.0.0.1", registry=metrics.registry)
    setup_logging(logging.INFO, log_format)
    logger = logging.getLogger("meters.notify")
    log = logger.info
    logger.info(f"dispatching alerts from {engine.url.render_as_string(hide_password=True)} "
                f"({concurrency} in flight at most)", extra={"event": "started"})
    totals = run(engine, Settings(concurrency=concurrency, pipeline=pipeline, lease_s=lease_s,
                                  until_idle_s=until_idle), broker=broker,
                 metrics=metrics, log=log)
    logger.info(f"stopped: sent {totals['sent']}, to retry {totals['failed']}, dead {totals['dead']}",
                extra={"event": "stopped"})
    if as_json:
        echo_json(totals)
    else:
        click.echo(f"sent {totals['sent']}, to retry {totals['failed']}, dead {totals['dead']}")


@click.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["pending", "sent", "failed", "dead"]), default=None,
              help="Only deliveries in this state.")
@click.option("--account", default=None, help="Only this account's alerts.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="At most this many.")
@lake_option
@db_option
@json_option
@click.pass_context
def alerts(ctx, state, account, limit, lake_path, db, as_json):
    """Alert deliveries, newest first: state, attempts, last error (subcommands: retry, queue)."""
    if ctx.invoked_subcommand is not None:
        return
    from meters.outbox import deliveries

    rows = deliveries(_engine(lake_path, db), state=state, account_id=account, limit=limit)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['alert_id']}  {r['day']}  {r['kind']:<15} {r['recipient']:<30} {r['state']:<7} "
                   f"attempts {r['attempts']}" + (f"  {r['last_error']}" if r["last_error"] else ""))
    if not rows:
        click.echo("no alert deliveries" + (f" in state {state}" if state else ""), err=True)


@alerts.command("retry")
@click.argument("alert_id")
@lake_option
@db_option
@json_option
def alerts_retry(alert_id, lake_path, db, as_json):
    """Queue dead (or failed) delivery ALERT_ID again now."""
    from meters.outbox import requeue

    out = requeue(_engine(lake_path, db), alert_id)
    echo_json(out) if as_json else click.echo(f"{alert_id} pending again")


@alerts.command("queue")
@click.argument("day", callback=date_param)
@lake_option
@db_option
@json_option
def alerts_queue(day, lake_path, db, as_json):
    """Queue the lake's alerts of DAY for delivery (idempotent; the nightly run does it itself)."""
    from meters.lake import open_lake
    from meters.outbox import enqueue_day

    out = enqueue_day(open_lake(lake_path), day, db)
    echo_json(out) if as_json else click.echo(
        f"{day}: queued {out['queued']}, corrections {out['corrections']}, already queued {out['unchanged']}, "
        f"not deliverable {out['skipped']}")
