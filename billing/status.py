"""``meters bill status`` and ``meters bill reset``: where the lake's billing stands, and moving the
billing start of a lake that has issued no bill yet."""
from __future__ import annotations

import datetime as dt
import shutil
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.errors import MetersError
from meters.lake import Lake, conform
from meters.nightly_inputs import open_nightly_store
from meters.readings import read_window
from meters.schemas import LEDGER, RUNS, UTC_MS, table

from . import guards, runlock
from .config import Config
from .ledger import PAYMENT_PREFIX, billing_file_name, month
from .state import settled_days

def coverage(lake: Lake, day: dt.date, interval_s: int) -> dict:
    """Accounts' meters with at least one reading inside ``day`` (as the run counts them: from half
    an interval after its start to half an interval after its end)."""
    meters = lake.read("accounts", columns=["meter_id"]).column("meter_id")
    start, end = lake.day_bounds_utc(day)
    half = dt.timedelta(seconds=interval_s // 2)
    parts = read_window(lake, start + half, end + half, ["meter_id"])
    seen = pa.chunked_array([t.column("meter_id") for t in parts], pa.int64()).unique() if parts else pa.array([], pa.int64())
    n = len(meters)
    k = int(pc.sum(pc.is_in(meters, value_set=seen)).as_py() or 0) if n else 0
    return {"day": day.isoformat(), "meters": n, "with_readings": k, "share": round(k / n, 4) if n else None}


def status(lake: Lake, now: dt.datetime | None = None) -> dict:
    """Last settled day, the billing start, the next day and its coverage, the run in flight, the last run."""
    cfg = Config.load(lake)
    settled = settled_days(lake)
    start = guards.billing_start(lake)
    last = settled[-1] if settled else None
    yesterday = guards.yesterday(lake, now)
    nxt = last + dt.timedelta(days=1) if last else start
    if nxt is None and lake.partitions("readings"):
        nxt = dt.date.fromisoformat(lake.partitions("readings")[0])
    runs = lake.read("runs")
    last_run = None
    if runs.num_rows:
        r = runs.sort_by([("started_at", "ascending")]).slice(runs.num_rows - 1).to_pylist()[0]
        last_run = {k: (str(v) if v is not None and not isinstance(v, (int, float, str)) else v)
                    for k, v in r.items() if k in ("run_id", "day", "started_at", "finished_at", "who", "outcome",
                                                   "money", "coverage", "accounts")}
    held = runlock.holder(lake)
    return {
        "lake": str(lake.root), "timezone": lake.timezone_name, "billing_start": _iso(start),
        "last_settled": _iso(last), "yesterday": yesterday.isoformat(),
        "unsettled_through_yesterday": max(0, (yesterday - nxt).days + 1) if nxt else 0,
        "next_day": _iso(nxt), "next_day_ended": bool(nxt and nxt <= yesterday),
        "next_day_coverage": coverage(lake, nxt, cfg.interval_s) if nxt else None,
        "min_coverage": cfg.min_coverage,
        "in_flight": held, "interrupted": _iso(guards.interrupted(lake)),
        "bills_issued": lake.read("bills", columns=["account_id"]).num_rows, "last_run": last_run,
    }


def _iso(d):
    return d.isoformat() if d else None


def reset(lake: Lake, before: dt.date, *, wait: float | None = None, db: str | None = None) -> dict:
    """Make ``before`` the lake's billing start (nothing before it is billed): remove what billing
    wrote (carried states, charges, intervals, the day's ledger and alert files, runs stay as the audit)
    — refused once a bill was issued, or when a payment falls before the new start."""
    with runlock.hold(lake, wait):
        n_bills = lake.read("bills", columns=["account_id"]).num_rows
        if n_bills:
            raise MetersError(f"this lake has issued {n_bills} bill(s); its billing start cannot move "
                              f"(re-bill from the start instead)")
        start_utc = lake.day_bounds_utc(before)[0]
        for f in sorted(lake.table_dir("ledger").glob(f"month=*/{PAYMENT_PREFIX}*.parquet")):
            t = pq.read_table(f, schema=LEDGER)
            early = t.filter(pc.less(t.column("ts"), pa.scalar(start_utc, t.column("ts").type)))
            if early.num_rows:
                r = early.to_pylist()[0]
                raise MetersError(f"payment {r['ref']} of {lake.local_day(r['ts'])} falls before {before}; "
                                  f"the billing start must not pass a payment")
        night = open_nightly_store(lake, db)
        if night is not None:       # the account store forgets the settled days (refused: a payment before)
            try:
                night.reset_settled(before)
            finally:
                night.close()
        old = guards.billing_start(lake)
        days = sorted(set(settled_days(lake)) | set(guards.billed_days(lake)))
        for d in days:
            key = d.isoformat()
            for name in ("billing_state", "charges", "charge_lines", "intervals"):
                shutil.rmtree(lake.partition_dir(name, key), ignore_errors=True)
            (lake.partition_dir("ledger", month(d)) / billing_file_name(d)).unlink(missing_ok=True)
            (lake.partition_dir("ledger", month(d)) / f"payments-{key}.parquet").unlink(missing_ok=True)
            shutil.rmtree(lake.partition_dir("payments", key), ignore_errors=True)
            (lake.partition_dir("alerts", key) / "billing.parquet").unlink(missing_ok=True)
            for name in ("bills", "bill_lines"):
                (lake.partition_dir(name, month(d)) / f"bills-{key}.parquet").unlink(missing_ok=True)
        (lake.root / guards.INFLIGHT).unlink(missing_ok=True)
        guards.set_start(lake, before, runlock.who())
        now = dt.datetime.now(dt.timezone.utc)
        rec = pa.table({"run_id": [f"reset-{uuid.uuid4().hex[:8]}"], "started_at": pa.array([now], UTC_MS),
                        "duration_s": [0.0], "finished_at": pa.array([now], UTC_MS), "who": [runlock.who()],
                        "outcome": [f"reset: billing start {old} -> {before}, {len(days)} billed day(s) removed"]},
                       schema=pa.schema([RUNS.field(n) for n in ("run_id", "started_at", "duration_s",
                                                                 "finished_at", "who", "outcome")]))
        prev = lake.read("runs", before.isoformat())
        lake.replace_partition("runs", before.isoformat(), pa.concat_tables([prev, conform(rec, table("runs"))]))
        return {"billing_start": before.isoformat(), "previous_start": _iso(old), "days_removed": len(days)}
