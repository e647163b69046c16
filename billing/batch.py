"""The nightly billing run: read → VEE → tariff engine → settlement → write, exactly once per day.

``bill_day(lake, day)`` settles one lake-local day for every account; ``bill_range`` runs days in
order. A day needs the previous day settled (its ``billing_state`` partition is the carried state:
meter registers, profile, tier counters, balances); the first day ever billed starts from the
accounts' opening balances.

Exactly once:

- every output of day D is a pure function of (state of D−1, readings of D, payments of D, registry,
  and the ledger's first charge of D): re-running D writes the same money;
- day-partitioned outputs are replaced atomically (``Lake.replace_partition``); ledger, alerts and
  bills are one file per day with a fixed name (``billing-D.parquet``) replaced by atomic rename;
- the ``billing_state`` partition of D is written last: it is the commit. A crash before it leaves the
  state of D−1 intact and a marker (``.billing-inflight``) that makes the next day refuse to run until
  D is re-run;
- re-running an already settled day D re-runs D and every later settled day (their balances depend
  on D); the ledger keeps the first run's ``charge`` and records the difference as an
  ``adjustment``, so late readings correct the money without a second charge.
"""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from meters.errors import MetersError
from meters.lake import Lake
from meters.schemas import UTC_MS

from . import alerts, cluster, ledger, outputs, state
from .accounts import Accounts
from .config import Config
from .day import DayOutput, compute
from .inputs import read_day
from .money_io import money
from .state import settled_days

__all__ = ["Config", "DayResult", "bill_day", "bill_range", "settled_days"]

INFLIGHT = ".billing-inflight"


@dataclass
class DayResult:
    day: dt.date
    run_id: str
    accounts: int = 0
    readings: int = 0
    intervals: int = 0
    money_cents: int = 0
    adjustments_cents: int = 0
    bills: int = 0
    ledger_rows: int = 0
    alerts: Counter = field(default_factory=Counter)
    vee: dict = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


def _inflight(lake: Lake) -> dt.date | None:
    p = lake.root / INFLIGHT
    return dt.date.fromisoformat(p.read_text().strip()) if p.exists() else None


# -- public API --------------------------------------------------------------------------------------
def bill_day(lake: Lake, day: dt.date, *, config: Config | None = None, progress=None,
             cluster: str | None = None) -> list[DayResult]:
    """Bill one day. When ``day`` was already settled, it and every later settled day are re-run
    (in order). Returns one :class:`DayResult` per day run."""
    with lake.lock("billing"):
        days = settled_days(lake)
        last = days[-1] if days else None
        if last is not None and day <= last:
            if day < days[0]:
                raise MetersError(f"billing of this lake starts on {days[0]}; cannot bill {day}")
            todo = [day + dt.timedelta(days=i) for i in range((last - day).days + 1)]
        else:
            todo = [day]
        return _run_days(lake, todo, config, progress, cluster)


def bill_range(lake: Lake, first: dt.date, last: dt.date, *, config: Config | None = None,
               progress=None, cluster: str | None = None) -> list[DayResult]:
    """Bill every day from ``first`` to ``last`` in order (re-running settled days, and the settled
    days after ``last`` whose balances depend on them)."""
    if last < first:
        raise MetersError(f"--to {last} is before --from {first}")
    with lake.lock("billing"):
        days = settled_days(lake)
        end = max(last, days[-1]) if days and first <= days[-1] else last
        if days and first < days[0]:
            raise MetersError(f"billing of this lake starts on {days[0]}; cannot bill {first}")
        todo = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
        return _run_days(lake, todo, config, progress, cluster)


def _run_days(lake, todo, config, progress, cluster_spec=None) -> list[DayResult]:
    cfg = config or Config.load(lake)
    crashed = _inflight(lake)
    if crashed is not None and crashed not in todo:
        raise MetersError(f"the billing run of {crashed} was interrupted; re-run `meters bill --date {crashed}` first")
    days = set(settled_days(lake))
    prev = todo[0] - dt.timedelta(days=1)
    if days and prev not in days and todo[0] != min(days):   # (re-running the first billed day is fine)
        raise MetersError(f"day {prev} is not settled (last settled day {max(days)}); bill it first, "
                          f"or use --from {max(days) + dt.timedelta(days=1)} --to {todo[-1]}")
    if cluster_spec is None:
        acc = Accounts(lake, cfg)
        return [_run_day(lake, d, cfg, progress, acc) for d in todo]
    client, local = cluster.client(cluster_spec)
    try:
        ranges = cluster.shards(lake, client)
        return [_run_day(lake, d, cfg, progress, client=client, ranges=ranges) for d in todo]
    finally:
        client.close()
        if local is not None:
            local.close()


def _run_day(lake: Lake, day: dt.date, cfg: Config, progress, acc: Accounts | None = None, client=None,
             ranges: list[tuple[int, int]] | None = None) -> DayResult:
    """Compute the day (here, or over meter shards on a Dask ``client``), then write and commit."""
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    res = DayResult(day=day, run_id=run_id)

    def lap(name, t0):
        res.timings[name] = res.timings.get(name, 0.0) + time.perf_counter() - t0
        if progress:
            progress(day, name)
        return time.perf_counter()

    t0 = time.perf_counter()
    if client is None:
        inputs = read_day(lake, day, acc, cfg.interval_s)
        t0 = lap("read", t0)
        out = compute(inputs, acc, cfg, run_id, alerts.Recipients(lake, acc), lap)
    else:
        out = cluster.compute_day(lake, day, cfg, client, ranges, run_id)
        res.timings.update(out.timings)
        lap("shards", t0)
    t0 = time.perf_counter()
    _write(lake, day, out, res)
    t0 = lap("write", t0)
    _commit(lake, day, out, res, run_id, started, t_start)
    lap("commit", t0)
    return res


def _write(lake: Lake, day: dt.date, out: DayOutput, res: DayResult) -> None:
    """Everything of the day but its state, under the in-flight marker (replaced when re-run)."""
    for k in ("accounts", "readings", "intervals", "money_cents", "adjustments_cents", "vee"):
        setattr(res, k, getattr(out, k))
    res.bills = out.bills_n
    (lake.root / INFLIGHT).write_text(day.isoformat())
    if out.intervals_table is None:       # written by the shards: switch them in
        outputs.switch_intervals(lake, day, out.intervals_files)
    else:
        outputs.write_intervals(lake, day, out.intervals_table)
    lake.replace_partition("charges", day.isoformat(), out.charges)
    lake.replace_partition("charge_lines", day.isoformat(), out.charge_lines)
    ledger.write_day(lake, day, out.ledger)
    alerts.write_day(lake, day, out.alerts)
    outputs.write_bills(lake, day, out.bills, out.bill_lines)
    res.ledger_rows = out.ledger.num_rows
    res.alerts = Counter(out.alerts.column("kind").to_pylist())


def _commit(lake: Lake, day: dt.date, out: DayOutput, res: DayResult, run_id: str, started: dt.datetime,
            t_start: float) -> None:
    """The state of the day (the commit), then the run record; the in-flight marker goes."""
    state.commit(lake, day, out.state)
    res.seconds = time.perf_counter() - t_start
    run = pa.table({"run_id": [run_id], "started_at": pa.array([started], UTC_MS),
                    "duration_s": [res.seconds], "accounts": [res.accounts], "readings_in": [res.readings],
                    "intervals_out": [res.intervals], "charges_out": [out.charges.num_rows],
                    "ledger_out": [res.ledger_rows], "alerts_out": [out.alerts.num_rows],
                    "bills_out": [res.bills], "money": money([res.money_cents]),
                    "vee_counts": [json.dumps(res.vee, sort_keys=True)]})
    lake.replace_partition("runs", day.isoformat(), run)
    (lake.root / INFLIGHT).unlink(missing_ok=True)
