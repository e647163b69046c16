"""Payments and top-ups (``meters pay``): one ledger file per payment reference, so a reference is
applied once however often it is sent. The nightly settlement credits the payments whose ``ts``
falls in the billing day."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal, InvalidOperation

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.errors import MetersError
from meters.lake import Lake
from meters.schemas import ALERTS, LEDGER

from .money_io import cents, fmt, money

PAYMENT_PREFIX = "payment-"


def payment_file_name(ref: str) -> str:
    return f"{PAYMENT_PREFIX}{hashlib.sha256(ref.encode()).hexdigest()[:24]}.parquet"


def parse_amount(amount) -> int:
    """A positive amount with at most 2 decimals → cents (clear error otherwise)."""
    try:
        d = Decimal(str(amount).strip())
    except InvalidOperation:
        raise MetersError(f"amount {amount!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise MetersError(f"amount {amount!r} must be a positive number")
    if d != d.quantize(Decimal("0.01")):
        raise MetersError(f"amount {amount!r} has more than 2 decimal places")
    if d > Decimal("100000000"):
        raise MetersError(f"amount {amount!r} is implausibly large")
    return int(d * 100)


def find_payment(lake: Lake, ref: str):
    """The ledger row of payment ``ref`` (dict) or None."""
    name = payment_file_name(ref)
    for f in sorted(lake.table_dir("ledger").glob(f"month=*/{name}")):
        rows = pq.read_table(f).to_pylist()
        if rows:
            return rows[0]
    return None


def day_payments(lake: Lake, day: dt.date, account_ids: list[str] | np.ndarray) -> np.ndarray:
    """Cents paid during lake-local ``day`` per account of ``account_ids`` (same order)."""
    start, end = lake.day_bounds_utc(day)
    out = np.zeros(len(account_ids), np.int64)
    d = lake.partition_dir("ledger", day.strftime("%Y-%m"))
    files = sorted(d.glob(f"{PAYMENT_PREFIX}*.parquet")) if d.exists() else []
    if not files:
        return out
    t = pa.concat_tables([pq.read_table(f, schema=LEDGER) for f in files])
    ts = t.column("ts")
    keep = pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type)))
    t = t.filter(keep)
    if not t.num_rows:
        return out
    index = {a: i for i, a in enumerate(account_ids)}
    for a, c in zip(t.column("account_id").to_pylist(), cents(t.column("amount"))):
        i = index.get(a)
        if i is not None:
            out[i] += c
    return out


def current_balance(lake: Lake, account_id: str) -> tuple[int, dt.date | None, bool]:
    """(balance in cents now, last settled day, disconnected): the last settled state plus later
    payments."""
    from .batch import settled_days  # late import: batch imports this module

    days = settled_days(lake)
    last = days[-1] if days else None
    bal = None
    disconnected = False
    if last is not None:
        st = lake.read("billing_state", last.isoformat(), columns=["account_id", "balance", "disconnected"])
        st = st.filter(pc.equal(st.column("account_id"), account_id))
        if st.num_rows:
            bal = int(cents(st.column("balance"))[0])
            disconnected = bool(st.column("disconnected")[0].as_py())
    if bal is None:
        acc = lake.read("accounts", columns=["account_id", "balance"])
        acc = acc.filter(pc.equal(acc.column("account_id"), account_id))
        bal = int(cents(acc.column("balance"), null=0)[0]) if acc.num_rows else 0
    cutoff = lake.day_bounds_utc(last)[1] if last is not None else None
    for f in sorted(lake.table_dir("ledger").glob(f"month=*/{PAYMENT_PREFIX}*.parquet")):
        if cutoff is not None and f.parent.name[len("month="):] < cutoff.astimezone(lake.tz).strftime("%Y-%m"):
            continue
        for r in pq.read_table(f).to_pylist():
            if r["account_id"] == account_id and (cutoff is None or r["ts"] >= cutoff):
                bal += int(r["amount"] * 100)
    return bal, last, disconnected


def reconnected_by_payment(lake: Lake, day: dt.date) -> set[str]:
    """Accounts whose reconnection a payment of ``day`` already ordered (``meters pay`` emits it at
    once; the nightly run then does not repeat it)."""
    d = lake.partition_dir("alerts", day.isoformat())
    out: set[str] = set()
    for f in sorted(d.glob(f"{PAYMENT_PREFIX}*.parquet")) if d.exists() else []:
        t = pq.read_table(f, schema=ALERTS)
        out.update(a for a, k in zip(t.column("account_id").to_pylist(), t.column("kind").to_pylist())
                   if k == "reconnect")
    return out


def pay(lake: Lake, account_id: str, amount, ref: str, at: dt.datetime | None = None) -> dict:
    """Record a payment of ``amount`` to ``account_id`` under reference ``ref`` (idempotent).

    Returns ``{"status": "applied" | "duplicate", "account_id", "amount", "balance", "ref", "ts"}``.
    Raises :class:`MetersError` for an unknown account, a bad amount, an empty reference, or a
    reference already used for another account or amount."""
    ref = (ref or "").strip()
    if not ref:
        raise MetersError("a payment needs a reference (--ref), so that it is applied once only")
    c = parse_amount(amount)
    accounts = lake.read("accounts", columns=["account_id"]).column("account_id").to_pylist()
    if account_id not in set(accounts):
        raise MetersError(f"unknown account {account_id!r} (no such user number in the lake's accounts)")
    at = at or dt.datetime.now(dt.timezone.utc)
    if at.tzinfo is None:
        raise MetersError("payment time must carry a UTC offset")
    at = at.astimezone(dt.timezone.utc).replace(microsecond=(at.microsecond // 1000) * 1000)
    with lake.lock("payments"):
        old = find_payment(lake, ref)
        if old is not None:
            if old["account_id"] != account_id or int(old["amount"] * 100) != c:
                raise MetersError(f"reference {ref!r} was already used for {old['amount']} to account "
                                  f"{old['account_id']}; a reference is applied once only")
            return {"status": "duplicate", "account_id": account_id, "amount": fmt(c), "ref": ref,
                    "balance": fmt(int(old["balance_after"] * 100)), "ts": old["ts"].isoformat()}
        balance, last, disconnected = current_balance(lake, account_id)
        if last is not None and lake.local_day(at) <= last:
            raise MetersError(f"payment time {at.isoformat()} falls in {lake.local_day(at)}, already "
                              f"settled (last settled day {last}); give a later time")
        balance += c
        from .batch import Config

        reconnect = (disconnected and balance > Config.load(lake).policy.reconnect_above
                     and account_id not in reconnected_by_payment(lake, lake.local_day(at)))
        row = pa.table({"account_id": [account_id], "ts": pa.array([at], LEDGER.field("ts").type),
                        "kind": ["topup"], "amount": money([c]), "balance_after": money([balance]),
                        "ref": [ref]})
        lake.write("ledger", row, at.astimezone(lake.tz).strftime("%Y-%m"), file_name=payment_file_name(ref))
        _payment_alerts(lake, account_id, c, balance, ref, at, reconnect)
    return {"status": "applied", "account_id": account_id, "amount": fmt(c), "ref": ref,
            "balance": fmt(balance), "ts": at.isoformat(), "reconnect": reconnect}


def _payment_alerts(lake: Lake, account_id: str, c: int, balance: int, ref: str, at: dt.datetime,
                    reconnect: bool) -> None:
    contacts = lake.read("contacts")
    contacts = contacts.filter(pc.equal(contacts.column("account_id"), account_id))
    recipients = contacts.column("recipient").to_pylist() or [f"account:{account_id}"]
    msg = (f"Payment of {fmt(c)} received for account {account_id} (ref {ref}); "
           f"balance {fmt(balance)}.")
    kinds, msgs = ["payment"], [msg]
    if reconnect:
        kinds.append("reconnect")
        msgs.append(f"Reconnection ordered for account {account_id}: balance {fmt(balance)} after payment "
                    f"(ref {ref}).")
    n = len(recipients)
    rows = pa.table({"account_id": [account_id] * n * len(kinds),
                     "ts": pa.array([at] * n * len(kinds), ALERTS.field("ts").type),
                     "kind": [k for k in kinds for _ in recipients], "recipient": recipients * len(kinds),
                     "message": [m for m in msgs for _ in recipients]})
    lake.write("alerts", rows, lake.local_day(at).isoformat(), file_name=payment_file_name(ref))
