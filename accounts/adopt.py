"""An existing lake adopts the account store: on first use its registry (``accounts``, ``contacts``)
and every payment of its payment files (``meters pay`` before the store: one ledger file per
payment) move into the store, and the days the lake settled before are recorded, so no payment is
lost or credited twice.

Idempotent, run by every command that opens the store for the batch, ``meters pay``, ``meters
accounts import`` and ``meters accounts migrate``: a payment file already in the store (channel
``lake``, its reference) is skipped. Payments get numbers in the order of their time, and each day
the lake settled before the store knew it is recorded with the watermark of the payments up to its
end: re-running such a day credits exactly the payments of that day, as the lake did.
"""
from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import sqlalchemy as sa

from meters.nightly_inputs import LAKE_CHANNEL
from meters.schemas import LEDGER

from .payments import insert_payments, next_seq
from .registry import import_from_lake
from .schema import accounts, payments, settled_days
from .store import Store, utcnow

PAYMENT_FILES = "month=*/payment-*.parquet"   # the lake's payment files (billing.ledger, before the store)


def lake_payments(store: Store) -> list[dict]:
    """Every payment row of the lake's payment files, in time order."""
    lake = store.lake
    if not lake.is_local:
        return []
    rows = []
    for f in sorted(lake.table_dir("ledger").glob(PAYMENT_FILES)):
        rows += [r for r in pq.read_table(f, schema=LEDGER).to_pylist() if r["kind"] == "topup" and r["ref"]]
    return sorted(rows, key=lambda r: (r["ts"], r["ref"]))


def adopt_lake(store: Store) -> dict:
    """Bring the lake's registry (an empty store only), payment files and settled days into the store.
    Returns ``{"accounts", "payments", "days"}``: what was imported."""
    lake = store.lake
    out = {"accounts": 0, "payments": 0, "days": 0}
    with store.read() as conn:
        empty = conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 0
        known_days = conn.execute(sa.select(sa.func.count()).select_from(settled_days)).scalar_one()
    if empty and lake.read("accounts", columns=["account_id"]).num_rows:
        out["accounts"] = import_from_lake(store, changed_by="adopt")["accounts"]
    rows = lake_payments(store)
    lake_days = [dt.date.fromisoformat(d) for d in lake.partitions("billing_state")] if not known_days else []
    if not rows and not lake_days:
        return out
    with store.write() as conn:
        have = set(conn.execute(sa.select(payments.c.channel_ref).where(payments.c.channel == LAKE_CHANNEL)).scalars())
        for r in rows:
            if r["ref"] in have:
                continue
            have.add(r["ref"])
            insert_payments(conn, [dict(
                seq=next_seq(conn), channel=LAKE_CHANNEL, channel_ref=r["ref"], account_id=r["account_id"],
                amount_cents=int(r["amount"] * 100), payer=None, received_at=r["ts"].astimezone(dt.timezone.utc),
                reverses=None)])
            out["payments"] += 1
        if lake_days and not conn.execute(sa.select(sa.func.count()).select_from(settled_days)).scalar_one():
            for day in lake_days:   # the lake credited each payment on the day of its time
                end = lake.day_bounds_utc(day)[1]
                w = conn.execute(sa.select(sa.func.coalesce(sa.func.max(payments.c.seq), 0)).where(
                    payments.c.channel == LAKE_CHANNEL, payments.c.received_at < end)).scalar_one()
                conn.execute(sa.insert(settled_days).values(day=day, watermark=int(w), settled_at=utcnow()))
                out["days"] += 1
    return out
