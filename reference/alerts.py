"""Plain-Python reference of the day's alerts (:func:`billing.alerts.day_sections`), built row by row
as the billing night first wrote them: tests hold the vectorised builder equal to it. Not shipped."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pyarrow as pa

from billing import vee
from billing.alerts import OPERATOR, SECTIONS, Recipients, values
from billing.days import from_number
from billing.money_io import fmt
from meters import outbox
from meters.recipients import DEFAULT_LANGUAGE
from meters.schemas import ALERTS, UTC_MS


class _Contacts:
    """(recipient, language) of each contact of an account, per account id (row by row)."""

    def __init__(self, recipients: Recipients, rows):
        self.contacts: dict[str, list[tuple[str, str | None]]] = {}
        c = recipients.contacts_of(rows)
        for a, r, lang in zip(*(c.column(k).to_pylist() for k in ("account_id", "recipient", "language"))):
            self.contacts.setdefault(a, []).append((r, lang))

    def of(self, account_id: str) -> list[tuple[str, str | None]]:
        return self.contacts.get(account_id) or [(f"account:{account_id}", None)]


def day_sections_rowwise(accounts, day: dt.date, ts_end: pa.Scalar, s, quality, flag,
                         recipients: Recipients) -> tuple[pa.Table, np.ndarray]:
    """Row-by-row reference of :func:`billing.alerts.day_sections` (same inputs, same outputs)."""
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
    recipients = _Contacts(recipients, np.flatnonzero(customer | s.notice | s.closed))
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
