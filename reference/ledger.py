"""Plain-Python reference of the billing day's ledger file (:func:`billing.ledger.day_table`), account by
account and entry by entry: tests hold the column-wise builder equal to it. Not shipped."""
from __future__ import annotations

import pyarrow as pa

from billing.days import from_number
from billing.money_io import money
from meters.schemas import LEDGER, UTC_MS


def day_table_rowwise(accounts, grid, carried, s, ts_end: pa.Scalar) -> pa.Table:
    """Per account, in order: opening balance (first day only), the day's charge (first run's amount),
    an adjustment, an auto top-up, a postpaid bill's charge."""
    d, st = grid.day.isoformat(), s.prepaid_settled
    start, end = grid.start, ts_end.as_py()
    rows = []
    for i in range(accounts.n):
        a = accounts.account_ids[i]
        if carried.opening[i]:
            rows.append((a, start, "opening", int(accounts.opening[i]), int(carried.balance[i]), "opening"))
        if s.prepaid[i]:
            rows.append((a, end, "charge", -int(s.first[i]), int(st.after_payments[i] - s.first[i]), f"charge:{d}"))
            if s.adjust[i] != 0:
                rows.append((a, end, "adjustment", -int(s.adjust[i]), int(st.after_charge[i]), f"adjustment:{d}"))
            if st.topup[i] > 0:
                rows.append((a, end, "auto_topup", int(st.topup[i]), int(st.balance[i]), f"auto_topup:{d}"))
        if s.closed[i]:
            rows.append((a, end, "charge", -int(s.bill_cents[i]), int(s.balance[i]),
                         f"bill:{from_number(int(s.bill_start[i]))}"))
    cols = list(zip(*rows)) if rows else [[]] * 6
    return pa.table({"account_id": pa.array(cols[0], pa.string()), "ts": pa.array(cols[1], UTC_MS),
                     "kind": pa.array(cols[2], pa.string()), "amount": money(list(cols[3])),
                     "balance_after": money(list(cols[4])), "ref": pa.array(cols[5], pa.string())}, schema=LEDGER)
