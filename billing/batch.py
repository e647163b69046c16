"""The nightly billing run: read → VEE → tariff engine → settlement → write, exactly once per day.

``bill_day(lake, day)`` settles one lake-local day for every account; ``bill_range`` runs days in
order; ``bill_due`` (``meters bill`` without a date) every unsettled day up to yesterday. A day needs
the previous day settled (its ``billing_state`` partition is the carried state: meter registers,
profile, tier counters, balances); the lake's billing start (:mod:`billing.guards`) starts from the
accounts' opening balances.

Before money moves (:mod:`billing.guards`): one run at a time (:mod:`billing.runlock`, exit 5), every
day has ended (exit 4), its readings cover ``min_coverage`` of the meters unless ``allow_estimates``
(exit 4; checked after computing, before writing), the chain of carried states is whole and the
registry has no duplicate ids (exit 6).

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

import contextlib
import datetime as dt
import functools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from meters.errors import MetersError, NothingToDo
from meters import memory
from meters.lake import Lake
from meters.nightly_inputs import NightlyStore, open_nightly_store
from meters.schemas import RUNS, UTC_MS

from . import alerts, guards, runlock, store_inputs
from . import cluster as _cluster
from .accounts import Accounts, no_accounts
from .config import Config
from .day import compute
from .inputs import DayReads, read_day
from .night import BLOCK_SIZE, DayWriter, check_block_size, read_ahead
from .money_io import money
from .state import settled_days

__all__ = ["BLOCK_SIZE", "Config", "DayResult", "bill_day", "bill_due", "bill_range", "settled_days"]

INFLIGHT = guards.INFLIGHT


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
    covered: int = 0                 # accounts whose meter has readings inside the day
    estimated_intervals: int = 0
    estimated: bool = False          # billed below the coverage minimum (--allow-estimates)
    held: int = 0                    # disconnections withheld (accounts' days mostly estimates)
    queued: dict | None = None       # alerts put into the outbox (None: no account store)

    @property
    def coverage(self) -> float:
        return self.covered / self.accounts if self.accounts else 1.0


# -- public API --------------------------------------------------------------------------------------
def bill_day(lake: Lake, day: dt.date, **kw) -> list[DayResult]:
    """Bill one day. When ``day`` was already settled, it and every later settled day are re-run
    (in order). Returns one :class:`DayResult` per day run. Keywords: ``config``, ``progress``,
    ``cluster``, ``allow_estimates``, ``wait`` (seconds for a busy lock), ``now`` (the clock)."""
    return bill_range(lake, day, day, **kw)


def bill_range(lake: Lake, first: dt.date, last: dt.date, *, wait: float | None = None, **kw) -> list[DayResult]:
    """Bill every day from ``first`` to ``last`` in order (re-running settled days, and the settled
    days after ``last`` whose balances depend on them)."""
    if last < first:
        raise MetersError(f"--to {last} is before --from {first}")
    with runlock.hold(lake, wait), guards.damage_refused(lake):
        days = settled_days(lake)
        end = max(last, days[-1]) if days and first <= days[-1] else last
        todo = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
        return _run_days(lake, todo, **kw)


def bill_due(lake: Lake, through: dt.date | None = None, *, wait: float | None = None,
             now: dt.datetime | None = None, **kw) -> list[DayResult]:
    """Catch up: bill every unsettled day from the last settled one (or the billing start, or the first
    day with readings) up to yesterday in the lake's time zone, or ``through``. Nothing to do:
    :class:`meters.errors.NothingToDo`."""
    yesterday = guards.yesterday(lake, now)
    if through is not None:
        guards.check_ended(lake, [through], now)
    target = through or yesterday
    with runlock.hold(lake, wait), guards.damage_refused(lake):
        days = settled_days(lake)
        if days:
            first = days[-1] + dt.timedelta(days=1)
        else:
            first = guards.billing_start(lake)
            if first is None:
                readings = lake.partitions("readings")
                if not readings:
                    raise NothingToDo(f"lake {lake.root} has no readings and no billing start; nothing to bill")
                first = dt.date.fromisoformat(readings[0])
        if first > target:
            raise NothingToDo(f"every day up to {target} is settled (last settled day "
                              f"{days[-1] if days else None}); nothing to bill")
        todo = [first + dt.timedelta(days=i) for i in range((target - first).days + 1)]
        return _run_days(lake, todo, now=now, **kw)


def _run_days(lake, todo, *, config: Config | None = None, progress=None, cluster: str | None = None,
              allow_estimates: bool = False, now: dt.datetime | None = None, db: str | None = None,
              block_size: int = BLOCK_SIZE) -> list[DayResult]:
    cfg = config or Config.load(lake)
    check_block_size(block_size)
    memory.for_batch()     # freed memory kept for the next block (meters/memory.py)
    guards.check_ended(lake, todo, now)
    crashed = guards.interrupted(lake)
    if crashed is not None and crashed not in todo:
        raise MetersError(f"the billing run of {crashed} was interrupted; re-run `meters bill --date {crashed}` first")
    guards.check_chain(lake, todo[0], crashed)
    night = open_nightly_store(lake, db)   # None: the lake's registry and payment files (no account store)
    try:
        run = functools.partial(_run_day, lake, cfg=cfg, progress=progress, allow_estimates=allow_estimates,
                                night=night, snapshot={}, block_size=block_size)
        if cluster is None:
            acc = Accounts(lake, cfg, whole=False) if night is None else None
            results = [run(d, acc=acc) for d in todo]
        else:
            client, local = _cluster.client(cluster)
            try:
                ranges = _cluster.shards(lake, client, block_size=block_size) if night is None else None
                results = [run(d, client=client, ranges=ranges) for d in todo]
            finally:
                client.close()
                if local is not None:
                    local.close()
        if night is not None:
            night.export_registry()
        return results
    finally:
        if night is not None:
            night.close()


def _run_day(lake: Lake, day: dt.date, *, cfg: Config, progress, allow_estimates: bool, acc: Accounts | None = None,
             client=None, ranges: list[tuple[int, int]] | None = None, night: NightlyStore | None = None,
             snapshot: dict | None = None, block_size: int = BLOCK_SIZE) -> DayResult:
    """Compute the day block by block (here, or as Dask tasks on a ``client``), appending each block's
    tables to the day's staged files; check its coverage; then switch the outputs in and commit. With
    the account store (``night``) the day's accounts, contacts and payments come from it, and the
    watermark it read is recorded after the commit."""
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
    stored = store_inputs.read(night, day) if night is not None else None
    writer = DayWriter(lake, day)
    try:
        if client is None:
            if stored is not None:
                acc = _accounts_of(lake, cfg, stored, snapshot)
            if acc.n == 0:
                raise no_accounts(lake)
            reads = DayReads(lake, day, acc, stored)
            with contextlib.closing(read_ahead(lambda b: read_day(lake, day, b, cfg.interval_s, stored, reads),
                                               acc.blocks(block_size))) as blocks:
                for block, inputs in blocks:     # the next block read while this one is computed
                    t0 = lap("read", t0)
                    writer.add(compute(inputs, block, cfg, run_id, reads.recipients(block), lap))
                    t0 = time.perf_counter()
        else:
            if stored is not None:
                ranges = _cluster.shards(lake, client, stored.accounts, block_size=block_size)
            _cluster.compute_day(lake, day, cfg, client, ranges, run_id, stored, writer, res.timings)
            lap("shards", t0)
        out = writer.summary
        res.covered, res.estimated_intervals = out.covered, out.estimated_intervals
        if out.accounts and out.covered < cfg.min_coverage * out.accounts:
            if not allow_estimates:
                raise guards.coverage_error(day, out.covered, out.accounts, cfg.min_coverage)
            res.estimated = True
            ts_end = lake.day_bounds_utc(day)[1] - dt.timedelta(milliseconds=1)
            writer.add_alerts(alerts.estimated_day(day, ts_end, out.covered, out.accounts, cfg.min_coverage))
    except BaseException:
        writer.abort()
        raise
    res.held = writer.kinds.get("disconnect_held", 0)
    t0 = time.perf_counter()
    try:
        _write(lake, day, writer, res)
        if stored is not None:
            store_inputs.write_day(lake, stored)
        t0 = lap("write", t0)
        # the main thread's waits for the writer threads (before each block's hand-off and at the
        # end), apart from the files' finish and switch ('write')
        res.timings["writers"] = writer.waited
        _commit(lake, day, writer, res, run_id, started, t_start)
        if night is not None:       # after the commit (meters.nightly_inputs): a crash before re-reads
            night.record_settled(day, stored.watermark)
    except BaseException as e:
        writer.abort()
        with contextlib.suppress(Exception):   # the audit keeps the failed run too
            _record(lake, day, writer, res, run_id, started, f"failed: {type(e).__name__}: {e}"[:200])
        raise
    t0 = lap("commit", t0)
    res.queued = alerts.queue_day(lake, day)   # idempotently after the commit: a re-run queues nothing new
    lap("queue", t0)
    return res


def _accounts_of(lake: Lake, cfg: Config, stored, last: dict) -> Accounts:
    """The snapshot of the settings in force on the day (``last`` holds the run's previous one,
    reused when they are equal)."""
    if "table" in last and last["table"].equals(stored.accounts):
        return last["acc"]
    last["table"], last["acc"] = stored.accounts, Accounts(lake, cfg, table=stored.accounts, whole=False)
    return last["acc"]


def _write(lake: Lake, day: dt.date, writer: DayWriter, res: DayResult) -> None:
    """Everything of the day but its state, under the in-flight marker (replaced when re-run)."""
    out = writer.summary
    for k in ("accounts", "readings", "intervals", "money_cents", "adjustments_cents", "vee"):
        setattr(res, k, getattr(out, k))
    res.bills = out.bills_n
    (lake.root / INFLIGHT).write_text(day.isoformat())
    writer.finish()
    res.ledger_rows = writer.rows["ledger"]
    res.alerts = Counter(writer.kinds)


def _commit(lake: Lake, day: dt.date, writer: DayWriter, res: DayResult, run_id: str, started: dt.datetime,
            t_start: float) -> None:
    """The state of the day (the commit), then the run record; the in-flight marker goes."""
    writer.commit()
    res.seconds = time.perf_counter() - t_start
    _record(lake, day, writer, res, run_id, started, "estimated" if res.estimated else "settled")
    (lake.root / INFLIGHT).unlink(missing_ok=True)


def _record(lake: Lake, day: dt.date, writer: DayWriter, res: DayResult, run_id: str, started: dt.datetime,
            outcome: str) -> None:
    """Add the run to the day's ``runs`` partition (an audit history: every run is kept)."""
    run = pa.table({"run_id": [run_id], "started_at": pa.array([started], UTC_MS),
                    "duration_s": [res.seconds], "accounts": [res.accounts], "readings_in": [res.readings],
                    "intervals_out": [res.intervals], "charges_out": [writer.rows["charges"]],
                    "ledger_out": [res.ledger_rows], "alerts_out": [sum(writer.kinds.values())],
                    "bills_out": [res.bills], "money": money([res.money_cents]),
                    "vee_counts": [json.dumps(res.vee, sort_keys=True)],
                    "finished_at": pa.array([dt.datetime.now(dt.timezone.utc)], UTC_MS), "who": [runlock.who()],
                    "outcome": [outcome], "coverage": [res.coverage],
                    "estimated_intervals": [res.estimated_intervals]}, schema=RUNS)
    before = lake.read("runs", day.isoformat())
    lake.replace_partition("runs", day.isoformat(), pa.concat_tables([before, run]))
