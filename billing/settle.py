"""Daily settlement of prepaid and postpaid balances (pure core: numpy arrays of cents in and out).

One call settles one billing day for every account at once. Order within the day:

1. payments received during the day are credited (``meters pay``; already in the ledger);
   a disconnected account whose balance is now above the reconnection amount → ``reconnect``;
2. prepaid: the day's charge is debited (the first run's charge, then the correction as an
   ``adjustment`` when a re-run with late readings prices the day differently);
3. auto top-up: when the balance is below ``topup_below``, ``topup_amount`` is added (``auto_topup``);
4. low-balance levels: level 1 below ``warn_1``, level 2 below ``warn_2``; an alert is due only when
   the level rises (once per crossing; the level falls back when the balance recovers);
5. below zero: ``arrears`` once when the balance first goes negative, ``disconnect`` once the
   arrears are ``grace_days`` old (0 = the same day) — not on a day the caller holds it (a day of
   the account priced mostly from estimates: ordered on the next day that is not).

Postpaid accounts carry ``balance`` = payments − bills; an unpaid bill past its due date gets an
``arrears`` notice on the first overdue day and every ``notice_every_days`` after, with the
penalty (``penalty_per_day`` of the arrears per day overdue, at least ``penalty_min``) as
information.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE_DAY = np.iinfo(np.int32).min  # "no date" in day-number arrays


@dataclass(frozen=True)
class Policy:
    """Operator-changeable settlement rules (``billing.json`` in the lake overrides them)."""

    grace_days: int = 1              # arrears → disconnect order after this many days
    reconnect_above: int = 0         # cents: reconnect once the balance is above this amount
    due_days: int = 15               # postpaid: bill due this many days after issue
    notice_every_days: int = 7       # postpaid: arrears notice repeat
    penalty_per_day: float = 0.001   # postpaid: 1‰ of arrears per day overdue (information)
    penalty_min: int = 100           # cents
    disconnect_max_estimated: float = 0.5   # no disconnection when more of the day's intervals are estimated


@dataclass
class Settled:
    """Result arrays of :func:`settle_prepaid` (cents; masks for ledger rows and alerts)."""

    after_payments: np.ndarray
    after_charge: np.ndarray
    balance: np.ndarray
    topup: np.ndarray            # cents added by auto top-up (0 = none)
    level: np.ndarray
    low_alert: np.ndarray        # level reached by a new crossing (0 = no alert)
    arrears_since: np.ndarray
    arrears_alert: np.ndarray
    disconnect: np.ndarray
    reconnect: np.ndarray
    disconnected: np.ndarray


def levels(balance, warn_1, warn_2) -> np.ndarray:
    """Low-balance level of each balance: 2 below warn_2, 1 below warn_1, else 0."""
    return np.where(balance < warn_2, 2, np.where(balance < warn_1, 1, 0)).astype(np.int8)


def settle_prepaid(day: int, balance, payments, charge, level, arrears_since, disconnected,
                   warn_1, warn_2, topup_below, topup_amount, policy: Policy = Policy(),
                   hold_disconnect=False) -> Settled:
    """Settle one day. ``day`` is a day number; money arrays are int64 cents; ``topup_below`` < 0
    means no auto top-up; ``arrears_since`` uses :data:`NONE_DAY` for none. ``hold_disconnect``
    (mask) withholds a due disconnection (a day priced mostly from estimates): it is ordered on the
    next day that is not."""
    b1 = balance + payments
    reconnect_pay = disconnected & (payments > 0) & (b1 > policy.reconnect_above)
    b2 = b1 - charge
    topup = np.where((topup_below >= 0) & (b2 < topup_below), topup_amount, 0).astype(np.int64)
    b3 = b2 + topup
    reconnect_top = disconnected & ~reconnect_pay & (topup > 0) & (b3 > policy.reconnect_above)
    reconnect = reconnect_pay | reconnect_top
    still_off = disconnected & ~reconnect
    new_level = levels(b3, warn_1, warn_2)
    low_alert = np.where(new_level > level, new_level, 0).astype(np.int8)
    negative = b3 < 0
    fresh = negative & ((arrears_since == NONE_DAY) | reconnect)
    since = np.where(negative, np.where(fresh, day, arrears_since), NONE_DAY).astype(np.int32)
    disconnect = negative & ~still_off & (day - since.astype(np.int64) >= policy.grace_days) & ~hold_disconnect
    return Settled(after_payments=b1, after_charge=b2, balance=b3, topup=topup, level=new_level,
                   low_alert=low_alert, arrears_since=since, arrears_alert=fresh, disconnect=disconnect,
                   reconnect=reconnect, disconnected=still_off | disconnect)


def postpaid_notices(day: int, balance, due_date, policy: Policy = Policy()):
    """Postpaid arrears after the due date: returns (notice mask, days overdue, penalty cents,
    new due_date — cleared once the account is paid up)."""
    overdue = np.where(due_date == NONE_DAY, 0, day - due_date.astype(np.int64))
    unpaid = balance < 0
    notice = unpaid & (overdue >= 1) & ((overdue - 1) % policy.notice_every_days == 0)
    penalty = np.maximum(np.rint(-balance * policy.penalty_per_day * overdue), policy.penalty_min)
    new_due = np.where(unpaid, due_date, NONE_DAY).astype(np.int32)
    return notice, overdue, np.where(notice, penalty, 0).astype(np.int64), new_due
