"""A billing day read from the account store (:mod:`meters.nightly_inputs`, found by entry point;
billing never imports the account service): the settings and contacts in force on the day, the
payments to credit on it and the watermark to record after the day's commit — and what the run
writes of them into the lake: the day's ``payments`` partition and its ledger entries."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.lake import Lake
from meters.nightly_inputs import LAKE_CHANNEL, NightlyStore
from meters.schemas import LEDGER, PAYMENTS, UTC_MS

from . import ledger
from .money_io import cents, money


@dataclass
class StoreDay:
    """What the store said about one day (picklable: shipped to cluster shards)."""

    day: dt.date
    accounts: pa.Table      # the lake's ``accounts`` schema, settings in force on the day
    contacts: pa.Table      # the lake's ``contacts`` schema
    payments: pa.Table      # the payments credited on the day (``meters.nightly_inputs``)
    watermark: int


def read(night: NightlyStore, day: dt.date) -> StoreDay:
    payments, w = night.payments_for_day(day)
    return StoreDay(day, night.settings_in_force(day), night.contacts_in_force(day), payments, w)


def payments_table(sd: StoreDay) -> pa.Table:
    """The day's partition of the lake's ``payments`` table."""
    p = sd.payments
    return pa.table({"seq": p.column("seq"), "account_id": p.column("account_id"), "amount": p.column("amount"),
                     "received_at": p.column("received_at").cast(UTC_MS), "channel": p.column("channel"),
                     "channel_ref": p.column("channel_ref"), "payer": p.column("payer"),
                     "reverses": p.column("reverses")}, schema=PAYMENTS)


def _balances_before(lake: Lake, sd: StoreDay) -> dict[str, int]:
    """Each account's balance before the day: the carried state of the day before, or the opening."""
    out = dict(zip(sd.accounts.column("account_id").to_pylist(), cents(sd.accounts.column("balance"), null=0)))
    prev = (sd.day - dt.timedelta(days=1)).isoformat()
    if prev in lake.partitions("billing_state"):
        st = lake.read("billing_state", prev, columns=["account_id", "balance"])
        out.update(zip(st.column("account_id").to_pylist(), cents(st.column("balance"), null=0)))
    return out


def ledger_table(lake: Lake, sd: StoreDay) -> pa.Table:
    """The ledger entries of the day's payments (``topup``; a reversal is negative), in commit order,
    each with the balance after it. Payments adopted from the lake's payment files keep those."""
    p = sd.payments.filter(pc.not_equal(sd.payments.column("channel"), LAKE_CHANNEL))
    if not p.num_rows:
        return LEDGER.empty_table()
    bal = _balances_before(lake, sd)
    after = []
    for a, c in zip(p.column("account_id").to_pylist(), cents(p.column("amount"))):
        bal[a] = bal.get(a, 0) + int(c)
        after.append(bal[a])
    refs = [f"{ch}:{r}" for ch, r in zip(p.column("channel").to_pylist(), p.column("channel_ref").to_pylist())]
    return pa.table({"account_id": p.column("account_id"), "ts": p.column("received_at").cast(UTC_MS),
                     "kind": ["topup"] * p.num_rows, "amount": p.column("amount").cast(LEDGER.field("amount").type),
                     "balance_after": money(np.array(after, np.int64)), "ref": refs}, schema=LEDGER)


def write_day(lake: Lake, sd: StoreDay) -> None:
    """The day's ``payments`` partition and ledger file (replaced when the day is re-run)."""
    lake.replace_partition("payments", sd.day.isoformat(), payments_table(sd))
    lake.write("ledger", ledger_table(lake, sd), ledger.month(sd.day), file_name=f"payments-{sd.day.isoformat()}.parquet")
