"""The billing day's output tables — intervals, charges, charge lines, bills and bill lines — and
their files (the ledger is :mod:`billing.ledger`'s, alerts :mod:`billing.alerts`', the carried state
:mod:`billing.state`'s)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from meters.lake import Lake
from meters.schemas import BILL_LINES, BILLS, CHARGES, UTC_S

from . import alerts, ledger, vee
from .accounts import Accounts
from .days import date_array
from .money import allocate_cents_grouped, to_cents
from .money_io import money

# statistics only where readers filter (they cost more than the encoding on the other columns);
# zstd level 1: as small as level 3 on interval data (measured), and faster to write and read
INTERVAL_STATS = ["meter_id", "ts"]
# … likewise the night's other outputs: the account service finds an account's row group by
# ``account_id`` (billing_state also by meter), reports filter the ledger by time and kind, bills by
# period, alerts by kind and id (200k accounts, a month end: 0.55 → 0.44 s CPU for the same files)
STATS = {"charges": ["account_id"], "charge_lines": ["account_id"], "billing_state": ["account_id", "meter_id"],
         "ledger": ledger.DAY_STATS, "bills": ["account_id", "period_start"],
         "bill_lines": ["account_id", "period_start"], "alerts": alerts.DAY_STATS}
INTERVAL_OPTIONS = {"compression_level": 1}


@dataclass(frozen=True)
class IntervalRows:
    """A block's validated intervals as the VEE left them (one row of slots a meter), made into the
    ``intervals`` table by whoever writes it (:meth:`table`): the night's intervals writer thread or a
    shard, not the night's main thread (0.5 s of a 1M-meter night's critical path)."""

    meter_ids: np.ndarray
    slot_end: np.ndarray
    q_units: np.ndarray
    quality: np.ndarray
    flag: np.ndarray

    def table(self) -> pa.Table:
        """The ``intervals`` rows, quality and flag dictionary-encoded (the lake's staged writes take
        them as they are: see :meth:`meters.lake.Lake.write_staged`)."""
        return _intervals_table(self.meter_ids, self.slot_end, self.q_units, self.quality, self.flag)


def _intervals_table(meter_ids, slot_end, q_units, quality, flag) -> pa.Table:
    n, S = q_units.shape
    qual = pa.DictionaryArray.from_arrays(pa.array(quality.ravel(), pa.int8()), pa.array(vee.QUALITY_NAMES))
    f = flag.ravel()
    flg = pa.DictionaryArray.from_arrays(pa.array(f, pa.int8(), mask=f == vee.OK), pa.array(vee.FLAG_NAMES))
    return pa.table({"meter_id": np.repeat(meter_ids, S), "ts": _interval_ends(slot_end.tobytes(), n),
                     "quantity": q_units.ravel(), "quality": qual, "flag": flg})


@lru_cache(maxsize=2)
def _interval_ends(slot_end: bytes, n: int) -> pa.Array:
    """The ``ts`` column of ``n`` meters' day (``slot_end``: the int64 slot ends, as bytes), the same
    for every block of a night's block size: built once (blocks share it; Arrow arrays are immutable)."""
    return pa.array(np.tile(np.frombuffer(slot_end, np.int64), n), pa.int64()).cast(UTC_S)


def write_intervals(lake: Lake, day: dt.date, table: pa.Table) -> None:
    lake.replace_partition("intervals", day.isoformat(), table, pieces=2, stats=INTERVAL_STATS,
                           **INTERVAL_OPTIONS)


def stage_intervals(lake: Lake, day: dt.date) -> None:
    """Before shards write their intervals files (:func:`write_interval_piece`)."""
    lake.stage("intervals", day.isoformat())


def write_interval_piece(lake: Lake, day: dt.date, table: pa.Table, lo: int) -> list[str]:
    """One shard's intervals file (meters from ``lo``), invisible until :func:`switch_intervals`."""
    return lake.write_staged("intervals", day.isoformat(), table, pieces=1, stats=INTERVAL_STATS,
                             prefix=f"{lo:020d}-", **INTERVAL_OPTIONS)


def switch_intervals(lake: Lake, day: dt.date, names: list[str]) -> None:
    lake.switch("intervals", day.isoformat(), names)


def charges_table(acc: Accounts, day_qty, today_cents, run_id: str, estimated) -> pa.Table:
    return pa.table({"account_id": acc.account_arrow, "quantity": day_qty, "amount": money(today_cents),
                     "tariff_id": acc.tariff_ids, "run_id": _repeated(run_id, acc.n), "estimated": estimated},
                    schema=CHARGES)


def _repeated(text: str, n: int) -> pa.Array:
    """``n`` times ``text`` as a string column (built in Arrow: no Python list of ``n`` strings)."""
    return pa.repeat(pa.scalar(text, pa.string()), n)


def line_name(acc: Accounts, version: int, p: int) -> str:
    period = acc.tables.versions[version].periods[p] if p < acc.tables.versions[version].n_periods else None
    if period is None:
        return "all"
    return period.band if period.band != "all" else period.name


def charge_lines(acc: Accounts, priced, before, same_period) -> pa.Table:
    """The day's change of each account's period-to-date lines (tier × band)."""
    keep = same_period[:, None, None]
    dq = priced.line_quantity - np.where(keep, before.line_qty, 0.0)
    da = priced.line_amount - np.where(keep, before.line_amount, 0.0)
    a, p, t = np.nonzero((dq != 0) | (da != 0))
    ver = priced.bill_version[a]
    P = priced.line_quantity.shape[1]
    names = pa.array([line_name(acc, v, pp) for v in range(len(acc.tables.versions)) for pp in range(P)],
                     pa.string())
    rows = {"account_id": acc.account_arrow.take(pa.array(a)), "tier": (t + 1).astype(np.int32),
            "band": names.take(pa.array(ver.astype(np.int64) * P + p)),   # (no Python string per line)
            "quantity": dq[a, p, t], "amount": da[a, p, t], "unit_price": acc.tables.prices[ver, p, t]}
    return pa.table(rows)


def bill_lines(acc: Accounts, priced, closed, bill_start):
    """Bill lines (tier × band, plus tier 0 for fixed and minimum charges) of the closed periods and
    each bill's total: the rounded period cost, its lines allocated so that they sum to it.
    ``bill_start``: day numbers the bills start (a first bill: the account's first billed day).
    Built in numpy and Arrow, every bill at once."""
    bills = np.flatnonzero(closed)
    bill_cents = np.zeros(acc.n, np.int64)
    totals = to_cents(priced.bill_total[bills]) if len(bills) else np.zeros(0, np.int64)
    bill_cents[bills] = totals
    lq, la = priced.line_quantity[bills], priced.line_amount[bills]
    b, p, t = np.nonzero((lq != 0) | (la != 0))           # per bill: band-major, then tier
    ver = priced.bill_version[bills].astype(np.int64)
    extra = (priced.bill_fixed[bills] + priced.bill_minimum[bills]).astype(np.float64)
    fb = np.flatnonzero(extra != 0)                      # a fixed line after the bill's other lines
    P = priced.line_quantity.shape[1]
    names = pa.array([line_name(acc, v, pp) for v in range(len(acc.tables.versions)) for pp in range(P)] + ["fixed"],
                     pa.string())
    bill = np.concatenate([b, fb])
    order = np.lexsort((np.concatenate([np.zeros(len(b), np.int8), np.ones(len(fb), np.int8)]), bill))
    bill = bill[order]
    amount = np.concatenate([la[b, p, t], extra[fb]])[order]
    price = pa.array(np.concatenate([acc.tables.prices[ver[b], p, t], np.zeros(len(fb))])[order],
                     mask=np.concatenate([np.zeros(len(b), bool), np.ones(len(fb), bool)])[order])
    cents = allocate_cents_grouped(amount, bill, totals)
    table = pa.table({"account_id": acc.account_arrow.take(pa.array(bills[bill], pa.int64())),
                      "period_start": date_array(bill_start[bills][bill]),
                      "tier": np.concatenate([t + 1, np.zeros(len(fb), np.int64)])[order].astype(np.int32),
                      "band": names.take(pa.array(np.concatenate([ver[b] * P + p, np.full(len(fb), len(names) - 1)])[order])),
                      "quantity": np.concatenate([lq[b, p, t], np.zeros(len(fb))])[order],
                      "unit_price": price, "amount": money(cents)}, schema=BILL_LINES)
    return table, bill_cents


def bills_table(acc: Accounts, priced, s, run_id: str) -> pa.Table:
    """The day's bills from its settlement ``s`` (:class:`billing.day.Settlement`): a first bill is
    ``partial`` (from the account's first billed day), one closed on a mostly estimated day ``estimated``."""
    a = np.flatnonzero(s.closed)
    return pa.table({"account_id": acc.account_arrow.take(pa.array(a)),
                     "period_start": date_array(s.bill_start[a]),
                     "period_end": date_array(priced.bill_end[a]),
                     "quantity": priced.bill_quantity[a], "amount": money(s.bill_cents[a]),
                     "due_date": date_array(np.full(len(a), s.due_day)), "run_id": _repeated(run_id, len(a)),
                     "partial": s.partial[a], "estimated": s.estimated[a]},
                    schema=BILLS)


def write_bills(lake: Lake, day: dt.date, bills: pa.Table, lines: pa.Table) -> None:
    """The day's bills and bill lines: one file each in the month, replaced when the day is re-run."""
    name = f"bills-{day.isoformat()}.parquet"
    lake.write("bills", bills, day.strftime("%Y-%m"), file_name=name, write_statistics=STATS["bills"])
    lake.write("bill_lines", lines, day.strftime("%Y-%m"), file_name=name, write_statistics=STATS["bill_lines"])
