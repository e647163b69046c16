"""Chaos at load: the simulator (with faults) publishes through the managed broker while a driver kills
ingest with SIGKILL every few seconds and restarts it, restarts the broker twice and fills the disk once;
afterwards the lake must hold exactly the simulator's readings and bill exactly as a clean run.

- disk full: one ingest incarnation runs with ``RLIMIT_FSIZE`` (a file-size limit; unprivileged,
  applied to that process only): its first Parquet file fails with ``EFBIG`` ("File too large") as on
  a full disk, so it must exit non-zero with one line and acknowledge nothing it did not write;
- the clean run: the same simulated plan written straight into another lake (no broker, no faults of
  the machinery), compacted and billed the same way;
- checks: per meter, distinct readings = the manifest's ``published - duplicates`` (lost), the
  ``readings`` view has no (meter_id, ts) twice (doubled), the deduplicated readings equal the clean
  run's, and the billing night (charges, balances, ledger amounts) equals the clean run's.

``python -m benchmarks chaos [--quick] [--meters N] [--days D] [--speed S] [--kill-every SECONDS]``
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
START = "2026-11-02T00:00:00+08:00"
FAULTS = "lost=0.01,duplicate=0.01,late=0.01,spike=0.001,rollover=0.01,replacement=0.005"
DISK_LIMIT = 1024  # bytes: RLIMIT_FSIZE of the "disk full" incarnation (any Parquet file is larger)


def _ingest(url: str, lake: Path, log: Path, disk_full: bool = False) -> subprocess.Popen:
    def limit():  # in the child before exec: Python ignores SIGXFSZ, so a write past it is EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_LIMIT, DISK_LIMIT))

    cmd = [sys.executable, "-m", "meters", "ingest", "--broker", url, "--lake", str(lake), "-q",
           "--flush-seconds", "0.3"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            preexec_fn=limit if disk_full else None)


def _clean_lake(path: Path, meters: int, days: float, seed: int, faults: str):
    """The same plan as ``simulate(...)`` publishes, written straight into a lake."""
    from meters.lake import init_lake
    from meters.schemas import UTC_MS, UTC_S
    from simulator.engine import Plan, Shard
    from simulator.faults import parse_faults
    from simulator.fleet import make_fleet, save_fleet
    from simulator.run import parse_start

    lake = init_lake(path)
    fleet = make_fleet(meters, seed)
    save_fleet(lake, fleet)
    plan = Plan(fleet, parse_start(START, lake.tz), days, 900, seed, lake.timezone_name, parse_faults(faults), 4)
    shard = Shard(plan)
    ups = [u for b in range(plan.n_blocks) for u in shard.uploads(b)] + shard.leftovers()
    m = np.concatenate([u.meter_id for u in ups])
    ts = np.concatenate([u.ts for u in ups])
    t = pa.table({"meter_id": m, "ts": pa.array(ts).cast(UTC_S),
                  "register_milli": np.concatenate([u.register_milli for u in ups]),
                  "sender": ["clean"] * len(m), "received_at": pa.array(np.arange(len(m)) * 1000).cast(UTC_MS)})
    from ingest.batch import local_day_numbers, split_by_day
    for day, part in split_by_day(t, local_day_numbers(ts, lake.tz)):
        lake.write("readings", part, day)
    return lake


def _bill(lake, first: dt.date, last: dt.date) -> dict:
    """Compact, bill the days, and return what the night produced (without run ids and times)."""
    from billing.batch import bill_range
    from ingest.compact import compact
    from meters.sql import connect, run

    compact(lake)
    bill_range(lake, first, last)
    con = connect(lake)
    q = lambda s: run(con, s).fetchall()  # noqa: E731
    out = {"charges": q("SELECT account_id, day, quantity, amount FROM charges ORDER BY ALL"),
           "balances": q("SELECT account_id, day, balance FROM billing_state ORDER BY ALL"),
           "ledger": q("SELECT account_id, kind, amount, balance_after FROM ledger ORDER BY ALL"),
           "readings": q("SELECT meter_id, ts, register_milli FROM readings ORDER BY ALL")}
    con.close()
    return out


def run_chaos(workdir: Path, *, meters: int = 2000, days: float = 2, speed: str = "4320x",
              kill_every: float = 3.0, seed: int = 7, faults: str = FAULTS, echo=print) -> dict:
    """Run the chaos scenario in ``workdir``; return the measured figures (see the module)."""
    from ingest.service import run_ingest
    from meters.broker import ManagedBroker
    from meters.lake import init_lake
    from meters.mqtt import parse_broker_url
    from meters.sql import connect, run
    from simulator.run import simulate

    import pyarrow.parquet as pq

    rng = random.Random(seed)
    broker = ManagedBroker(workdir / "broker")
    broker.start()
    lake = init_lake(workdir / "lake")
    figures = {"meters": meters, "days": days, "speed": speed, "kills": 0, "broker_restarts": 0,
               "disk_full_exit": None, "disk_full_error": None, "ingest_exits": []}
    try:
        url = broker.url("ingest")
        run_ingest(parse_broker_url(url), lake, until_idle=0.1, handle_signals=False)  # the session
        summary: dict = {}
        errors: list = []

        def publish():
            try:
                summary.update(simulate(meters, START, days, broker_dir=str(broker.dir), lake=lake.root,
                                        speed=speed, faults=faults, seed=seed))
            except BaseException as e:  # reported by the driver
                errors.append(e)

        t0 = time.monotonic()
        sim = threading.Thread(target=publish, daemon=True)
        sim.start()
        round_no = 0
        restarts_at = {2, 5}
        disk_full_at = 3
        while sim.is_alive():
            round_no += 1
            disk_full = round_no == disk_full_at
            log = workdir / f"ingest-{round_no}.log"
            proc = _ingest(url, lake.root, log, disk_full=disk_full)
            # the disk-full incarnation is not killed: it must stop by itself at its first write
            deadline = time.monotonic() + (30 if disk_full else kill_every * rng.uniform(0.6, 1.4))
            while time.monotonic() < deadline and proc.poll() is None and (sim.is_alive() or disk_full):
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                figures["kills"] += 1
            rc = proc.wait()
            figures["ingest_exits"].append(rc)
            if disk_full:
                figures["disk_full_exit"] = rc
                figures["disk_full_error"] = log.read_text().strip()
                echo(f"chaos: disk-full ingest exited {rc}: {figures['disk_full_error'][:160]}")
            if round_no in restarts_at:
                broker.restart()
                figures["broker_restarts"] += 1
                echo(f"chaos: broker restarted ({time.monotonic() - t0:.1f} s)")
        sim.join()
        if errors:
            raise errors[0]
        figures["publish_seconds"] = round(time.monotonic() - t0, 1)
        while figures["broker_restarts"] < 2:  # a short run: restart while the queue is still full
            broker.restart()
            figures["broker_restarts"] += 1
        final = run_ingest(parse_broker_url(url), lake, until_idle=2.0, handle_signals=False)
        figures["final_ingest_received"] = final["received"]
        figures["published"] = summary["readings"]
        figures["readings_per_s_published"] = summary["readings_per_s"]

        # ground truth: per meter, distinct readings = published - duplicates
        manifest = pq.read_table(Path(summary["manifest"]) / "meters.parquet")
        want = dict(zip(manifest.column("meter_id").to_pylist(),
                        (np.array(manifest.column("published")) - np.array(manifest.column("duplicates"))).tolist()))
        con = connect(lake)
        got = dict(run(con, "SELECT meter_id, count(DISTINCT ts) FROM readings_raw GROUP BY 1").fetchall())
        figures["raw_rows"] = run(con, "SELECT count(*) FROM readings_raw").fetchall()[0][0]
        con.close()
        figures["expected"] = sum(want.values())
        figures["lost"] = sum(max(0, n - got.get(m, 0)) for m, n in want.items())
        figures["extra"] = sum(max(0, n - want.get(m, 0)) for m, n in got.items())
        first = dt.date.fromisoformat(START[:10])
        last = first + dt.timedelta(days=int(np.ceil(days)) - 1)
        night = _bill(lake, first, last)
        con = connect(lake)
        figures["doubled"] = run(con, "SELECT count(*) - count(DISTINCT (meter_id, ts)) FROM readings").fetchall()[0][0]
        con.close()
    finally:
        broker.stop()
    clean = _bill(_clean_lake(workdir / "clean", meters, days, seed, faults), first, last)
    figures["readings_equal_clean"] = night["readings"] == clean["readings"]
    figures["billing_equal_clean"] = all(night[k] == clean[k] for k in ("charges", "balances", "ledger"))
    figures["charges"] = len(night["charges"])
    figures["money"] = str(sum(r[3] for r in night["charges"]))
    return figures


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks chaos")
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--meters", type=int, default=None, help="default 100000, quick 2000")
    ap.add_argument("--days", type=float, default=None, help="default 1, quick 2")
    ap.add_argument("--speed", default=None, help="simulator speed (default max, quick 4320x)")
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between SIGKILLs of ingest")
    args = ap.parse_args(argv)
    meters = args.meters or (2000 if args.quick else 100_000)
    days = args.days or (2 if args.quick else 1)
    speed = args.speed or ("4320x" if args.quick else "max")
    work = Path(tempfile.mkdtemp(prefix="meters-chaos-"))
    try:
        t0 = time.perf_counter()
        fig = run_chaos(work, meters=meters, days=days, speed=speed, kill_every=args.kill_every)
        fig["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(fig, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)
