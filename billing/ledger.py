"""The ledger: the one owner of its files and of payments' place in it.

The ``ledger`` table is partitioned by lake-local month. Each billing day D writes one file,
``billing-D.parquet`` (replaced whole when D is re-run): per account its opening balance (first day
only), the day's ``charge`` (the first run's amount), an ``adjustment`` when a re-run prices the day
differently, an ``auto_topup``, and a postpaid bill's ``charge`` — in that order. Each payment
(``meters pay``) is its own file, ``payment-<hash of the reference>.parquet``, in the month of its
time, so a reference is applied once however often it is sent; the nightly run credits the payments
whose time falls in the day.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.lake import Lake
from meters.schemas import LEDGER, UTC_MS

from .days import date_array
from .money_io import cents, money

if TYPE_CHECKING:
    from .accounts import Accounts
    from .day import Settlement
    from .state import Carried

PAYMENT_PREFIX = "payment-"
DAY_STATS = ["account_id", "ts", "kind"]    # statistics of a billing day's file: what readers filter by


def month(day: dt.date) -> str:
    """The ledger partition of a lake-local day."""
    return day.strftime("%Y-%m")


def billing_file_name(day: dt.date) -> str:
    return f"billing-{day.isoformat()}.parquet"


def payment_file_name(ref: str) -> str:
    return f"{PAYMENT_PREFIX}{hashlib.sha256(ref.encode()).hexdigest()[:24]}.parquet"


# -- the billing day's file -------------------------------------------------------------------------
def day_table(accounts: Accounts, grid, carried: Carried, s: Settlement, ts_end: pa.Scalar) -> pa.Table:
    """The day's ledger file: opening balances, charges (first run's amount), adjustments,
    auto top-ups and postpaid bills — in that order per account (built in Arrow: no Python per row)."""
    blocks = []
    refs: list[pa.Array] = []    # the refs' dictionary: one entry per block's constant ref, one per bill
    d = grid.day.isoformat()
    ts_open = pa.scalar(grid.start, UTC_MS)
    st, prepaid = s.prepaid_settled, s.prepaid

    def block(mask, kind, amount, after, ref, ts):
        i = np.flatnonzero(mask)
        if len(i):
            first = sum(len(r) for r in refs)
            refs.append(pa.array([ref]) if isinstance(ref, str) else ref)
            codes = np.full(len(i), first) if isinstance(ref, str) else first + np.arange(len(i))
            blocks.append((i, kind, amount[i], after[i], codes, ts.value))

    after_pay_open = carried.balance  # the opening entry comes before the day's payments
    block(carried.opening, "opening", accounts.opening, after_pay_open, "opening", ts_open)
    after_first = st.after_payments - s.first
    block(prepaid, "charge", -s.first, after_first, f"charge:{d}", ts_end)
    block(prepaid & (s.adjust != 0), "adjustment", -s.adjust, st.after_charge, f"adjustment:{d}", ts_end)
    block(prepaid & (st.topup > 0), "auto_topup", st.topup, st.balance, f"auto_topup:{d}", ts_end)
    starts = date_array(s.bill_start[np.flatnonzero(s.closed)]).cast(pa.string())
    block(s.closed, "charge", -s.bill_cents, s.balance, pc.binary_join_element_wise("bill:", starts, ""), ts_end)
    if not blocks:
        return LEDGER.empty_table()
    o = np.argsort(np.concatenate([b[0] * 8 + k for k, b in enumerate(blocks)]), kind="stable")
    kinds = [b[1] for b in blocks]

    def cat(k):
        return np.concatenate([b[k] for b in blocks])[o]

    kind_codes = np.concatenate([np.full(len(b[0]), kinds.index(b[1]), np.int32) for b in blocks])[o]
    tss = np.concatenate([np.full(len(b[0]), b[5], np.int64) for b in blocks])[o]
    return pa.table({"account_id": accounts.account_arrow.take(pa.array(cat(0))),
                     "ts": pa.array(tss, pa.int64()).cast(UTC_MS),
                     "kind": pa.DictionaryArray.from_arrays(pa.array(kind_codes), pa.array(kinds)).cast(pa.string()),
                     "amount": money(cat(2)), "balance_after": money(cat(3)),
                     "ref": pa.DictionaryArray.from_arrays(pa.array(cat(4).astype(np.int32)),
                                                           pa.concat_arrays(refs)).cast(pa.string())},
                    schema=LEDGER)


def write_day(lake: Lake, day: dt.date, table: pa.Table) -> None:
    lake.write("ledger", table, month(day), file_name=billing_file_name(day), write_statistics=DAY_STATS)


def original_charges(lake: Lake, day: dt.date, accounts: Accounts, table: pa.Table | None = None):
    """Cents of the first ``charge`` of each account in an earlier run of ``day`` (−1 = none), or None.
    ``table``: :func:`first_charges` read once for the run's blocks."""
    t = first_charges(lake, day) if table is None else table
    if t is None:
        return None
    out = np.full(accounts.n, -1, np.int64)
    rows = accounts.index_of(t.column("account_id"))
    ok = rows >= 0
    out[rows[ok]] = -cents(t.column("amount"))[ok]
    return out


def first_charges(lake: Lake, day: dt.date) -> pa.Table | None:
    """The ``charge`` rows of an earlier run of ``day`` (None: not run before)."""
    f = lake.partition_dir("ledger", month(day)) / billing_file_name(day)
    if not f.exists():
        return None
    t = pq.read_table(f, schema=LEDGER, columns=["account_id", "kind", "amount"])
    return t.filter(pc.equal(t.column("kind"), "charge"))


# -- payments -----------------------------------------------------------------------------------------
def write_payment(lake: Lake, row: pa.Table, ref: str, at: dt.datetime) -> None:
    """Record one payment (a one-row ledger table) under its reference, in the month of ``at``."""
    lake.write("ledger", row, at.astimezone(lake.tz).strftime("%Y-%m"), file_name=payment_file_name(ref))


def find_payment(lake: Lake, ref: str):
    """The ledger row of payment ``ref`` (dict) or None."""
    name = payment_file_name(ref)
    for f in sorted(lake.table_dir("ledger").glob(f"month=*/{name}")):
        rows = pq.read_table(f).to_pylist()
        if rows:
            return rows[0]
    return None


def payments_of_day(lake: Lake, day: dt.date) -> pa.Table:
    """The payments (ledger rows) whose time falls in lake-local ``day``."""
    start, end = lake.day_bounds_utc(day)
    d = lake.partition_dir("ledger", month(day))
    files = sorted(d.glob(f"{PAYMENT_PREFIX}*.parquet")) if d.exists() else []
    if not files:
        return LEDGER.empty_table()
    t = pa.concat_tables([pq.read_table(f, schema=LEDGER) for f in files])
    ts = t.column("ts")
    keep = pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type)))
    return t.filter(keep)


def credited(payments: pa.Table, account_ids) -> np.ndarray:
    """Cents of ``payments`` (rows with ``account_id`` and ``amount``) per account of ``account_ids``."""
    ids = account_ids if isinstance(account_ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(account_ids), pa.string())
    out = np.zeros(len(ids), np.int64)
    if payments.num_rows:
        rows = pc.index_in(payments.column("account_id"), value_set=ids).fill_null(-1).to_numpy()
        ok = rows >= 0
        np.add.at(out, rows[ok], cents(payments.column("amount"))[ok])
    return out


def paid_since(lake: Lake, account_id: str, cutoff: dt.datetime | None) -> int:
    """Cents paid to ``account_id`` at or after ``cutoff`` (None: ever)."""
    total = 0
    for f in sorted(lake.table_dir("ledger").glob(f"month=*/{PAYMENT_PREFIX}*.parquet")):
        if cutoff is not None and f.parent.name[len("month="):] < cutoff.astimezone(lake.tz).strftime("%Y-%m"):
            continue
        for r in pq.read_table(f).to_pylist():
            if r["account_id"] == account_id and (cutoff is None or r["ts"] >= cutoff):
                total += int(r["amount"] * 100)
    return total
