"""``simulate(...)``: build the fleet, write the registry, publish every reading, write the manifest.

Broker modes:
- per-concentrator senders (default): with a managed broker (``broker_dir``, or no URL at all: the
  managed broker in the default state dir) every concentrator ``dcu-NNNNNN`` is provisioned as a
  sender user and publishes to ``meters/v1/dcu-NNNNNN/readings`` with its own credentials;
- one sender (``broker`` URL without ``broker_dir``): every upload goes to the URL user's own topic
  ``meters/v1/<user>/readings`` (the ACL allows nothing else); the manifest still names concentrators.
"""
from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import re
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from meters import wire
from meters.errors import MetersError
from meters.mqtt import parse_broker_url
from meters.times import local_midnight, parse_duration, parse_instant

from .engine import Plan, Shard
from .faults import Faults, parse_faults
from .fleet import UTILITY_NAMES, Fleet, make_fleet, save_fleet

MANIFEST_DIR = "_simulator"


# -- argument parsing ----------------------------------------------------------------------------
def parse_interval(text: str) -> int:
    """``15m`` / ``1h`` / ``1d`` / ``30s`` → seconds (must divide a day)."""
    s = parse_duration(text, "--interval")
    if s <= 0 or 86400 % s:
        raise MetersError(f"--interval {text!r}: must be positive and divide a day evenly (15m, 30m, 1h, 1d …)")
    return s


def parse_speed(text: str | None) -> float | None:
    """``max`` → None (as fast as possible), ``realtime`` → 1, ``Nx`` (or ``N``) → N."""
    if text is None or str(text).strip().lower() == "max":
        return None
    t = str(text).strip().lower()
    if t == "realtime":
        return 1.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)x?", t)
    if not m or float(m.group(1)) <= 0:
        raise MetersError(f"--speed {text!r}: use max, realtime or a positive factor like 3600x")
    return float(m.group(1))


def parse_start(text: str | None, tz: ZoneInfo) -> int:
    """ISO date or date-time; without an offset it is local time in ``tz``; None = today's local
    midnight. → Unix seconds."""
    return int((local_midnight(tz) if text is None else parse_instant(str(text), tz, "--start")).timestamp())


# -- running -------------------------------------------------------------------------------------
def _run_shard(plan: Plan, lo: int, hi: int, broker, passwords, single_sender, fmt, speed, window,
               client_prefix, progress) -> dict:
    from .publish import Publisher

    codec = wire.lookup(fmt)
    shard = Shard(plan, lo, hi)
    ids = plan.fleet.conc_ids
    pub = Publisher(broker, passwords, window=window, client_prefix=client_prefix, tz=plan.tz)
    try:
        senders = [single_sender] if single_sender else ids[lo:hi]
        pub.connect_all(senders)
        t0 = time.monotonic()

        def send(ups):
            n = 0
            for u in ups:
                sender = single_sender or ids[u.conc]
                if u.payload is not None and u.payload_format == codec.name:
                    pub.publish(sender, u.payload)
                    n += len(u.meter_id)
                elif len(u.meter_id):
                    pub.publish_batch(sender, u.meter_id, u.ts, u.register_milli, codec)
                    n += len(u.meter_id)
                if u.malformed is not None:
                    pub.publish(sender, u.malformed)
            return n

        for b in range(plan.n_blocks):
            if speed is not None:
                pub.poll(t0 + (int(plan.block_ts(b)[-1]) - plan.start) / speed - time.monotonic())
            progress(send(shard.uploads(b)))
        progress(send(shard.leftovers()))
        pub.close()
    except BaseException:
        pub.abort()
        raise
    return {"lo": lo, "hi": hi, "counts": shard.counts, "day_q": shard.day_q, "acc": shard.acc,
            "start_milli": shard.start_milli, "rollover": shard.rollover, "rep_ts": shard.rep_ts,
            "rep_start": shard.rep_start, "skew": shard.skew, "messages": shard.messages,
            "readings": shard.readings, "malformed": shard.malformed, "events": _events_table(shard),
            "publisher_messages": pub.messages, "reconnects": pub.reconnects}


def _events_table(shard: Shard) -> pa.Table:
    cols = {"meter_id": [], "ts": [], "kind": [], "published_ts": [], "published_milli": [], "true_milli": []}
    for idx, ts, kind, pts, pv, tv in shard.events:
        cols["meter_id"].append(shard.meter_id[idx])
        cols["ts"].append(np.asarray(ts, np.int64))
        cols["kind"].append(np.full(len(idx), kind, dtype=object))
        cols["published_ts"].append(np.asarray(pts, np.int64))
        cols["published_milli"].append(np.asarray(pv, np.int64))
        cols["true_milli"].append(np.asarray(tv, np.int64))
    cat = {k: (np.concatenate(v) if v else np.empty(0, object if k == "kind" else np.int64)) for k, v in cols.items()}
    true = cat["true_milli"]
    return pa.table({
        "meter_id": pa.array(cat["meter_id"], pa.int64()),
        "ts": pa.array(cat["ts"], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        "kind": pa.array(cat["kind"], pa.string()),
        "published_ts": pa.array(cat["published_ts"], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        "published_milli": pa.array(cat["published_milli"], pa.int64()),
        "true_milli": pa.array(true, pa.int64(), mask=true < 0),
    })


def _shards(fleet: Fleet, processes: int) -> list[tuple[int, int]]:
    """Contiguous concentrator ranges holding about equal numbers of meters."""
    n_c = fleet.n_concentrators
    processes = max(1, min(processes, n_c))
    cuts = np.searchsorted(fleet.conc_start, np.linspace(0, len(fleet), processes + 1)[1:-1])
    bounds = [0] + sorted(set(int(c) for c in cuts if 0 < c < n_c)) + [n_c]
    return list(zip(bounds[:-1], bounds[1:]))


def simulate(meters: int, start: str | None, days: float, *, broker: str | None = None, broker_dir: str | None = None,
             lake: str | os.PathLike | None = None, interval: str = "15m", seed: int = 0,
             speed: str | None = "max", faults: str | Faults | None = None, fmt: str = wire.DEFAULT,
             manifest: str | os.PathLike | None = None, batch_intervals: int | None = None,
             processes: int = 1, window: int = 50, timezone: str | None = None,
             client_prefix: str | None = None, mqtt_version: str | None = None,
             show_progress: bool = False, heat: float = 0.0) -> dict:
    """Simulate ``meters`` meters for ``days`` from ``start`` and publish every reading; returns a
    summary dict (also written as ``summary.json`` in the manifest directory). ``heat``: a share of
    the households also gets a heat meter (:mod:`simulator.heat`), published after the fleet."""
    wire.lookup(fmt)
    if days <= 0:
        raise MetersError(f"--days must be positive (got {days})")
    if processes < 1:
        raise MetersError(f"--processes must be at least 1 (got {processes})")
    lk = None
    if lake is not None:
        from meters.lake import CONFIG_NAME, Lake, init_lake
        lk = Lake(lake) if (Path(lake) / CONFIG_NAME).exists() else init_lake(lake, timezone or "Asia/Shanghai")
    tz_name = timezone or (lk.timezone_name if lk else "Asia/Shanghai")
    tz = ZoneInfo(tz_name)
    interval_s = parse_interval(interval)
    speed_f = parse_speed(speed)
    fl = faults if isinstance(faults, Faults) else parse_faults(faults)
    start_ts = parse_start(start, tz)
    if batch_intervals is None:
        batch_intervals = max(1, 3600 // interval_s)
    if batch_intervals < 1:
        raise MetersError("--batch-intervals must be at least 1")
    if int(round(days * 86400)) // interval_s < 1:
        raise MetersError(f"--days {days} is shorter than one --interval {interval}")

    fleet = make_fleet(meters, seed)
    plan = Plan(fleet, start_ts, days, interval_s, seed, tz_name, fl, batch_intervals)

    # broker and credentials
    passwords, single = None, None
    if broker_dir is not None or broker is None and not os.environ.get("METERS_BROKER"):
        from meters.broker import ManagedBroker
        mb = ManagedBroker(broker_dir)
        if not mb.is_running():
            raise MetersError(f"no managed broker is running in {mb.dir}; start one with `meters broker start"
                              f"{'' if broker_dir is None else ' --dir ' + str(broker_dir)}` or pass --broker URL")
        url = parse_broker_url(broker) if broker else parse_broker_url(mb.url("sender"))
        passwords = mb.add_senders(fleet.conc_ids)
    else:
        url = parse_broker_url(broker or os.environ["METERS_BROKER"])
        if not url.username:
            raise MetersError("--broker URL needs the sender's user name (mqtt://USER:PASSWORD@host:port)")
        single = url.username
    if mqtt_version is not None:
        if mqtt_version not in ("5", "3.1.1"):
            raise MetersError(f"--mqtt {mqtt_version!r}: use 5 or 3.1.1")
        from dataclasses import replace
        url = replace(url, version=mqtt_version)
    # client ids stay fixed for the run (reconnects resume the session); MQTT 5 sessions end at close
    # or expire, so each run gets its own ids; 3.1.1 sessions never expire, so runs reuse theirs
    if client_prefix is None:
        client_prefix = f"meters-sim-{uuid.uuid4().hex[:6]}" if url.version == "5" else "meters-sim"

    hf = None
    if heat:
        from . import heat as H
        hf = H.heat_fleet(fleet.household, heat, seed)
        if passwords is not None:
            passwords.update(mb.add_senders(hf.conc_ids))
    registry = save_fleet(lk, fleet) if lk is not None else None
    if hf is not None and lk is not None:
        from meters.registry import save_accounts, save_meters
        hm, ha, hc = hf.registry()
        save_meters(lk, hm)
        save_accounts(lk, ha, hc)
    total = plan.n_reads * len(fleet)
    t0 = time.perf_counter()
    shards = _shards(fleet, processes)
    results = _publish_all(plan, shards, url, passwords, single, fmt, speed_f, window, client_prefix,
                           total, show_progress)
    heat_summary = None
    if hf is not None:
        heat_summary = H.publish_heat(hf, plan.start, days, interval_s, batch_intervals, seed, tz, url, passwords,
                                      single, window, client_prefix, fl)
    elapsed = time.perf_counter() - t0
    results.sort(key=lambda r: r["lo"])

    mdir = Path(manifest) if manifest is not None else (
        Path(lk.root) / MANIFEST_DIR / run_id(plan) if lk is not None else None)
    readings = int(sum(r["readings"].sum() for r in results))
    summary = {
        "meters": len(fleet), "concentrators": fleet.n_concentrators,
        "by_utility": {UTILITY_NAMES[u]: int((fleet.utility == u).sum()) for u in range(3)},
        "start": dt.datetime.fromtimestamp(plan.start, tz).isoformat(),
        "end": dt.datetime.fromtimestamp(plan.end, tz).isoformat(),
        "interval_s": interval_s, "reads_per_meter": plan.n_reads, "seed": seed, "format": fmt,
        "faults": fl.to_dict(), "readings": readings,
        "messages": int(sum(r["publisher_messages"] for r in results)),
        "malformed": int(sum(r["malformed"].sum() for r in results)),
        "lost": int(sum(r["counts"]["lost"].sum() for r in results)),
        "duplicates": int(sum(r["counts"]["duplicate"].sum() for r in results)),
        "reconnects": int(sum(r["reconnects"] for r in results)),
        "seconds": round(elapsed, 3), "readings_per_s": round(readings / elapsed) if elapsed > 0 else None,
        "broker": url.redacted(), "mqtt": url.version, "senders": "per-concentrator" if single is None else single,
        "processes": len(shards), "lake": str(lk.root) if lk is not None else None,
        "registry": registry, "manifest": str(mdir) if mdir is not None else None,
        "timezone": tz_name, "heat": heat_summary,
    }
    if mdir is not None:
        write_manifest(mdir, plan, results, summary)
    return summary


def _publish_all(plan, shards, url, passwords, single, fmt, speed, window, client_prefix, total, show):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]simulate"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f} readings"),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), disable=not show, transient=False)
    t0 = time.perf_counter()
    done = [0]

    def advance(task, n):
        done[0] += n
        el = time.perf_counter() - t0
        progress.update(task, advance=n, rate=f"{done[0] / el / 1e6:.2f}M/s" if el > 0 else "")

    if len(shards) == 1:
        with progress:
            task = progress.add_task("simulate", total=total, rate="")
            lo, hi = shards[0]
            return [_run_shard(plan, lo, hi, url, passwords, single, fmt, speed, window, client_prefix,
                               lambda n: advance(task, n))]
    # spawn, not fork: numba's parallel threading layer must not be forked once running; each
    # worker rebuilds the (deterministic) fleet from its size and seed
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = []
    spec = {k: getattr(plan, k) for k in ("start", "days", "interval_s", "seed", "tz_name", "faults",
                                          "batch_intervals")}
    for lo, hi in shards:
        pw = {s: passwords[s] for s in plan.fleet.conc_ids[lo:hi]} if passwords else None
        p = ctx.Process(target=_worker, args=(q, len(plan.fleet), spec, lo, hi, url, pw, single, fmt, speed,
                                              window, client_prefix), daemon=True)
        p.start()
        procs.append(p)
    results, error = [], None
    with progress:
        task = progress.add_task("simulate", total=total, rate="")
        while len(results) + (error is not None) < len(procs):
            try:
                kind, val = q.get(timeout=1.0)
            except Exception:
                if any(p.exitcode not in (None, 0) for p in procs):
                    error = error or MetersError("a simulator worker process died")
                    break
                continue
            if kind == "n":
                advance(task, val)
            elif kind == "done":
                results.append(val)
            else:
                error = MetersError(val)
    for p in procs:
        p.join(timeout=10 if error is None else 1)
        if p.is_alive():
            p.kill()
    if error is not None:
        raise error
    return results


def _worker(q, n_meters, spec, lo, hi, url, passwords, single, fmt, speed, window, client_prefix):
    try:
        plan = Plan(make_fleet(n_meters, spec["seed"]), **spec)
        acc = [0, time.monotonic()]

        def progress(n):
            acc[0] += n
            if time.monotonic() - acc[1] > 0.2:
                q.put(("n", acc[0]))
                acc[0], acc[1] = 0, time.monotonic()

        r = _run_shard(plan, lo, hi, url, passwords, single, fmt, speed, window, client_prefix, progress)
        q.put(("n", acc[0]))
        q.put(("done", r))
    except BaseException as e:  # report, the parent raises
        q.put(("error", f"{type(e).__name__}: {e}" if not isinstance(e, MetersError) else str(e)))


def run_id(plan: Plan) -> str:
    t = dt.datetime.fromtimestamp(plan.start, plan.tz).strftime("%Y%m%dT%H%M")
    return f"{t}-{len(plan.fleet)}m-{plan.days:g}d-seed{plan.seed}"


# -- manifest ------------------------------------------------------------------------------------
def write_manifest(mdir: Path, plan: Plan, results: list[dict], summary: dict) -> None:
    """Ground truth of a run (docs/simulator.md): meters.parquet, daily.parquet, events.parquet,
    concentrators.parquet and summary.json."""
    f = plan.fleet
    mdir.mkdir(parents=True, exist_ok=True)
    cat = lambda key: np.concatenate([r[key] for r in results])  # noqa: E731
    counts = {k: np.concatenate([r["counts"][k] for r in results]) for k in results[0]["counts"]}
    day_q = np.concatenate([r["day_q"] for r in results])
    rep_ts = cat("rep_ts")
    meters = pa.table({
        "meter_id": pa.array(f.meter_id, pa.int64()),
        "utility": pa.array(np.array(UTILITY_NAMES, dtype=object)[f.utility], pa.string()),
        "concentrator": pa.array(np.array(f.conc_ids, dtype=object)[f.concentrator], pa.string()),
        "reads": pa.array(np.full(len(f), plan.n_reads), pa.int64()),
        "published": pa.array(counts["published"], pa.int64()),
        "lost": pa.array(counts["lost"], pa.int64()),
        "duplicates": pa.array(counts["duplicate"], pa.int64()),
        "late": pa.array(counts["late"], pa.int64()),
        "spikes": pa.array(counts["spike"], pa.int64()),
        "start_milli": pa.array(cat("start_milli"), pa.int64()),
        "end_milli": pa.array(cat("acc"), pa.int64()),
        "register_max_milli": pa.array(f.register_max_milli, pa.int64()),
        "consumption_milli": pa.array(day_q.sum(axis=1), pa.int64()),
        "rollover": pa.array(cat("rollover"), pa.bool_()),
        "replaced_at": pa.array(rep_ts, pa.int64(), mask=rep_ts == 0).cast(pa.timestamp("s", tz="UTC")),
        "replacement_start_milli": pa.array(cat("rep_start"), pa.int64(), mask=rep_ts == 0),
        "skew_s": pa.array(cat("skew"), pa.int64()),
    })
    pq.write_table(meters, mdir / "meters.parquet")
    n, d = day_q.shape
    days = np.array([plan.day_label(i) for i in range(d)], dtype="datetime64[D]")
    pq.write_table(pa.table({
        "meter_id": pa.array(np.repeat(f.meter_id, d), pa.int64()),
        "day": pa.array(np.tile(days, n), pa.date32()),
        "consumption_milli": pa.array(day_q.ravel(), pa.int64()),
    }), mdir / "daily.parquet")
    pq.write_table(pa.concat_tables([r["events"] for r in results]), mdir / "events.parquet")
    pq.write_table(pa.table({
        "concentrator": pa.array(f.conc_ids, pa.string()),
        "meters": pa.array(np.diff(f.conc_start), pa.int64()),
        "messages": pa.array(cat("messages"), pa.int64()),
        "readings": pa.array(cat("readings"), pa.int64()),
        "malformed": pa.array(cat("malformed"), pa.int64()),
    }), mdir / "concentrators.parquet")
    (mdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
