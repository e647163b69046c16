"""``meters ingest`` and ``meters compact``: thin click wrappers over ingest.service / ingest.compact."""
from __future__ import annotations

import json
import logging

import click

from meters.logs import log_format_option, setup_logging
from meters.options import lake_option


@click.command()
@click.option("--broker", "broker_url", default=None,
              help="mqtt://user:pass@host:port (default $METERS_BROKER, else the managed broker's ingest role).")
@lake_option
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Exit after this many seconds without a message (batch runs, tests).")
@click.option("--batch-rows", type=int, default=500_000, show_default=True,
              help="Flush when the batch holds this many readings.")
@click.option("--flush-seconds", type=float, default=1.0, show_default=True,
              help="Flush a batch at the latest this long after its first message.")
@click.option("--idle-flush", type=float, default=0.05, show_default=True, metavar="SECONDS",
              help="Also flush when no message came for this long.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes (client ids <client-id>-<i>); more than one share the shared "
                   "subscription, one alone holds the plain subscription.")
@click.option("--shared", is_flag=True,
              help="Join the shared subscription with one worker (one worker per host of a group; "
                   "implied by --workers > 1 and --first-worker > 0).")
@click.option("--client-id", default="meters-ingest", show_default=True,
              help="MQTT client id prefix: the persistent session of worker i is <client-id>-<i>.")
@click.option("--receive-maximum", type=int, default=1000, show_default=True,
              help="Unacknowledged messages in flight (MQTT 5 Receive Maximum); a batch flushes when full.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on --metrics-bind:PORT (worker i on PORT+i).")
@click.option("--metrics-bind", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address of the metrics endpoint (0.0.0.0 for a Prometheus on another host).")
@click.option("--connect-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Give up when the broker cannot be reached for this long (default: wait and retry "
                   "with back-off until stopped; with --until-idle, that many seconds).")
@click.option("--max-payload", type=int, default=16 * 2**20, show_default=True,
              help="Larger payloads are dead-lettered (payload_too_large).")
@click.option("--max-future", type=int, default=86400, show_default=True, metavar="SECONDS",
              help="Readings with ts further ahead than this are dead-lettered (ts_out_of_range).")
@click.option("--broker-dir", default=None, type=click.Path(file_okay=False),
              help="State dir of the managed broker (default .meters/broker).")
@click.option("--first-worker", type=int, default=0, show_default=True,
              help="Index of the first worker (e.g. --first-worker 2 --workers 1 runs session <client-id>-2).")
@click.option("--drain", is_flag=True,
              help="Scale down: take what is queued for these sessions, write and acknowledge it, then "
                   "end the sessions (no new messages are taken).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings only.")
@log_format_option
def ingest(broker_url, lake_path, until_idle, batch_rows, flush_seconds, idle_flush, workers, shared,
           client_id, receive_maximum, metrics_port, metrics_bind, connect_timeout, max_payload, max_future,
           broker_dir, first_worker, drain, as_json, quiet, log_format):
    """Read meter readings from MQTT into the lake, at least once (ack after fsync).

    Runs until SIGTERM / Ctrl-C (it then flushes, acknowledges and exits 0) or --until-idle. A broker
    that is not up yet is waited for (retried with back-off).
    """
    from meters.lake import Lake
    from meters.broker import resolve_broker

    from . import sessions
    from .decode import Limits
    from .service import run_workers, uses_shared_subscription

    setup_logging(logging.WARNING if quiet else logging.INFO, log_format)
    lake = Lake(lake_path)
    notes: list[str] = []
    url = resolve_broker(broker_url, "ingest", broker_dir, notes=notes, not_up_yet=True)
    if uses_shared_subscription(workers, first_worker, shared) and not drain:
        for note in notes:  # the broker's known limits of shared subscriptions
            click.echo(f"note: {note}", err=True)
    stale = [] if drain else sessions.stale(lake, [f"{client_id}-{first_worker + i}" for i in range(workers)])
    if stale:
        logging.getLogger("meters.ingest").warning(sessions.warning(stale, client_id),
                                                   extra={"event": "stale_sessions"})
    limits = Limits(max_future_s=max_future, max_payload=max_payload)
    out = run_workers(workers, url, lake, client_id=client_id, metrics_port=metrics_port, shared=shared,
                      batch_rows=batch_rows, flush_seconds=flush_seconds, until_idle=until_idle,
                      receive_maximum=receive_maximum, limits=limits, first_worker=first_worker,
                      drain=drain, idle_flush=idle_flush, log_format=log_format, metrics_bind=metrics_bind,
                      connect_timeout=connect_timeout if connect_timeout is not None else until_idle,
                      stale_sessions=len(stale))
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        el = out.get("elapsed_seconds") or 0
        rate = out["written"] / el if el else 0
        click.echo(f"ingest: {out['received']} messages, {out['written']} readings written "
                   f"({rate:,.0f}/s over {el:.1f} s), {out['deadlettered']} dead-lettered, "
                   f"{out['acked']} acknowledged, {out['files']} files, {workers} worker(s)")
    errors = out.get("errors") or []
    if errors:
        from meters.errors import MetersError
        raise MetersError("; ".join(errors))


@click.command()
@lake_option
@click.option("--day", "days", multiple=True, metavar="YYYY-MM-DD",
              help="Partition(s) to compact (default: every readings partition).")
@click.option("--force", is_flag=True, help="Rewrite partitions that are already compacted.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per partition.")
def compact(lake_path, days, force, as_json):
    """Merge each day's small readings files into one sorted, deduplicated file."""
    from rich.progress import Progress

    from meters.lake import Lake

    from .compact import bytes_per_reading, compact as run_compact

    lake = Lake(lake_path)
    selected = list(days) or lake.partitions("readings")
    with Progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("compacting", total=len(selected))
        results = run_compact(lake, selected, force=force,
                              on_day=lambda r: progress.advance(task))
    if as_json:
        for r in results:
            click.echo(json.dumps({**r.__dict__, "duplicates": r.duplicates}))
        return
    done = [r for r in results if not r.skipped]
    rows = sum(r.rows_out for r in done)
    click.echo(f"compact: {len(done)} partition(s) compacted, {len(results) - len(done)} already compact; "
               f"{sum(r.files_in for r in done)} files → {len(done)}, {rows:,} readings, "
               f"{sum(r.duplicates for r in done):,} duplicates removed, "
               f"{bytes_per_reading(done):.2f} bytes/reading")
