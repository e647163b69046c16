"""Billing alerts: their kinds, who receives them, and their message texts — the room alert delivery
grows from.

The nightly run writes one file per day to the ``alerts`` table (``day=D/billing.parquet``, replaced
when D is re-run); each payment writes its own (``day=D/payment-<hash>.parquet``). An alert goes to
every contact of its account, in the contact's language (``account:<id>`` when it has none); the
operator's kinds (``data_gap``, ``disconnect_held``, ``estimated_day``) go to ``operator``. Every row
carries a stable id (:func:`meters.outbox.alert_id`) and its values as JSON (what the delivery
templates show); :func:`queue_day` puts the day's alerts into the outbox after the run commits, a
payment's at once.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters import outbox
from meters.errors import MetersError
from meters.lake import Lake
from meters.recipients import DEFAULT_LANGUAGE
from meters.schemas import ALERTS, UTC_MS

from . import vee
from .days import from_number
from .ledger import PAYMENT_PREFIX, payment_file_name
from .money_io import fmt

if TYPE_CHECKING:
    from .accounts import Accounts
    from .day import Settlement

KINDS = {  # kind → when it is sent
    "bill_issued": "a postpaid bill period closed",
    "auto_topup": "a prepaid balance fell below the account's threshold and was topped up",
    "low_balance": "a prepaid balance fell below warning level 1 or 2 (once per crossing)",
    "arrears": "a prepaid balance went negative, or a postpaid bill is overdue (repeated)",
    "disconnect": "a prepaid account's arrears outlasted the grace days: disconnection ordered",
    "reconnect": "a disconnected account was paid or topped up above the reconnection amount",
    "data_gap": "intervals of a meter were estimated (to the operator)",
    "disconnect_held": "a due disconnection was not ordered: the account's day was mostly estimates (to the operator)",
    "estimated_day": "a day was billed below the coverage minimum with --allow-estimates (to the operator)",
    "payment": "a payment was received (``meters pay``)",
}
OPERATOR = "operator"
BILLING_FILE = "billing.parquet"


class Recipients:
    """Contacts of a snapshot's accounts, read on demand (only alerted accounts need them) from
    ``table`` (the run's contacts, read once for its blocks) or else the lake."""

    def __init__(self, lake: Lake, accounts: Accounts, table: pa.Table | None = None):
        self._lake, self._accounts, self._table = lake, accounts, table
        self.contacts: dict[str, list[tuple[str, str | None]]] = {}
        self._loaded: set[int] = set()

    def load(self, rows) -> None:
        """Read the contacts of the accounts at ``rows``."""
        rows = [r for r in np.asarray(rows, np.int64).tolist() if r not in self._loaded]
        if not rows:
            return
        self._loaded.update(rows)
        ids = self._accounts.account_arrow.take(pa.array(rows, pa.int64()))
        c = self._table if self._table is not None else self._lake.read("contacts", columns=CONTACT_COLUMNS)
        c = c.filter(pc.is_in(c.column("account_id"), value_set=ids))
        for a, r, lang in zip(*(c.column(k).to_pylist() for k in CONTACT_COLUMNS)):
            self.contacts.setdefault(a, []).append((r, lang))

    def of(self, account_id: str) -> list[tuple[str, str | None]]:
        """(recipient, language) of each contact of the account."""
        return self.contacts.get(account_id) or [(f"account:{account_id}", None)]


CONTACT_COLUMNS = ["account_id", "recipient", "language"]


def of_account(lake: Lake, account_id: str) -> list[tuple[str, str | None]]:
    """(recipient, language) of each recipient of one account's alerts."""
    contacts = lake.read("contacts")
    contacts = contacts.filter(pc.equal(contacts.column("account_id"), account_id))
    return (list(zip(contacts.column("recipient").to_pylist(), contacts.column("language").to_pylist()))
            or [(f"account:{account_id}", None)])


values = outbox.canonical


# -- the billing day's alerts ----------------------------------------------------------------------------
def day_sections(accounts: Accounts, day: dt.date, ts_end: pa.Scalar, s: Settlement, quality, flag,
                 recipients: Recipients) -> tuple[pa.Table, np.ndarray]:
    """The day's alerts, kind by kind, from its settlement and VEE outcome, and the section of each row (0, 1, …: the kinds in the order they are
    emitted), so that blocks of accounts put together give the whole city's order (a stable sort by
    section)."""
    rows = {"account_id": [], "kind": [], "recipient": [], "message": [], "alert_id": [], "language": [],
            "data": []}
    sections: list[int] = []
    acc = accounts

    estimated_note = " (Estimated: most of this day's readings are missing.)"

    def emit(i, kind, message, to=None, **data):
        a = acc.account_ids[i]
        data = {"account_id": a, "day": day, "currency": acc.currency[i], "utility": acc.utility[i], **data}
        if to is None and s.estimated[i]:
            message += estimated_note
            data["estimated"] = True
        text = values(**data)
        section = SECTIONS.index("postpaid arrears" if kind == "arrears" and not s.prepaid[i] else kind)
        for r, lang in to or recipients.of(a):
            sections.append(section)
            rows["account_id"].append(a); rows["kind"].append(kind)
            rows["recipient"].append(r); rows["message"].append(message)
            rows["alert_id"].append(outbox.alert_id(a, day, kind, r))
            rows["language"].append(lang or DEFAULT_LANGUAGE); rows["data"].append(text)

    st, prepaid = s.prepaid_settled, s.prepaid
    warn = {1: acc.warn_1, 2: acc.warn_2}
    customer = prepaid & ((st.topup > 0) | (st.low_alert > 0) | st.arrears_alert | st.disconnect | st.reconnect)
    recipients.load(np.flatnonzero(customer | s.notice | s.closed))
    for i in np.flatnonzero(s.closed):
        partial = (f" (first bill, partial: billing started {from_number(int(s.bill_start[i]))})"
                   if s.partial[i] else "")
        emit(i, "bill_issued", f"Bill for account {acc.account_ids[i]}, {from_number(int(s.bill_start[i]))} to "
             f"{from_number(int(s.bill_end[i]))}{partial}: {fmt(s.bill_cents[i])} {acc.currency[i]}, due "
             f"{from_number(s.due_day)}.", start=from_number(int(s.bill_start[i])),
             end=from_number(int(s.bill_end[i])), amount=int(s.bill_cents[i]), due=from_number(s.due_day),
             partial=bool(s.partial[i]))
    for i in np.flatnonzero(prepaid & (st.topup > 0)):
        emit(i, "auto_topup", f"Balance low, auto-paid {fmt(st.topup[i])} {acc.currency[i]} for account "
             f"{acc.account_ids[i]} on {day}; balance now {fmt(st.balance[i])} {acc.currency[i]}.",
             amount=int(st.topup[i]), balance=int(st.balance[i]))
    for i in np.flatnonzero(prepaid & (st.low_alert > 0)):
        lvl = int(st.low_alert[i])
        emit(i, "low_balance", f"Balance of account {acc.account_ids[i]} is {fmt(st.balance[i])} "
             f"{acc.currency[i]}, below {fmt(warn[lvl][i])} {acc.currency[i]} (level {lvl}); please top up.",
             balance=int(st.balance[i]), threshold=int(warn[lvl][i]), level=lvl)
    for i in np.flatnonzero(prepaid & st.arrears_alert):
        emit(i, "arrears", f"Account {acc.account_ids[i]} is in arrears: balance {fmt(st.balance[i])} "
             f"{acc.currency[i]} on {day}; supply will be disconnected unless topped up.",
             balance=int(st.balance[i]))
    for i in np.flatnonzero(prepaid & st.disconnect):
        emit(i, "disconnect", f"Disconnection ordered for account {acc.account_ids[i]} (meter "
             f"{acc.meter_ids[i]}): balance {fmt(st.balance[i])} {acc.currency[i]} since "
             f"{from_number(int(st.arrears_since[i]))}.", meter_id=int(acc.meter_ids[i]),
             balance=int(st.balance[i]), since=from_number(int(st.arrears_since[i])))
    for i in np.flatnonzero(s.held):
        emit(i, "disconnect_held", f"Disconnection of account {acc.account_ids[i]} (meter {acc.meter_ids[i]}) "
             f"not ordered on {day}: balance {fmt(st.balance[i])} {acc.currency[i]}, but most of the day's "
             f"intervals are estimated.", [(OPERATOR, None)], meter_id=int(acc.meter_ids[i]),
             balance=int(st.balance[i]))
    for i in np.flatnonzero(prepaid & st.reconnect):
        emit(i, "reconnect", f"Reconnection ordered for account {acc.account_ids[i]} (meter "
             f"{acc.meter_ids[i]}): balance {fmt(st.after_payments[i])} {acc.currency[i]} after payment.",
             meter_id=int(acc.meter_ids[i]), balance=int(st.after_payments[i]))
    for i in np.flatnonzero(s.notice):
        emit(i, "arrears", f"Bill of account {acc.account_ids[i]} is {int(s.overdue[i])} day(s) overdue: "
             f"{fmt(-s.balance[i])} {acc.currency[i]} unpaid; late penalty so far {fmt(s.penalty[i])} "
             f"{acc.currency[i]} (1‰ per day).", overdue_days=int(s.overdue[i]), unpaid=int(-s.balance[i]),
             penalty=int(s.penalty[i]))
    S = quality.shape[1]
    est = (quality != vee.ACTUAL).sum(axis=1)
    for i in np.flatnonzero(est):
        reasons = Counter(vee.FLAG_NAMES[f] for f in flag[i][quality[i] != vee.ACTUAL])
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        emit(i, "data_gap", f"Meter {acc.meter_ids[i]} (account {acc.account_ids[i]}): {int(est[i])} of {S} "
             f"intervals estimated on {day} ({why}).", [(OPERATOR, None)], meter_id=int(acc.meter_ids[i]),
             estimated=int(est[i]), intervals=int(S), reasons=dict(sorted(reasons.items())))
    n = len(rows["kind"])
    return pa.table({"account_id": pa.array(rows["account_id"], pa.string()),
                     "ts": pa.array([ts_end.value] * n, pa.int64()).cast(UTC_MS), "kind": rows["kind"],
                     "recipient": rows["recipient"], "message": rows["message"], "alert_id": rows["alert_id"],
                     "language": rows["language"], "data": rows["data"]},
                    schema=ALERTS), np.array(sections, np.int8)


# the order of the day's alert kinds (arrears twice: prepaid arrears, then postpaid overdue notices)
SECTIONS = ("bill_issued", "auto_topup", "low_balance", "arrears", "disconnect", "disconnect_held", "reconnect",
            "postpaid arrears", "data_gap")


def estimated_day(day: dt.date, ts_end, covered: int, accounts: int, minimum: float) -> pa.Table:
    """The operator's alert for a day billed below the coverage minimum (``--allow-estimates``)."""
    msg = (f"Billing of {day} used estimates: readings cover {covered} of {accounts} meters "
           f"({covered / max(accounts, 1):.1%}, minimum {minimum:.0%}); billed with --allow-estimates.")
    data = values(day=day, covered=int(covered), accounts=int(accounts), minimum=float(minimum))
    return pa.table({"account_id": pa.nulls(1, pa.string()), "ts": pa.array([ts_end], ALERTS.field("ts").type),
                     "kind": ["estimated_day"], "recipient": [OPERATOR], "message": [msg],
                     "alert_id": [outbox.alert_id(None, day, "estimated_day", OPERATOR)],
                     "language": [DEFAULT_LANGUAGE], "data": [data]}, schema=ALERTS)


def write_day(lake: Lake, day: dt.date, table: pa.Table) -> None:
    lake.write("alerts", table, day.isoformat(), file_name=BILLING_FILE)


def queue_day(lake: Lake, day: dt.date) -> dict | None:
    """Put the committed day's alerts into the account store's outbox (idempotent: what was queued
    before is not queued again; None: the lake has no account store)."""
    try:
        return outbox.enqueue_day(lake, day, required=False)
    except MetersError as e:
        raise MetersError(f"{day} is settled, but its alerts were not queued for delivery ({e}); queue them "
                          f"with `meters alerts queue {day}`") from None


# -- payments' alerts -------------------------------------------------------------------------------------
def write_payment_alerts(lake: Lake, account_id: str, c: int, balance: int, ref: str, at: dt.datetime,
                         reconnect: bool) -> None:
    """``payment`` (and ``reconnect`` when the payment ordered it) for a recorded payment, queued for
    delivery at once when the lake has an account store."""
    recipients = of_account(lake, account_id)
    day = lake.local_day(at)
    msg = (f"Payment of {fmt(c)} received for account {account_id} (ref {ref}); "
           f"balance {fmt(balance)}.")
    kinds = [("payment", msg, values(account_id=account_id, day=day, amount=c, balance=balance, ref=ref))]
    if reconnect:
        kinds.append(("reconnect", f"Reconnection ordered for account {account_id}: balance {fmt(balance)} after "
                      f"payment (ref {ref}).", values(account_id=account_id, day=day, balance=balance, ref=ref)))
    rows = [{"account_id": account_id, "ts": at, "kind": k, "recipient": r, "message": m,
             "alert_id": outbox.alert_id(account_id, day, k, r, ref), "language": lang or DEFAULT_LANGUAGE,
             "data": d} for k, m, d in kinds for r, lang in recipients]
    lake.write("alerts", pa.Table.from_pylist(rows, ALERTS), day.isoformat(), file_name=payment_file_name(ref))
    engine = outbox.open_outbox(lake, required=False)
    if engine is not None:
        try:
            outbox.enqueue(engine, [r | {"day": day} for r in rows])
        finally:
            engine.dispose()


def reconnected_by_payment(lake: Lake, day: dt.date) -> set[str]:
    """Accounts whose reconnection a payment of ``day`` already ordered (``meters pay`` and the
    account service's payments announce it at once; the nightly run then does not repeat it)."""
    d = lake.partition_dir("alerts", day.isoformat())
    out: set[str] = set()
    try:
        engine = outbox.open_outbox(lake, required=False)
    except MetersError:          # a store without the outbox yet: only the lake's payments can tell
        engine = None
    if engine is not None:
        try:
            out |= outbox.reconnected_by_payment(engine, day)
        finally:
            engine.dispose()
    for f in sorted(d.glob(f"{PAYMENT_PREFIX}*.parquet")) if d.exists() else []:
        t = pq.read_table(f, schema=ALERTS)
        out.update(a for a, k in zip(t.column("account_id").to_pylist(), t.column("kind").to_pylist())
                   if k == "reconnect")
    return out
