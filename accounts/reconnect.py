"""A payment that brings a disconnected prepaid account above the reconnection amount orders its
reconnection at once: the ``reconnect`` alert is queued beside the payment's ``payment`` alert, in
the transaction that records the payment (as ``meters pay`` does on a lake without a store). The
nightly run then does not announce that reconnection again (:func:`meters.outbox.reconnected_by_payment`).
"""
from __future__ import annotations

import datetime as dt
import json

from meters import outbox
from meters.errors import MetersError
from meters.lake import Lake

from . import lakeview

BILLING_CONFIG = "billing.json"   # the lake's billing settings (billing/config.py): policy.reconnect_above


def reconnect_above(lake: Lake) -> int:
    """Cents a disconnected account's balance must exceed to be reconnected (the lake's
    ``billing.json`` ``policy.reconnect_above``; 0 when unset, as billing reads it)."""
    path = lake.root / BILLING_CONFIG if lake.is_local else None
    if path is None or not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text()).get("policy", {}).get("reconnect_above", 0))
    except (ValueError, TypeError, AttributeError) as e:
        raise MetersError(f"{path}: policy.reconnect_above unreadable ({e})") from None


def reconnect_alerts(conn, lake: Lake, account_id: str, day: dt.date, balance: int,
                     settled: lakeview.Settled | None, ref: str, channel_ref: str, recipients: list[dict]) -> list[dict]:
    """The ``reconnect`` alerts a payment raises (none unless the account is disconnected, the balance
    now exceeds the reconnection amount and no earlier payment of ``day`` ordered it already)."""
    if settled is None or not settled.disconnected or balance <= reconnect_above(lake):
        return []
    if account_id in outbox.reconnected_by_payment(conn, day, [account_id]):
        return []
    data = outbox.canonical(account_id=account_id, day=day, balance=balance, ref=channel_ref)
    return [{"alert_id": outbox.alert_id(account_id, day, "reconnect", c["recipient"], ref), "account_id": account_id,
             "day": day, "kind": "reconnect", "recipient": c["recipient"], "language": c["language"], "data": data}
            for c in recipients]
