"""`meters simulate` and `meters replay`: thin click wrappers over :func:`simulator.run.simulate` and
:func:`simulator.replay.replay`."""
from __future__ import annotations

import click

from meters import wire
from meters.options import echo_json, lake_option


@click.command()
@click.option("--broker", default=None, help="Sender URL mqtt://USER:PASS@host:port (all uploads go to "
              "meters/v1/USER/readings). Default: the managed broker, one sender per concentrator.")
@click.option("--broker-dir", default=None, type=click.Path(file_okay=False),
              help="State dir of a managed broker: provision one sender per concentrator there.")
@click.option("--meters", "n_meters", type=click.IntRange(min=1), required=True, help="Number of meters.")
@click.option("--start", default=None, help="First read, ISO 8601 (no offset = the lake's time zone); "
              "default: today's local midnight.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), required=True, help="Days to simulate.")
@click.option("--interval", default="15m", show_default=True, help="Read interval: 15m, 1h, 1d …")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same fleet and readings.")
@click.option("--speed", default="max", show_default=True, help="max, realtime or a factor like 60x.")
@click.option("--faults", default=None, help="Fault rates, e.g. lost=0.01,duplicate=0.01,late=0.01,"
              "spike=0.001,rollover=0.01,replacement=0.001,skew=0.01,malformed=0.001.")
@click.option("--lake", "lake_path", default=None, type=click.Path(file_okay=False),
              help="Lake that receives the fleet's meters, accounts and contacts (created if missing) "
                   "and the ground-truth manifest in <lake>/_simulator/<run>/.")
@click.option("--format", "fmt", type=click.Choice(list(wire.FORMATS)), default=wire.DEFAULT,
              show_default=True, help=f"Payloads: {wire.describe()}.")
@click.option("--manifest", default=None, type=click.Path(file_okay=False), help="Manifest directory.")
@click.option("--batch-intervals", type=click.IntRange(min=1), default=None,
              help="Reads per meter in one concentrator upload (default: one hour's worth).")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Publisher processes (concentrators split between them).")
@click.option("--window", type=click.IntRange(1, 65535), default=50, show_default=True,
              help="In-flight QoS 1 messages per sender connection.")
@click.option("--mqtt", "mqtt_version", type=click.Choice(["5", "3.1.1"]), default=None,
              help="MQTT version of the sender connections (default: the URL's, 5). With 3.1.1 the "
                   "senders' persistent sessions stay on the broker (they cannot expire).")
@click.option("--heat", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of households that also get a heat meter (district heating; binary HEAT batches).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(broker, broker_dir, n_meters, start, days, interval, seed, speed, faults, lake_path, fmt, manifest,
             batch_intervals, processes, window, mqtt_version, heat, as_json):
    """Simulate a seeded fleet of meters and publish their readings over MQTT (QoS 1)."""
    from .run import simulate as run

    s = run(n_meters, start, days, broker=broker, broker_dir=broker_dir, lake=lake_path, interval=interval,
            seed=seed, speed=speed, faults=faults, fmt=fmt, manifest=manifest, batch_intervals=batch_intervals,
            processes=processes, window=window, mqtt_version=mqtt_version, show_progress=not as_json, heat=heat)
    if as_json:
        echo_json(s)
        return
    u = s["by_utility"]
    click.echo(f"simulated {s['meters']:,} meters ({u['electricity']:,} electricity, {u['water']:,} water, "
               f"{u['gas']:,} gas) on {s['concentrators']:,} concentrators, {s['start']} → {s['end']}")
    click.echo(f"published {s['readings']:,} readings in {s['messages']:,} {s['format']} messages "
               f"in {s['seconds']:.1f}s ({s['readings_per_s'] or 0:,.0f} readings/s) to {s['broker']} "
               f"({s['senders']} senders, {s['processes']} process(es))")
    if s["heat"]:
        h = s["heat"]
        click.echo(f"heat: {h['meters']:,} heat meters on {h['concentrators']:,} concentrators, {h['readings']:,} "
                   f"readings, {h['energy_kwh']:,.1f} kWh")
        if any(h["faults"].values()):
            click.echo("heat faults: " + ", ".join(f"{v:,} {k}" for k, v in h["faults"].items() if v))
    if any(s["faults"].values()):
        click.echo(f"faults: {s['lost']:,} lost, {s['duplicates']:,} duplicated, {s['malformed']:,} malformed payloads")
    if s["reconnects"]:
        click.echo(f"reconnected {s['reconnects']} time(s); unacknowledged messages were re-sent")
    if s["lake"]:
        click.echo(f"registry written to {s['lake']}")
    if s["manifest"]:
        click.echo(f"manifest: {s['manifest']}")


@click.command()
@lake_option
@click.option("--broker", "broker_url", help="Broker URL mqtt://user:pass@host:port (default $METERS_BROKER "
                                             "or the managed broker's admin role).")
@click.option("--from", "start", required=True, help="First instant (ISO 8601; no offset = lake time).")
@click.option("--to", "end", required=True, help="End instant, exclusive (ISO 8601).")
@click.option("--speed", default="max", show_default=True, help="max, realtime or a factor like 3600x.")
@click.option("--format", "fmt", type=click.Choice(list(wire.BATCH_FORMATS)), default=wire.DEFAULT, show_default=True,
              help=f"Payload format: {wire.describe(wire.BATCH_FORMATS)}.")
@click.option("--sender", help="Publish every reading to this sender's topic instead of its original one.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Readings per message at most.")
def replay(lake_path, broker_url, start, end, speed, fmt, sender, batch_size):
    """Republish readings from the lake over MQTT in their original order (load tests, incidents)."""
    from rich.progress import Progress

    from meters.broker import resolve_broker
    from meters.lake import Lake

    from .replay import replay as run

    lake = Lake(lake_path)
    url = resolve_broker(broker_url, "admin")
    with Progress(transient=True) as bar:
        task = bar.add_task("replaying", total=None)
        r = run(lake, str(url), start, end, speed=speed, fmt=fmt, sender=sender, batch_size=batch_size,
                   progress=lambda n: bar.advance(task, n))
    rate = r["readings"] / r["seconds"] if r["seconds"] else 0
    click.echo(f"replayed {r['readings']} readings in {r['messages']} messages from {r['senders']} sender(s) "
               f"to {url.redacted()} in {r['seconds']:.1f} s ({rate:,.0f} readings/s)")
    if r["skipped_interval_rows"]:
        click.echo(f"note: {r['skipped_interval_rows']} imported interval rows (no register) were not replayed")
