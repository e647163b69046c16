"""Payments and top-ups (``meters pay``): checked, recorded once per reference in the ledger
(:mod:`billing.ledger` owns where), announced (:mod:`billing.alerts`). The nightly settlement
credits the payments whose ``ts`` falls in the billing day."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.compute as pc

from meters.errors import MetersError
from meters.lake import Lake
from meters.schemas import LEDGER

from . import alerts, ledger, state
from .config import Config
from .money_io import cents, fmt, money


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


def current_balance(lake: Lake, account_id: str) -> tuple[int, dt.date | None, bool]:
    """(balance in cents now, last settled day, disconnected): the last settled state plus later
    payments."""
    days = state.settled_days(lake)
    last = days[-1] if days else None
    bal = None
    disconnected = False
    if last is not None:
        found = state.account_state(lake, last, account_id)
        if found is not None:
            bal, disconnected = found
    if bal is None:
        acc = lake.read("accounts", columns=["account_id", "balance"])
        acc = acc.filter(pc.equal(acc.column("account_id"), account_id))
        bal = int(cents(acc.column("balance"), null=0)[0]) if acc.num_rows else 0
    cutoff = lake.day_bounds_utc(last)[1] if last is not None else None
    return bal + ledger.paid_since(lake, account_id, cutoff), last, disconnected


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
        old = ledger.find_payment(lake, ref)
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
        reconnect = (disconnected and balance > Config.load(lake).policy.reconnect_above
                     and account_id not in alerts.reconnected_by_payment(lake, lake.local_day(at)))
        row = pa.table({"account_id": [account_id], "ts": pa.array([at], LEDGER.field("ts").type),
                        "kind": ["topup"], "amount": money([c]), "balance_after": money([balance]),
                        "ref": [ref]})
        ledger.write_payment(lake, row, ref, at)
        alerts.write_payment_alerts(lake, account_id, c, balance, ref, at, reconnect)
    return {"status": "applied", "account_id": account_id, "amount": fmt(c), "ref": ref,
            "balance": fmt(balance), "ts": at.isoformat(), "reconnect": reconnect}
